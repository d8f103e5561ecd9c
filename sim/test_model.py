"""Whole-model inference through the simulated accelerator (``sim/run_model.py``).

Default run: the weight-stream model of the fast backend against the contract, the fast and
golden backends on the shipped model, and one full forward pass of the shipped model through the
Verilator co-simulation with every layer's accumulators compared. ``-m slow``: a multi-token
co-simulated generation.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.accel import AccelConfig
from model.accel_cycles import cycles
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream
from sim import run_model as rm

CONFIGS = [AccelConfig(), AccelConfig(rows=2, cols=3, packing="i2", adder_stages=0),
           AccelConfig(rows=3, cols=5, packing="tq1", adder_stages=1),
           AccelConfig(rows=1, cols=8, packing="i2", max_k=64, max_m=64)]


@pytest.fixture(scope="module")
def shipped():
    from model import checkpoint as ckpt

    return ckpt.load(rm.DEFAULT_CHECKPOINT)


# ---------------------------------------------------------------------------------------------
# the weight stream the fast backend decodes (docs/architecture.md section 4)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.slug)
@pytest.mark.parametrize("shape", [(1, 1), (7, 11), (16, 16), (9, 33)])
def test_layer_stream_follows_the_contract(config, shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    w = rng.integers(-1, 2, shape).astype(np.int8)
    stream = pack_layer_stream(w, config)
    m, k = shape
    r, c = config.rows, config.cols
    assert stream.shape == (config.beats(m, k), config.bytes_per_beat)
    assert stream.dtype == np.uint8
    beat = 0
    for mt in range(config.m_tiles(m)):
        for kt in range(config.k_tiles(k)):
            trits = rm.decode_beat(stream[beat], config)
            for t in range(r * c):
                row, col = mt * r + t // c, kt * c + t % c
                want = w[row, col] if row < m and col < k else 0
                assert trits[t] == want, (beat, t)
            beat += 1


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.slug)
def test_layer_stream_equals_the_reference(config):
    from sim import golden

    rng = np.random.default_rng(5)
    for shape in [(1, 1), (5, 17), (32, 48), (13, 64)]:
        w = rng.integers(-1, 2, shape).astype(np.int8)
        assert np.array_equal(np.asarray(pack_layer_stream(w, config)),
                              golden.layer_stream(w, config))


def test_decode_beat_rejects_invalid_codes():
    tq1 = AccelConfig(rows=1, cols=5, packing="tq1")
    with pytest.raises(ValueError, match="invalid tq1 byte 0x14"):
        rm.decode_beat(np.array([20], np.uint8), tq1)
    i2 = AccelConfig(rows=1, cols=4, packing="i2")
    with pytest.raises(ValueError, match="code 3"):
        rm.decode_beat(np.array([0b01110101], np.uint8), i2)
    pad = AccelConfig(rows=1, cols=3, packing="i2")
    with pytest.raises(ValueError, match="padding"):
        rm.decode_beat(np.array([0b10010101], np.uint8), pad)


# ---------------------------------------------------------------------------------------------
# pymodel backend: Python model of the engine
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.slug)
def test_fast_backend_edge_cases(config):
    fast = rm.PyModelBackend(config)
    rng = np.random.default_rng(7)
    k_max = min(config.max_k, 70)
    cases = []
    for k, m in [(1, 1), (k_max, 9), (config.cols + 1, config.rows + 1)]:
        for value in (1, -1, 0):
            cases.append((np.full((3, k), -128, np.int8), np.full((m, k), value, np.int8)))
            cases.append((np.full((2, k), 127, np.int8), np.full((m, k), value, np.int8)))
        cases.append((rng.integers(-128, 128, (4, k)).astype(np.int8),
                      rng.integers(-1, 2, (m, k)).astype(np.int8)))
    for i, (xq, w) in enumerate(cases):
        acc, cyc = fast.matmul(f"case{i}", xq, w)
        assert acc.dtype == np.int32 and acc.shape == (xq.shape[0], w.shape[0])
        assert np.array_equal(acc, ternary_matmul(xq, w)), i
        assert cyc == cycles(config, w.shape[0], w.shape[1], xq.shape[0])
    # all -128 against all -1: the accumulator bound K * 128 is reached exactly
    acc, _ = fast.matmul("bound", np.full((1, k_max), -128, np.int8),
                         np.full((2, k_max), -1, np.int8))
    assert acc.tolist() == [[128 * k_max] * 2]
    with pytest.raises(ValueError, match="max_k"):
        fast.matmul("big", np.zeros((1, config.max_k + 1), np.int8),
                    np.zeros((1, config.max_k + 1), np.int8))


def test_pymodel_and_golden_backends_generate_like_the_golden_model(shipped):
    prompt = list(b"And God said")
    pure = rm.generate_pure(shipped, prompt, 6)
    ref = rm.generate(shipped, prompt, 6, None, AccelConfig())
    assert ref.tokens == pure
    for cls in (rm.PyModelBackend, rm.GoldenBackend):
        out = rm.generate(shipped, prompt, 6, cls(AccelConfig()).matmul, AccelConfig())
        rm.compare(ref, out)
    # 7 BitLinear calls per layer for the prompt and for each new token but the last
    assert len(ref.calls) == 7 * shipped.config.n_layers * 6
    # a wrong accumulator anywhere is caught and named
    bad = rm.generate(shipped, prompt, 6, rm.PyModelBackend(AccelConfig()).matmul, AccelConfig())
    bad.calls[10].acc[0, 0] += 1
    with pytest.raises(AssertionError, match=f"call 10 .*{bad.calls[10].name}"):
        rm.compare(ref, bad)


def test_cli_pymodel(capsys, tmp_path):
    assert rm.main(["--prompt", "In the beginning", "--tokens", "4", "--backend", "pymodel",
                    "--fmax", "48", "--config", AccelConfig().to_json()]) == 0
    cap = capsys.readouterr()
    out = cap.out
    assert "equal the golden model bit for bit" in out
    assert "at 48.00 MHz (--fmax)" in out
    assert "cycles/token" in out and "weight bytes streamed/token" in out
    assert "token 4/4" in cap.err  # progress
    # no build report: the stated default Fmax, named as such
    res = rm.run(rm.DEFAULT_CHECKPOINT, "In", 2, "golden", report=tmp_path / "none.json",
                 quiet=True)
    assert res["fmax_mhz"] == rm.DEFAULT_FMAX_MHZ and "not a measured clock" in res["fmax_source"]
    assert res["accel_config"] == AccelConfig().to_dict()


def test_clock_and_config_from_the_build_report(tmp_path):
    """The engine of the build report is simulated by default and its clock applies; a report
    of another engine is not used for the tokens/s of this one."""
    board = AccelConfig(rows=5, cols=8, packing="tq1", adder_stages=2)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"config": board.to_dict(), "timing": {
        "fmax_mhz": 50.5, "clock_mhz": 48.0}}))
    assert rm.read_build(report) == {"config": board, "fmax_mhz": 50.5, "clock_mhz": 48.0}
    res = rm.run(rm.DEFAULT_CHECKPOINT, "In", 2, "pymodel", report=report, quiet=True)
    assert res["accel_config"] == board.to_dict() and res["fmax_mhz"] == 48.0
    assert "board clock" in res["fmax_source"]
    assert res["tokens_per_s"] == 48.0e6 / res["cycles_per_token"]
    # a bare-engine build (no clock_mhz): its Fmax
    report.write_text(json.dumps({"config": board.to_dict(), "timing": {"fmax_mhz": 50.5}}))
    res = rm.run(rm.DEFAULT_CHECKPOINT, "In", 2, "pymodel", report=report, quiet=True)
    assert res["fmax_mhz"] == 50.5
    # another engine than the one simulated: the design target, said so
    res = rm.run(rm.DEFAULT_CHECKPOINT, "In", 2, "pymodel", config=AccelConfig(),
                 report=report, quiet=True)
    assert res["fmax_mhz"] == rm.DEFAULT_FMAX_MHZ and "another engine" in res["fmax_source"]


def test_amaranth_backend_on_shipped_layers(shipped):
    """The engine in Amaranth's simulator on real layers of the shipped model (q_proj and
    down_proj of layer 0 with the activations the golden model feeds them): bit- and
    cycle-exact. The whole forward pass is the slow test below."""
    config = AccelConfig()
    seen = []

    def grab(name, xq, trits):
        seen.append((name, np.array(xq), np.array(trits)))
        return ternary_matmul(xq, trits), 0

    rm.run_forward(shipped, list(b"L"), grab, config)
    backend = rm.AmaranthBackend(config)
    for name, xq, trits in (seen[0], seen[6]):
        acc, cyc = backend.matmul(name, xq, trits)
        assert np.array_equal(acc, ternary_matmul(xq, trits)), name
        assert cyc == cycles(config, trits.shape[0], trits.shape[1], xq.shape[0]), name
    assert seen[6][2].shape[1] == 2 * seen[0][2].shape[1]  # down_proj: K = FFN width


@pytest.mark.slow
def test_amaranth_backend_forward_pass(shipped):
    """A full forward pass of the shipped model with every BitLinear in Amaranth's simulator."""
    config = AccelConfig()
    prompt = list(b"Let")
    ref = rm.run_forward(shipped, prompt, None, config)
    hw = rm.run_forward(shipped, prompt, rm.AmaranthBackend(config).matmul, config)
    rm.compare(ref, hw)
    assert len(hw.calls) == 7 * shipped.config.n_layers
    for c in hw.calls:
        assert c.cycles == cycles(config, c.m, c.k, c.tokens), c.name


