"""BitLinearEngine in the Amaranth simulator against the numpy golden model, bit-exactly."""

import random
import zlib

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.sim import Simulator

from hw.engine import BitLinearEngine
from model.accel import AccelConfig
from model.accel_cycles import cycles, stall_cycles
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream
from sim import golden
from tests.helpers.streams import run_for, stream_sink, stream_source


def _pack_layer_stream(w, config):
    """The weight stream from the independent reference (``sim.golden``), checked against
    ``model.packing.pack_layer_stream``."""
    ours = golden.layer_stream(w, config)
    theirs = pack_layer_stream(w, config)
    assert theirs.shape == ours.shape and (theirs == ours).all()
    return ours


def reference(w, x):
    """Golden accumulators ``x @ w.T`` (tokens x M) from ``model.bitlinear``, checked against
    the exact product of ``sim.golden``."""
    exact = golden.exact_acc(x, w)
    acc = np.asarray(ternary_matmul(x, w))
    assert acc.shape == exact.shape and (acc == exact).all()
    return exact


def token_groups(tokens, config):
    """Token index lists of the groups of ``tokens_per_beat`` (the last one may be smaller)."""
    t = config.tokens_per_beat
    return [list(range(g, min(g + t, tokens))) for g in range(0, tokens, t)]


def act_chunks(x, config):
    """Split activations (tokens x K) into ``act`` transfers: per group of ``tokens_per_beat``
    tokens and column tile, the group's chunks of ``cols`` codes side by side (tail padded,
    lanes of tokens a smaller last group lacks padded)."""
    c, t = config.cols, config.tokens_per_beat
    kt = config.k_tiles(x.shape[1])
    padded = np.zeros((x.shape[0], kt * c), dtype=np.int64)
    padded[:, :x.shape[1]] = x
    out = []
    for group in token_groups(x.shape[0], config):
        for j in range(kt):
            lanes = []
            for i in range(t):
                lanes += ([int(v) for v in padded[group[i], j * c:(j + 1) * c]]
                          if i < len(group) else [0] * c)
            out.append(lanes)
    return out


class Harness(Elaboratable):
    """Engine under a ResetInserter, plus a free-running cycle counter."""

    def __init__(self, config):
        self.config = config
        self.engine = BitLinearEngine(config=config)
        self.rst = Signal()
        self.cycle = Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = ResetInserter(self.rst)(self.engine)
        m.d.sync += self.cycle.eq(self.cycle + 1)
        return m


def run_engine(config, jobs, *, seed=0, idle=0.0, backpressure=0.0, garbage_tail=0):
    """Run ``jobs`` = [(w, x), ...] back to back; return (results, cmd_cycles, result_cycles).

    ``results`` is a list of ``(acc, last)`` tuples. ``garbage_tail`` extra weight beats and act
    chunks are offered after the jobs; they must not be consumed or produce results.
    """
    rng = random.Random(seed)
    h = Harness(config)
    e = h.engine
    cmds, acts, beats, n_results = [], [], [], 0
    for w, x in jobs:
        m_, k_ = w.shape
        cmds.append({"m": m_, "k": k_, "tokens": x.shape[0]})
        acts += act_chunks(x, config)
        stream = _pack_layer_stream(w, config)
        assert stream.shape == (config.beats(m_, k_), config.bytes_per_beat)
        for _ in token_groups(x.shape[0], config):
            beats += [[int(b) for b in beat] for beat in stream]
        n_results += m_ * x.shape[0]
    acts_extra = [[0] * config.act_lanes] * garbage_tail
    beats_extra = [[0] * config.bytes_per_beat] * garbage_tail
    out, cmd_log, res_log = [], [], []
    sim = Simulator(h)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(e.cmd, cmds, rng=random.Random(rng.random()), idle=idle,
                                    log=cmd_log, cycle=h.cycle))
    act_log, w_log = [], []
    sim.add_testbench(stream_source(e.act, acts + acts_extra, rng=random.Random(rng.random()),
                                    idle=idle, log=act_log, cycle=h.cycle), background=True)
    sim.add_testbench(stream_source(e.weights, beats + beats_extra,
                                    rng=random.Random(rng.random()), idle=idle, log=w_log,
                                    cycle=h.cycle), background=True)
    sim.add_testbench(stream_sink(e.result, n_results, out, rng=random.Random(rng.random()),
                                  backpressure=backpressure, log=res_log, cycle=h.cycle,
                                  timeout=50 * (n_results + len(beats)) + 1000))
    tail = {}

    async def check_quiet(ctx):
        # after the expected results: nothing more comes out, the engine goes idle, no error
        while len(out) < n_results:
            await ctx.tick()
        extra = 0
        for _ in range(3 * config.rows + 3 * config.adder_stages + 20):
            ctx.set(e.result.ready, 1)
            _, _, valid = await ctx.tick().sample(e.result.valid)
            extra += valid
        tail["extra"] = extra
        tail["busy"] = ctx.get(e.busy)
        tail["error"] = ctx.get(e.error)
    sim.add_testbench(check_quiet)
    sim.run()
    assert tail == {"extra": 0, "busy": 0, "error": 0}
    # exactly the commands' beats and chunks were taken: none of the garbage tail
    assert (len(w_log), len(act_log)) == (len(beats), len(acts))
    results = [(int(p.acc), int(p.last)) for p in out]
    return results, cmd_log, res_log


