"""Weight memory (generic backend in simulation, SPRAM instances in elaboration) and the beat
reader's gearbox, under random backpressure."""

import random

import numpy as np
import pytest
from amaranth import Module
from amaranth.back import rtlil
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform

from fpga.memory import SPRAM_WORDS, WORD_BYTES, WeightMemory, WeightReader, select_backend
from model.accel import AccelConfig
from model.packing import pack_layer_stream


async def write_bytes(ctx, mem, addr, data):
    for i, b in enumerate(data):
        a = addr + i
        ctx.set(mem.addr, a // WORD_BYTES)
        ctx.set(mem.en, 1)
        ctx.set(mem.we, 1)
        ctx.set(mem.wmask, 1 << (a % WORD_BYTES))
        ctx.set(mem.wdata, b * 0x0101010101010101)
        await ctx.tick()
    ctx.set(mem.en, 0)
    ctx.set(mem.we, 0)


async def read_word(ctx, mem, word):
    ctx.set(mem.addr, word)
    ctx.set(mem.en, 1)
    await ctx.tick()
    ctx.set(mem.en, 0)
    return ctx.get(mem.rdata)


def test_generic_memory_byte_writes():
    dut = WeightMemory(depth=16, backend="generic")
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, 45, dtype=np.uint8).tobytes()

    async def tb(ctx):
        await write_bytes(ctx, dut, 3, data)
        image = bytes(3) + data + bytes(128 - 48)
        for w in range(16):
            got = (await read_word(ctx, dut, w)).to_bytes(8, "little")
            assert got == image[8 * w:8 * w + 8], w
        # a read holds its data while en is low
        word = await read_word(ctx, dut, 1)
        ctx.set(dut.addr, 5)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.rdata) == word

    sim.add_testbench(tb)
    sim.run()


def test_spram_backend_instances_and_auto_selection():
    dut = WeightMemory(depth=SPRAM_WORDS, backend="spram")
    text = rtlil.convert(dut)
    assert text.count("SB_SPRAM256KA") == 4
    plat = ICEBreakerPlatform()
    assert select_backend("auto", SPRAM_WORDS, plat) == "spram"
    assert select_backend("auto", SPRAM_WORDS, None) == "generic"
    assert select_backend("auto", 2 * SPRAM_WORDS, plat) == "generic"
    assert select_backend("generic", 16, plat) == "generic"
    with pytest.raises(ValueError):
        WeightMemory(depth=SPRAM_WORDS + 1, backend="spram")
    with pytest.raises(ValueError):
        WeightMemory(backend="bram")


