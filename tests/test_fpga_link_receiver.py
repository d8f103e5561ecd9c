"""FrameReceiver alone (Amaranth sim): request frames with random gaps between bytes, every
frame kind, the frame taken after a random delay; exactly one ``frame`` per request, its fields
and the staged payload as sent, bytes sent while a frame waits dropped (and nothing else)."""

import struct

import numpy as np
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from fpga.link_receiver import ARGS_BYTES, FrameReceiver
from fpga.protocol import MAX_PAYLOAD, REQ_SYNC, Op, Status, encode_request

TIMEOUT = 40


class Harness(wiring.Component):
    def __init__(self):
        self.rx = FrameReceiver(timeout=TIMEOUT)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = self.rx
        m.submodules.staging = self.staging = Memory(shape=8, depth=MAX_PAYLOAD, init=[])
        wiring.connect(m, self.rx.staging, self.staging.write_port())
        return m


def _cases(rng):
    """(bytes on the line, expected (op, length, payload, status)) per request."""
    out = []
    for _ in range(12):
        n = int(rng.choice([0, 1, 2, 9, 10, 11, 37, MAX_PAYLOAD]))
        payload = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        op = int(rng.integers(0, 256))
        out.append((encode_request(op, payload), (op, n, payload, Status.OK)))
    good = encode_request(Op.RUN, bytes(range(10)))
    bad = bytearray(good)
    bad[-1] ^= 0x40
    out.append((bytes(bad), (Op.RUN, 10, bytes(range(10)), Status.BAD_CRC)))
    # cut short in the payload, in the length, before the opcode
    out.append((good[:8], (Op.RUN, None, None, Status.TRUNCATED)))
    out.append((good[:3], (Op.RUN, None, None, Status.TRUNCATED)))
    out.append((good[:1], (0, None, None, Status.TRUNCATED)))
    # a length above the limit: the rest is discarded until the line is idle
    too_long = bytes([REQ_SYNC, Op.WRITE_WEIGHTS]) + struct.pack("<H", MAX_PAYLOAD + 1) + bytes(40)
    out.append((too_long, (Op.WRITE_WEIGHTS, None, None, Status.BAD_LENGTH)))
    # bytes before a sync byte are ignored
    out.append((b"\x00\x11" + encode_request(Op.INFO), (Op.INFO, 0, b"", Status.OK)))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def test_frames_under_random_gaps_and_delays():
    rng = np.random.default_rng(11)
    cases = _cases(rng)
    dut = Harness()
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rx = dut.rx
    got = []
    dropped = []

    async def source(ctx):
        for line, _ in cases:
            for b in line:
                ctx.set(rx.rx.valid, 1)
                ctx.set(rx.rx.payload, b)
                await ctx.tick()
                ctx.set(rx.rx.valid, 0)
                for _ in range(int(rng.integers(0, 4))):
                    await ctx.tick()
            # the frame is answered before the next one is sent (as the host does): wait
            # for it, sending a stray byte now and then (dropped)
            n = len(got)
            while len(got) == n:
                if ctx.get(rx.frame.valid) and rng.random() < 0.05:
                    ctx.set(rx.rx.valid, 1)
                    ctx.set(rx.rx.payload, REQ_SYNC)
                    await ctx.tick()
                    ctx.set(rx.rx.valid, 0)
                await ctx.tick()
            for _ in range(3):
                await ctx.tick()

    async def sink(ctx):
        hold, snap, taking = None, None, False
        while True:
            _, _, valid, dr, p = await ctx.tick().sample(rx.frame.valid, rx.dropped,
                                                         rx.frame.payload)
            ctx.set(rx.frame.ready, 0)
            if dr:
                dropped.append(len(got))
            if taking:
                # this edge is the transfer of the frame just taken
                assert valid
                taking = False
                continue
            if not valid:
                assert hold is None
                continue
            if hold is None:
                # hold the frame a random number of cycles; it must stay as it is
                hold, snap = int(rng.integers(0, 30)), (p.op, p.length, p.args, p.status)
            assert (p.op, p.length, p.args, p.status) == snap
            if hold == 0:
                staged = bytes(ctx.get(dut.staging.data[i]) for i in range(MAX_PAYLOAD))
                got.append((snap, staged))
                ctx.set(rx.frame.ready, 1)
                hold, taking = None, True
            else:
                hold -= 1

    sim.add_testbench(sink, background=True)
    sim.add_testbench(source)
    sim.run()

    assert len(got) == len(cases)      # one frame per request, none extra
    for ((op, length, args, status), staged), (_, (e_op, e_len, e_pay, e_status)) in zip(
            got, cases, strict=True):
        assert Status(status) == e_status
        assert op == e_op
        if e_status in (Status.OK, Status.BAD_CRC):
            assert length == e_len
            assert staged[:e_len] == e_pay
            n = min(e_len, ARGS_BYTES)
            assert args.to_bytes(ARGS_BYTES, "little")[:n] == e_pay[:n]
    # stray bytes sent while a frame waited were reported as dropped
    assert len(dropped) >= 1