def expected_results(jobs, config):
    """Per token group: row tile by row tile, each token's rows of the tile; ``last`` on the
    group's final result (for one token per beat: each token's rows, ``last`` on row M-1)."""
    exp = []
    for w, x in jobs:
        acc = reference(w, x)
        m = acc.shape[1]
        for group in token_groups(acc.shape[0], config):
            for r0 in range(0, m, config.rows):
                for t in group:
                    for r in range(r0, min(r0 + config.rows, m)):
                        exp.append((int(acc[t, r]), 0))
            exp[-1] = (exp[-1][0], 1)
    return exp


def random_job(rng, config, m, k, tokens, density=2 / 3):
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    w = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(m, k),
                   p=[density / 2, 1 - density, density / 2])
    x = rng.integers(lo, hi + 1, size=(tokens, k)).astype(np.int64)
    return w.astype(np.int8), x


def edge_jobs(config):
    """Named edge cases: all +1 / -1 / 0 weights with extreme activations, M = 1, K = 1."""
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    r, c = config.rows, config.cols
    m, k = r + 1, 2 * c + 1
    jobs = []
    for trit in (1, -1, 0):
        for act in (lo, hi):
            jobs.append((np.full((m, k), trit, np.int8), np.full((1, k), act, np.int64)))
    jobs.append((np.ones((1, 1), np.int8), np.array([[lo], [hi]], np.int64)))          # M=K=1
    jobs.append((-np.ones((1, c + 3), np.int8), np.full((1, c + 3), lo, np.int64)))    # M=1
    jobs.append((np.array([[1], [-1], [0]] * r, np.int8), np.full((2, 1), lo, np.int64)))  # K=1
    return jobs


def check(config, jobs, **kwargs):
    results, cmd_log, res_log = run_engine(config, jobs, **kwargs)
    assert results == expected_results(jobs, config)
    return cmd_log, res_log


SHAPES = [(1, 8), (4, 16), (8, 32)]
MATRIX = [AccelConfig(rows=r, cols=c, act_bits=a, packing=p, max_k=256, max_m=256,
                      adder_stages=min(1, AccelConfig(rows=r, cols=c).tree_depth))
          for (r, c) in SHAPES for a in (8, 4) for p in ("i2", "tq1")]


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: c.slug)
def test_engine_random_layers_with_stalls(config):
    rng = np.random.default_rng(zlib.crc32(config.slug.encode()))
    r, c = config.rows, config.cols
    jobs = [random_job(rng, config, 2 * r + 1, 2 * c + 3, 2),
            random_job(rng, config, r, c, 1)]
    check(config, jobs, seed=1, idle=0.3, backpressure=0.3, garbage_tail=3)


MULTI_TOKEN = [
    AccelConfig(rows=3, cols=4, act_bits=8, packing="tq1", max_k=128, max_m=128,
                adder_stages=1, tokens_per_beat=2),
    AccelConfig(rows=2, cols=8, act_bits=4, packing="i2", max_k=128, max_m=128,
                adder_stages=2, tokens_per_beat=4),
]


@pytest.mark.parametrize("config", MULTI_TOKEN, ids=lambda c: c.slug)
def test_engine_multi_token_groups_with_stalls(config):
    """Whole groups, a smaller last group, one token, groups that stall the drain (K <= C)."""
    rng = np.random.default_rng(zlib.crc32(config.slug.encode()))
    r, c, t = config.rows, config.cols, config.tokens_per_beat
    jobs = [random_job(rng, config, 2 * r + 1, 2 * c + 3, 2 * t + 1),
            random_job(rng, config, r, c, t), random_job(rng, config, 3 * r - 1, 1, t + 1),
            random_job(rng, config, r + 1, 3 * c, 1)]
    check(config, jobs, seed=6, idle=0.3, backpressure=0.3, garbage_tail=3)


@pytest.mark.parametrize("config", MATRIX[::5] + MULTI_TOKEN[:1], ids=lambda c: c.slug)
def test_engine_edge_cases(config):
    check(config, edge_jobs(config), seed=2, idle=0.2, backpressure=0.2)


