"""``python -m sim.run_model`` (``sim/run_model.py``) and the checked run behind it
(``sim/inference.py``): figures, the clock and engine of the build report, token ids, every bad
input one error line (``-m slow``: the command with every backend).
"""

from __future__ import annotations

import json

import pytest

from model.accel import AccelConfig
from sim.backends import BACKENDS
from sim.build_report import DEFAULT_FMAX_MHZ, read_build
from sim.inference import DEFAULT_CHECKPOINT, run
from sim.run_model import main


def test_cli_pymodel(capsys, tmp_path):
    assert main(["--prompt", "In the beginning", "--tokens", "4", "--backend", "pymodel",
                 "--fmax", "48", "--config", AccelConfig().to_json()]) == 0
    cap = capsys.readouterr()
    out = cap.out
    assert "equal the golden model bit for bit" in out
    assert "at 48.00 MHz (--fmax)" in out
    assert "cycles/token" in out and "weight bytes streamed/token" in out
    assert "token 4/4" in cap.err  # progress
    # no build report: the stated default Fmax, named as such
    res = run(DEFAULT_CHECKPOINT, "In", 2, "golden", report=tmp_path / "none.json",
              quiet=True)
    assert res["fmax_mhz"] == DEFAULT_FMAX_MHZ and "not a measured clock" in res["fmax_source"]
    assert res["accel_config"] == AccelConfig().to_dict()


def test_clock_and_config_from_the_build_report(tmp_path):
    """The engine of the build report is simulated by default and its clock applies; a report
    of another engine is not used for the tokens/s of this one."""
    board = AccelConfig(rows=5, cols=8, packing="tq1", adder_stages=2)
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"config": board.to_dict(), "timing": {
        "fmax_mhz": 50.5, "clock_mhz": 48.0}}))
    assert read_build(report) == {"config": board, "fmax_mhz": 50.5, "clock_mhz": 48.0}
    res = run(DEFAULT_CHECKPOINT, "In", 2, "pymodel", report=report, quiet=True)
    assert res["accel_config"] == board.to_dict() and res["fmax_mhz"] == 48.0
    assert "board clock" in res["fmax_source"]
    assert res["tokens_per_s"] == 48.0e6 / res["cycles_per_token"]
    # a bare-engine build (no clock_mhz): its Fmax
    report.write_text(json.dumps({"config": board.to_dict(), "timing": {"fmax_mhz": 50.5}}))
    res = run(DEFAULT_CHECKPOINT, "In", 2, "pymodel", report=report, quiet=True)
    assert res["fmax_mhz"] == 50.5
    # another engine than the one simulated: the design target, said so
    res = run(DEFAULT_CHECKPOINT, "In", 2, "pymodel", config=AccelConfig(),
              report=report, quiet=True)
    assert res["fmax_mhz"] == DEFAULT_FMAX_MHZ and "another engine" in res["fmax_source"]


@pytest.mark.slow
def test_cli_every_backend(capsys, cosim_ready):
    """``python -m sim.run_model`` with each backend: equal to golden, figures printed."""
    cosim_ready()
    for backend in BACKENDS:
        assert main(["--prompt", "And", "--tokens", "2", "--backend", backend,
                     "--config", AccelConfig().to_json()]) == 0
        out = capsys.readouterr().out
        assert f"backend {backend}: tokens and all" in out and "cycles/token" in out


def test_native_backend_generates_like_the_golden_model(capsys):
    """``--backend native``: the shipped model, every accumulator and cycle count checked."""
    assert main(["--prompt", "And God", "--tokens", "3", "--backend", "native",
                 "--config", AccelConfig().to_json()]) == 0
    out = capsys.readouterr().out
    assert "backend native: tokens and all 63 BitLinear accumulators equal" in out


def test_a48_model_through_the_engine(capsys):
    """The shipped BitNet a4.8 model (INT4 codes into q/k/v/gate/up, sparse INT8 into o and
    down) generates on the engine's Verilog with every accumulator and cycle count equal to the
    golden a4.8 model, and its tokens are the golden model's."""
    from model import checkpoint as ckpt

    path = "model/data/bitnet_kjv_a48.npz"
    assert main(["--checkpoint", path, "--prompt", "And God", "--tokens", "3", "--backend",
                 "native", "--config", AccelConfig().to_json()]) == 0
    out = capsys.readouterr().out
    assert "backend native: tokens and all 63 BitLinear accumulators equal" in out
    want = bytes(ckpt.load(path).transformer().generate(list(b"And God"), 3))
    assert f"generated: {want.decode('latin-1')!r}" in out


def test_token_ids_for_models_that_are_not_byte_level(capsys, tmp_path):
    """A 2B4T-layout checkpoint (vocabulary 320 here), opened lazily: --tokens-in."""
    from model.checkpoint.synthetic import BITNET_2B4T, write_hf

    path = write_hf(tmp_path / "m", BITNET_2B4T.replace(
        vocab_size=320, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq=64))
    config = AccelConfig(max_k=128, max_m=320)
    assert main(["--checkpoint", str(path), "--tokens-in", "7,300,2", "--tokens", "2",
                 "--backend", "native", "--config", config.to_json()]) == 0
    out = capsys.readouterr().out
    assert "prompt:    [7, 300, 2]" in out and "all 28 BitLinear accumulators equal" in out
    with pytest.raises(ValueError, match="not byte-level"):
        run(path, "hi", 1, "golden", config)
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(path), "--tokens-in", "1,x"])


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
        got = main([*args, "--backend", "golden"])
    except SystemExit as e:
        got = e.code
    err = capsys.readouterr().err
    assert got == code, err
    assert message in err and "Traceback" not in err
    assert err.count("error:") == 1