def run_reader(cfg, w, tokens, base, depth=64, backpressure=0.3, seed=0):
    """Store ``w``'s stream at byte ``base`` and read it for ``tokens`` passes; returns the
    beats (as bytes) and whether ``range_error`` was raised."""
    stream = pack_layer_stream(w, cfg)
    m = Module()
    m.submodules.mem = mem = WeightMemory(depth=depth, backend="generic")
    m.submodules.reader = rd = WeightReader(config=cfg, depth=depth)
    m.d.comb += rd.mem.data.eq(mem.rdata)
    # the testbench loads the memory first, then hands the port to the reader
    sim = Simulator(m)
    sim.add_clock(1e-6)
    rng = random.Random(seed)
    beats = []
    result = {}

    async def tb(ctx):
        await write_bytes(ctx, mem, base, stream.tobytes())
        ctx.set(rd.base, base // WORD_BYTES)
        ctx.set(rd.m, w.shape[0])
        ctx.set(rd.k, w.shape[1])
        ctx.set(rd.tokens, tokens)
        ctx.set(rd.start, 1)
        await ctx.tick()
        ctx.set(rd.start, 0)
        idle = 0
        for _ in range(100_000):
            ready = rng.random() >= backpressure
            ctx.set(rd.beats.ready, ready)
            ctx.set(mem.addr, ctx.get(rd.mem.addr))   # after ready: mem_en depends on it
            ctx.set(mem.en, ctx.get(rd.mem.en))
            if ctx.get(rd.beats.valid) and ready:
                beats.append(bytes(ctx.get(rd.beats.payload)))
            if not ctx.get(rd.busy):
                idle += 1
                assert not ctx.get(rd.beats.valid)
                if idle > 40:
                    break
            await ctx.tick()
        result["range_error"] = bool(ctx.get(rd.range_error))

    sim.add_testbench(tb)
    sim.run()
    return stream, beats, result["range_error"]


CASES = [
    (AccelConfig(rows=4, cols=16), (10, 40), 3),    # 13-byte beats: not a word multiple
    (AccelConfig(rows=2, cols=4), (5, 9), 2),       # 2-byte beats: several per word
    (AccelConfig(rows=2, cols=20), (3, 41), 2),     # 8-byte beats: exactly one word
    (AccelConfig(rows=5, cols=8), (12, 37), 3),     # the board shape: one word per beat
    (AccelConfig(rows=4, cols=16, packing="i2"), (4, 16), 2),
    # tile-count edges of the board shape (the row/column flags are set a tile ahead)
    (AccelConfig(rows=5, cols=8), (1, 1), 3),       # one beat per pass
    (AccelConfig(rows=5, cols=8), (5, 8), 2),       # exactly one tile
    (AccelConfig(rows=5, cols=8), (10, 16), 2),     # exactly 2 x 2 tiles
    (AccelConfig(rows=5, cols=8), (15, 24), 1),     # exactly 3 x 3 tiles
    (AccelConfig(rows=5, cols=8), (11, 17), 2),     # 3 x 3 tiles, short last ones
    (AccelConfig(rows=5, cols=8), (6, 40), 1),      # 2 x 5 tiles
    (AccelConfig(rows=5, cols=8), (20, 9), 1),      # 4 x 2 tiles
    (AccelConfig(rows=5, cols=8), (16, 32), 1),     # 4 x 4 tiles, the last row tile short
]


@pytest.mark.parametrize("cfg,shape,tokens", CASES, ids=lambda v: str(v)[:40])
@pytest.mark.parametrize("backpressure", [0.0, 0.5])
def test_reader_streams_every_beat_exactly(cfg, shape, tokens, backpressure):
    rng = np.random.default_rng(shape[0])
    w = rng.integers(-1, 2, shape).astype(np.int8)
    stream, beats, range_error = run_reader(cfg, w, tokens, base=16,
                                            backpressure=backpressure)
    assert not range_error
    want = [bytes(b) for b in stream] * tokens
    assert beats == want


@pytest.mark.parametrize("cfg", [AccelConfig(rows=4, cols=16), AccelConfig(rows=5, cols=8)],
                         ids=["13-byte", "8-byte"])
def test_reader_full_rate_without_backpressure(cfg):
    """With a ready sink the reader delivers a word (8 bytes) per cycle on average."""
    w = np.ones((16, 160), np.int8)
    stream = pack_layer_stream(w, cfg)
    m = Module()
    m.submodules.mem = mem = WeightMemory(depth=64, backend="generic")
    m.submodules.reader = rd = WeightReader(config=cfg, depth=64)
    m.d.comb += [rd.mem.data.eq(mem.rdata), mem.addr.eq(rd.mem.addr), mem.en.eq(rd.mem.en),
                 rd.beats.ready.eq(1)]
    sim = Simulator(m)
    sim.add_clock(1e-6)
    cycles = []

    async def tb(ctx):
        ctx.set(rd.m, 16)
        ctx.set(rd.k, 160)
        ctx.set(rd.tokens, 1)
        ctx.set(rd.start, 1)
        await ctx.tick()
        ctx.set(rd.start, 0)
        n = 0
        while ctx.get(rd.busy):
            n += 1
            await ctx.tick()
        cycles.append(n)

    sim.add_testbench(tb)
    sim.run()
    nbytes = stream.size
    # one word per cycle plus a start-up latency of two cycles
    assert cycles[0] <= -(-nbytes // WORD_BYTES) + 3


@pytest.mark.parametrize("cfg,shape,n_ok", [
    (AccelConfig(rows=2, cols=4), (4, 16), 4),   # 8 beats of 2 bytes = 16 bytes: 4 fit
    (AccelConfig(rows=5, cols=8), (5, 24), 1),   # 3 beats of 8 bytes: 1 fits
])
def test_reader_range_error(cfg, shape, n_ok):
    w = np.ones(shape, np.int8)
    _, beats, range_error = run_reader(cfg, w, 1, base=64 * 8 - 8)
    assert range_error
    assert len(beats) == n_ok           # the 8 bytes that exist, nothing more