CYCLE_CONFIGS = [
    AccelConfig(rows=1, cols=8, packing="i2", max_k=128, max_m=128, adder_stages=0),
    AccelConfig(rows=4, cols=4, packing="tq1", max_k=128, max_m=128, adder_stages=2),
    AccelConfig(rows=8, cols=4, act_bits=4, packing="i2", max_k=128, max_m=128, adder_stages=1),
    # every adder level registered (the 48 MHz iCE40 setting of the 4x16 array)
    AccelConfig(rows=2, cols=16, packing="tq1", max_k=128, max_m=128, adder_stages=4),
    # one lane per row, no adder tree: the narrowest-chunk UP5K shape of sim.bench_sparsity
    AccelConfig(rows=40, cols=1, packing="tq1", max_k=128, max_m=128, adder_stages=0),
    # tokens per weight beat: 2 and 3 arrays sharing one beat
    AccelConfig(rows=3, cols=4, packing="tq1", max_k=128, max_m=128, adder_stages=1,
                tokens_per_beat=2),
    AccelConfig(rows=2, cols=5, act_bits=4, packing="i2", max_k=128, max_m=128, adder_stages=0,
                tokens_per_beat=3),
]


@pytest.mark.parametrize("config", [
    AccelConfig(rows=4, cols=16, packing="tq1", max_k=256, max_m=256, adder_stages=4),
    AccelConfig(rows=3, cols=8, act_bits=4, packing="i2", max_k=256, max_m=256, adder_stages=3),
], ids=lambda c: c.slug)
def test_engine_deep_pipeline_with_stalls(config):
    rng = np.random.default_rng(zlib.crc32(config.slug.encode()))
    r, c = config.rows, config.cols
    jobs = [random_job(rng, config, 2 * r + 1, 2 * c + 3, 2), random_job(rng, config, r, 1, 1),
            random_job(rng, config, 3 * r, c, 1)]
    check(config, jobs, seed=5, idle=0.3, backpressure=0.3, garbage_tail=3)


@pytest.mark.parametrize("config", CYCLE_CONFIGS, ids=lambda c: c.slug)
def test_engine_cycle_count_matches_model(config):
    rng = np.random.default_rng(7)
    shapes = [(1, 1, 1), (3, 5, 2), (config.rows * 2 + 1, 3 * config.cols, 2),
              (config.rows * 3, config.cols * 2 - 1, 3), (17, 9, 1),
              (config.rows * 2 + 1, config.cols, 3), (config.rows + 1, 1, 2)]   # K <= C
    jobs = [random_job(rng, config, m, k, t) for m, k, t in shapes]
    cmd_log, res_log = check(config, jobs)
    ends = np.cumsum([w.shape[0] * x.shape[0] for w, x in jobs]) - 1
    for (w, x), start, end in zip(jobs, cmd_log, ends, strict=True):
        assert res_log[end] - start == cycles(config, w.shape[0], w.shape[1], x.shape[0])
    # one of the shapes stalls on the drain bank, so the stall term is exercised
    assert any(stall_cycles(config, w.shape[0], w.shape[1], x.shape[0]) for w, x in jobs) \
        or config.rows == 1