# ---------------------------------------------------------------------------------------------
# Verilator co-simulation
# ---------------------------------------------------------------------------------------------
def _cosim_ready(path: str = "fast"):
    from sim.runner import SimulatorUnavailable, selected_simulator

    try:
        rm.build_engine_sim(AccelConfig(), path)
    except SimulatorUnavailable as e:
        pytest.skip(f"{selected_simulator()}: {e}")


def test_cosim_forward_pass_matches_golden(shipped, tmp_path):
    """One full forward pass of the shipped model: every BitLinear of every layer on the DUT."""
    _cosim_ready()
    config = AccelConfig()
    prompt = list(b"And Moses said")
    ref = rm.run_forward(shipped, prompt, None, config)
    hw = rm.run_cosim(rm.DEFAULT_CHECKPOINT, prompt, 0, config, mode="forward",
                      work_dir=tmp_path)
    rm.compare(ref, hw)
    assert len(hw.calls) == 7 * shipped.config.n_layers
    for c in hw.calls:  # measured cycles against the cycle model
        assert c.cycles == cycles(config, c.m, c.k, c.tokens), c.name


@pytest.mark.slow
@pytest.mark.parametrize("path", rm.COSIM_PATHS)
def test_cosim_generation_matches_golden(shipped, tmp_path, path):
    """Multi-token generation through both cocotb paths, cycles against the cycle model."""
    _cosim_ready(path)
    config = AccelConfig()
    prompt = list(b"And God said")
    n = 8 if path == "fast" else 3
    ref = rm.generate(shipped, prompt, n, None, config)
    hw = rm.run_cosim(rm.DEFAULT_CHECKPOINT, prompt, n, config, work_dir=tmp_path, path=path)
    rm.compare(ref, hw)
    assert hw.tokens == rm.generate_pure(shipped, prompt, n)
    for c in hw.calls:
        assert c.cycles == cycles(config, c.m, c.k, c.tokens), c.name


