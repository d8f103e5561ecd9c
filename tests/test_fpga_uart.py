"""UART receiver/transmitter in the Amaranth simulator (bit-level line driving)."""

import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from fpga.uart import UARTRx, UARTTx, baud_divisor
from tests.helpers.uart import UARTMonitor, uart_send_byte


def run_rx(divisor, body):
    dut = UARTRx(divisor=divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    got, pulses = [], {"overrun": 0, "frame_error": 0}

    async def sink(ctx):
        # records bytes at each transfer and the error pulses; ready is driven by the body
        async for _, _, valid, ready, payload, ovr, ferr in ctx.tick().sample(
                dut.data.valid, dut.data.ready, dut.data.payload, dut.overrun, dut.frame_error):
            if valid and ready:
                got.append(payload)
            pulses["overrun"] += ovr
            pulses["frame_error"] += ferr

    async def driver(ctx):
        await body(ctx, dut)

    sim.add_testbench(sink, background=True)
    sim.add_testbench(driver)
    sim.run()
    return got, pulses


@pytest.mark.parametrize("divisor", [4, 5, 8, 13])
def test_rx_random_bytes_with_gaps_and_stalls(divisor):
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x55, 0xAA]

    async def body(ctx, dut):
        ctx.set(dut.rx, 1)
        for b in data:
            ctx.set(dut.data.ready, rng.random() < 0.5)   # stalls shorter than a byte
            await uart_send_byte(ctx, dut.rx, b, divisor)
            ctx.set(dut.data.ready, 1)
            await ctx.tick().repeat(1 + rng.randrange(3))
        await ctx.tick().repeat(4 * divisor)

    got, pulses = run_rx(divisor, body)
    assert got == data
    assert pulses == {"overrun": 0, "frame_error": 0}


@pytest.mark.parametrize("bit_cycles", [31, 33])
def test_rx_tolerates_rate_error(bit_cycles):
    """A transmitter about 3 % off the nominal 32 cycles/bit still decodes."""
    data = [0x00, 0xFF, 0x5A, 0xA5, 0x01, 0x80]

    async def body(ctx, dut):
        ctx.set(dut.data.ready, 1)
        for b in data:
            await uart_send_byte(ctx, dut.rx, b, 32, bit_cycles=bit_cycles)
        await ctx.tick().repeat(64)

    got, pulses = run_rx(32, body)
    assert got == data and pulses["frame_error"] == 0


def test_rx_framing_error_glitch_and_overrun():
    d = 8

    async def body(ctx, dut):
        ctx.set(dut.data.ready, 1)
        # a one-cycle glitch is not a start bit
        ctx.set(dut.rx, 0)
        await ctx.tick()
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * d)
        # stop bit 0: framing error, byte dropped; the line then idles high again
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(10 * d)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * d)
        await uart_send_byte(ctx, dut.rx, 0x42, d)
        await ctx.tick().repeat(d)   # the byte is out half a bit after the stop bit's middle
        # nobody takes bytes: the second one is an overrun and dropped
        ctx.set(dut.data.ready, 0)
        await uart_send_byte(ctx, dut.rx, 0x11, d)
        await uart_send_byte(ctx, dut.rx, 0x22, d)
        await ctx.tick().repeat(2 * d)
        ctx.set(dut.data.ready, 1)
        await ctx.tick().repeat(2 * d)

    got, pulses = run_rx(d, body)
    assert got == [0x42, 0x11]
    assert pulses == {"overrun": 1, "frame_error": 1}


@pytest.mark.parametrize("divisor", [4, 7])
def test_tx_random_bytes_with_idle_source(divisor):
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(30)] + [0x00, 0xFF]
    dut = UARTTx(divisor=divisor)
    mon = UARTMonitor(dut.tx, divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(mon.process, background=True)

    async def source(ctx):
        for b in data:
            while rng.random() < 0.3:
                ctx.set(dut.data.valid, 0)
                await ctx.tick()
            ctx.set(dut.data.payload, b)
            ctx.set(dut.data.valid, 1)
            await ctx.tick().until(dut.data.ready)
        ctx.set(dut.data.valid, 0)
        await ctx.tick().repeat(12 * divisor)

    sim.add_testbench(source)
    sim.run()
    assert bytes(mon.data) == bytes(data) and mon.errors == 0


def test_tx_rx_loopback():
    d = 6
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=d)
    m.submodules.rx = rx = UARTRx(divisor=d)
    m.d.comb += rx.rx.eq(tx.tx)
    data = list(range(0, 256, 7))
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def sink(ctx):
        ctx.set(rx.data.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(rx.data.valid, rx.data.payload):
            if valid:
                got.append(payload)

    async def source(ctx):
        for b in data:
            ctx.set(tx.data.payload, b)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)
        await ctx.tick().repeat(12 * d)

    sim.add_testbench(sink, background=True)
    sim.add_testbench(source)
    sim.run()
    assert got == data


def test_parameters():
    with pytest.raises(ValueError):
        UARTRx(divisor=3)
    with pytest.raises(ValueError):
        UARTTx(divisor=1.5)
    assert baud_divisor(12_000_000, 1_000_000) == 12
    assert baud_divisor(12_000_000, 3_000_000) == 4
    assert baud_divisor(48_000_000, 115_200) == 417
    with pytest.raises(ValueError):
        baud_divisor(12_000_000, 6_000_000)   # 2 cycles per bit
    with pytest.raises(ValueError):
        baud_divisor(10_000_000, 2_300_000)   # 4.35 -> 4: 8.7 % error