def test_engine_few_hundred_layer():
    config = AccelConfig(rows=4, cols=16, act_bits=8, packing="tq1", max_k=512, max_m=512)
    rng = np.random.default_rng(300)
    jobs = [random_job(rng, config, 200, 300, 1)]
    cmd_log, res_log = check(config, jobs, seed=3, idle=0.1, backpressure=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("config", [
    AccelConfig(rows=r, cols=c, act_bits=a, packing=p, max_k=512, max_m=512)
    for (r, c) in SHAPES for a in (8, 4) for p in ("i2", "tq1")], ids=lambda c: c.slug)
def test_engine_few_hundred_by_few_hundred(config):
    rng = np.random.default_rng(zlib.crc32(config.slug.encode()))
    jobs = [random_job(rng, config, 300, 257, 1)]
    cmd_log, res_log = check(config, jobs, seed=4, idle=0.1, backpressure=0.1)


def test_engine_rejects_unfit_commands_and_recovers_on_reset():
    config = AccelConfig(rows=2, cols=4, packing="i2", max_k=16, max_m=8, adder_stages=1)
    h = Harness(config)
    e = h.engine
    seen = {}

    async def testbench(ctx):
        for bad in ({"m": 0, "k": 4, "tokens": 1}, {"m": 9, "k": 4, "tokens": 1},
                    {"m": 2, "k": 17, "tokens": 1}, {"m": 2, "k": 0, "tokens": 1},
                    {"m": 2, "k": 4, "tokens": 0}):
            ctx.set(h.rst, 1)
            await ctx.tick()
            ctx.set(h.rst, 0)
            assert not ctx.get(e.error)
            ctx.set(e.cmd.valid, 1)
            ctx.set(e.cmd.payload, bad)
            await ctx.tick().until(e.cmd.ready)
            ctx.set(e.cmd.valid, 0)
            await ctx.tick()
            seen[str(bad)] = (ctx.get(e.error), ctx.get(e.busy))
    sim = Simulator(h)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert list(seen.values()) == [(1, 0)] * 5


def _invalid_beat(config, rng):
    if config.packing == "i2":
        beat = [0x55] * config.bytes_per_beat
        beat[rng.integers(config.bytes_per_beat)] |= 3 << (2 * rng.integers(4))
    else:
        beat = [0] * config.bytes_per_beat
        beat[rng.integers(config.bytes_per_beat)] = int(rng.choice(golden.TQ1_INVALID))
    return beat


@pytest.mark.parametrize("packing", ["i2", "tq1"])
def test_engine_invalid_weights_set_sticky_error(packing):
    config = AccelConfig(rows=2, cols=8, packing=packing, max_k=32, max_m=8, adder_stages=1)
    rng = np.random.default_rng(11)
    h = Harness(config)
    e = h.engine
    w, x = random_job(rng, config, 4, 20, 1)
    good = [[int(b) for b in beat] for beat in _pack_layer_stream(w, config)]
    beats = list(good)
    beats[3] = _invalid_beat(config, rng)
    out, flags = [], []

    async def monitor(ctx):
        async for _, _, error in ctx.tick().sample(e.error):
            flags.append(error)
    sim = Simulator(h)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(e.cmd, [{"m": 4, "k": 20, "tokens": 1}]))
    sim.add_testbench(stream_source(e.act, act_chunks(x, config)))
    sim.add_testbench(stream_source(e.weights, beats))
    sim.add_testbench(stream_sink(e.result, 4, out, backpressure=0.2))
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(run_for(60))
    sim.run()
    assert len(out) == 4            # the stream keeps its length
    first = flags.index(1)
    assert first > 0 and all(flags[first:])      # raised, and sticky


def test_engine_reset_mid_layer_then_exact():
    config = AccelConfig(rows=2, cols=8, packing="tq1", max_k=64, max_m=16, adder_stages=1)
    rng = np.random.default_rng(5)
    w1, x1 = random_job(rng, config, 7, 40, 2)
    w2, x2 = random_job(rng, config, 5, 19, 2)
    h = Harness(config)
    e = h.engine
    phase = {"n": 1}
    out1, out2 = [], []

    def beats_of(w, tokens):
        return [[int(b) for b in beat] for beat in _pack_layer_stream(w, config)] * tokens

    p1 = {"stop": lambda: phase["n"] != 1}
    p2 = {"start": lambda: phase["n"] == 2}
    sim = Simulator(h)
    sim.add_clock(1e-6)
    for kw, (w, x), out in ((p1, (w1, x1), out1), (p2, (w2, x2), out2)):
        sim.add_testbench(stream_source(e.cmd, [{"m": w.shape[0], "k": w.shape[1],
                                                 "tokens": x.shape[0]}], **kw), background=True)
        sim.add_testbench(stream_source(e.act, act_chunks(x, config), idle=0.2,
                                        rng=random.Random(1), **kw), background=True)
        sim.add_testbench(stream_source(e.weights, beats_of(w, x.shape[0]), idle=0.2,
                                        rng=random.Random(2), **kw), background=True)
        sim.add_testbench(stream_sink(e.result, w.shape[0] * x.shape[0], out, backpressure=0.2,
                                      rng=random.Random(3), **kw), background=True)
    state = {}

    async def control(ctx):
        await ctx.tick().until(e.result.valid & e.result.ready)   # mid-layer: results flowing
        await ctx.tick().repeat(3)
        state["busy_before"] = ctx.get(e.busy)
        phase["n"] = 0
        ctx.set(h.rst, 1)
        await ctx.tick()
        ctx.set(h.rst, 0)
        state["after_reset"] = (ctx.get(e.busy), ctx.get(e.result.valid), ctx.get(e.cmd.ready))
        await ctx.tick().repeat(2)
        phase["n"] = 2
        await ctx.tick().until(e.busy)
        await ctx.tick().until(~e.busy)
        await ctx.tick().repeat(10)
        state["error"] = ctx.get(e.error)
    sim.add_testbench(control)
    sim.run()
    assert state == {"busy_before": 1, "after_reset": (0, 0, 1), "error": 0}
    assert 0 < len(out1) < 14
    assert [(int(p.acc), int(p.last)) for p in out2] == expected_results([(w2, x2)], config)