@pytest.mark.slow
def test_cli_every_backend(capsys):
    """``python -m sim.run_model`` with each backend: equal to golden, figures printed."""
    _cosim_ready()
    for backend in rm.BACKENDS:
        assert rm.main(["--prompt", "And", "--tokens", "2", "--backend", backend,
                        "--config", AccelConfig().to_json()]) == 0
        out = capsys.readouterr().out
        assert f"backend {backend}: tokens and all" in out and "cycles/token" in out


def test_native_backend_generates_like_the_golden_model(capsys):
    """``--backend native``: the shipped model, every accumulator and cycle count checked."""
    assert rm.main(["--prompt", "And God", "--tokens", "3", "--backend", "native",
                    "--config", AccelConfig().to_json()]) == 0
    out = capsys.readouterr().out
    assert "backend native: tokens and all 63 BitLinear accumulators equal" in out


def test_token_ids_for_models_that_are_not_byte_level(capsys, tmp_path):
    """A 2B4T-layout checkpoint (vocabulary 320 here), opened lazily: --tokens-in."""
    from model.checkpoint.synthetic import BITNET_2B4T, write_hf

    path = write_hf(tmp_path / "m", BITNET_2B4T.replace(
        vocab_size=320, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq=64))
    config = AccelConfig(max_k=128, max_m=320)
    assert rm.main(["--checkpoint", str(path), "--tokens-in", "7,300,2", "--tokens", "2",
                    "--backend", "native", "--config", config.to_json()]) == 0
    out = capsys.readouterr().out
    assert "prompt:    [7, 300, 2]" in out and "all 28 BitLinear accumulators equal" in out
    with pytest.raises(ValueError, match="not byte-level"):
        rm.run(path, "hi", 1, "golden", config)
    with pytest.raises(SystemExit):
        rm.main(["--checkpoint", str(path), "--tokens-in", "1,x"])


@pytest.mark.parametrize("args, code, message", [
    (["--checkpoint", "/no/such.npz"], 2, "no such file or directory"),
    (["--prompt", ""], 1, "the prompt must not be empty"),
    (["--tokens", "300"], 1, "exceeds the model's context of 256"),
    (["--tokens", "0"], 2, "argument --tokens: '0': want an integer >= 1"),
    (["--config", "{x"], 2, "argument --config: not JSON"),
    (["--config", "nothing.json"], 2, "cannot read nothing.json"),
    (["--config", '{"rows": 0}'], 2, "rows must be a positive int"),
    (["--config", '{"max_k": 100}'], 1, "cannot run a"),
    (["--prompt", "\udc80"], 1, "cannot be encoded as UTF-8"),
    (["--json", "/no/dir/x.json"], 2, "does not exist"),
    (["--fmax", "-5"], 2, "want a finite number > 0"),
    (["--fmax", "nan"], 2, "want a finite number > 0"),
    (["--fmax", "0"], 2, "want a finite number > 0"),
    (["--tokens-in", "1,999"], 1, r"token ids must lie in [0, 256)"),
])
def test_cli_bad_input_is_one_error_line(capsys, args, code, message):
    """Every bad input of sim.run_model: one error line, exit 2 for usage and 1 for a bad input,
    no traceback, before any generation (the golden backend would take seconds)."""
    try:
        got = rm.main([*args, "--backend", "golden"])
    except SystemExit as e:
        got = e.code
    err = capsys.readouterr().err
    assert got == code, err
    assert message in err and "Traceback" not in err
    assert err.count("error:") == 1
