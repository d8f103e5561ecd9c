"""``python -m sim.run_layer``: real layers (a checkpoint's, or exported on their own) through the
Verilator-native engine, and its refusals (one ``error:`` line, exit 2 for usage, 1 for bad
input, before any simulation)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from model.checkpoint.synthetic import BITNET_2B4T, write_hf
from model.packing import pack_tq1
from sim.run_layer import main

CONFIG = json.dumps({"rows": 4, "cols": 16, "max_k": 1024, "max_m": 1024})   # sim/test_native
SMALL_2B4T = BITNET_2B4T.replace(vocab_size=320, d_model=64, n_layers=2, n_heads=4,
                                 n_kv_heads=2, d_ff=128, max_seq=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_hf(tmp_path_factory.mktemp("rl") / "m", SMALL_2B4T, seed=5)


def run(capsys, *args):
    try:
        code = main([*map(str, args), "--config", CONFIG])
    except SystemExit as e:      # argparse: usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("proj", ["q", "k", "v", "o", "gate", "up", "down"])
def test_every_projection_of_a_layer(model_dir, capsys, proj, tmp_path):
    code, out, err = run(capsys, "--checkpoint", model_dir, "--layer", 1, "--proj", proj,
                         "--tokens-in", "3,1,4,1,5", "--json", tmp_path / "r.json")
    assert code == 0, err
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["exact"] and figures["cycles"] == figures["model_cycles"]
    assert figures["tokens"] == 5 and "cycles" in out and "weights" in out


def test_exported_layers_and_activations(capsys, tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((40, 72)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "a.npy", rng.standard_normal((3, 72)).astype(np.float32))
    assert run(capsys, "--weights", tmp_path / "w.npy", "--acts", tmp_path / "a.npy")[0] == 0
    trits = rng.integers(-1, 2, (12, 30)).astype(np.int8)
    np.savez(tmp_path / "t.npz", tq1=pack_tq1(trits.reshape(-1)), shape=np.array([12, 30]),
             gamma=np.float32(0.5))
    np.save(tmp_path / "codes.npy", rng.integers(-128, 128, (2, 30)).astype(np.int8))
    assert run(capsys, "--weights", tmp_path / "t.npz", "--acts", tmp_path / "codes.npy")[0] == 0
    np.save(tmp_path / "tr.npy", trits)
    assert run(capsys, "--weights", tmp_path / "tr.npy", "--tokens", 4)[0] == 0


@pytest.mark.parametrize("args, code, message", [
    (["--layer", 2, "--proj", "q"], 1, "--layer 2: the model has layers 0..1"),
    (["--layer", 0, "--proj", "z"], 2, "--proj 'z'"),
    (["--layer", 0], 2, "needs --layer and --proj"),
    (["--layer", 0, "--proj", "q", "--prompt", "hi"], 1, "not byte-level"),
    (["--layer", 0, "--proj", "q", "--tokens-in", "1,x"], 2, "comma-separated"),
    (["--layer", 0, "--proj", "q", "--tokens-in", "999"], 1, r"token ids must lie in \[0, 320\)"),
    (["--layer", 0, "--proj", "q", "--tokens-in", ",".join(["1"] * 65)], 1, "takes 1..64"),
    (["--layer", 0, "--proj", "q", "--tokens", 0], 2, "--tokens 0"),
    (["--layer", 0, "--proj", "q", "--fmax", -5], 2, "--fmax: '-5': want a finite number"),
    (["--layer", 0, "--proj", "q", "--fmax", "nan"], 2, "--fmax: 'nan': want a finite"),
    (["--layer", 0, "--proj", "q", "--json", "/no/such/dir/x.json"], 2, "does not exist"),
])
def test_bad_checkpoint_runs_are_refused(model_dir, capsys, args, code, message):
    got, out, err = run(capsys, "--checkpoint", model_dir, *args)
    assert got == code
    assert re.search(message, err), err
    assert "Traceback" not in err and err.count("error:") == 1


def test_bad_files_and_configs_are_refused(capsys, tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((4, 2000), np.float32))
    code, _, err = run(capsys, "--weights", tmp_path / "w.npy")
    assert code == 1 and "K=2000 outside" in err
    code, _, err = run(capsys, "--checkpoint", tmp_path / "nothing", "--layer", 0, "--proj", "q")
    assert code == 1 and "no such checkpoint" in err
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    code, _, err = run(capsys, "--weights", tmp_path / "junk.npy")
    assert code == 1 and "cannot read" in err
    np.save(tmp_path / "w3.npy", np.full((3, 8), 2, np.int8))
    code, _, err = run(capsys, "--weights", tmp_path / "w3.npy")
    assert code == 1 and "trits" in err
    np.save(tmp_path / "ok.npy", np.ones((3, 8), np.int8))
    np.save(tmp_path / "acts.npy", np.ones((2, 9), np.float32))
    code, _, err = run(capsys, "--weights", tmp_path / "ok.npy", "--acts", tmp_path / "acts.npy")
    assert code == 1 and "want (T, K=8)" in err
    for bad, message in (("{bad json", "not JSON"), ('{"rows": 0}', "rows must be a positive"),
                         ("missing.json", "cannot read missing.json")):
        with pytest.raises(SystemExit) as e:
            main(["--weights", str(tmp_path / "ok.npy"), "--config", bad])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--weights", str(tmp_path / "ok.npy"), "--checkpoint", str(tmp_path)])
    assert e.value.code == 2


@pytest.fixture(scope="module")
def real_width(tmp_path_factory):
    """One 2B4T layer at its real width (2560, FFN 6912, 20/5 heads), a small vocabulary."""
    return write_hf(tmp_path_factory.mktemp("rw") / "m",
                    BITNET_2B4T.replace(n_layers=1, vocab_size=1024), seed=7)


def test_real_width_layer_every_shape(real_width, capsys, tmp_path):
    """Each projection shape of a real-width layer on the default engine for real layers
    (4 x 16, K, M <= 6912): 2560 x 2560 (q; o is the same), 640 x 2560 (k; v), 6912 x 2560 (up;
    gate) and 2560 x 6912 (down), exact and cycle-exact, with the golden model's activations.
    All seven projections: ``test_real_width_layer_every_projection`` (slow)."""
    _run_projections(real_width, capsys, tmp_path, ("q", "k", "up", "down"))


@pytest.mark.slow
def test_real_width_layer_every_projection(real_width, capsys, tmp_path):
    _run_projections(real_width, capsys, tmp_path, ("q", "k", "v", "o", "gate", "up", "down"))


def _run_projections(real_width, capsys, tmp_path, projections):
    for proj in projections:
        code = main(["--checkpoint", str(real_width), "--layer", "0", "--proj", proj,
                     "--tokens-in", "17,1000", "--json", str(tmp_path / f"{proj}.json")])
        assert code == 0, capsys.readouterr().err
        fig = json.loads((tmp_path / f"{proj}.json").read_text())
        assert fig["exact"] and fig["cycles_equal"] and fig["tokens"] == 2
    assert (fig["m"], fig["k"]) == (2560, 6912)


@pytest.mark.slow
def test_2b4t_shaped_checkpoint_two_layers(tmp_path, capsys):
    """The full 2B4T shape (vocabulary 128,256 and its 656 MB embedding) with two layers: the
    last layer's down projection, through the lazily read checkpoint."""
    path = write_hf(tmp_path / "m", BITNET_2B4T.replace(n_layers=2), seed=1)
    assert main(["--checkpoint", str(path), "--layer", "1", "--proj", "down",
                 "--tokens-in", "128000,42,7"]) == 0, capsys.readouterr().err
