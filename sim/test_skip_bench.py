"""Tests of sim/skip_bench.py and its CLI sim/bench_sparsity.py (counts vs a beat recount)."""

import numpy as np
import pytest

from model import checkpoint
from model.accel import AccelConfig, tree_depth
from model.train import CHECKPOINT_A48, load_corpus, split_corpus
from sim import bench_sparsity
from sim.skip_bench import PROJECTIONS, collect_calls, measure


@pytest.fixture(scope="module")
def calls():
    _, val = split_corpus(load_corpus(), 0.1)
    return collect_calls(checkpoint.load(CHECKPOINT_A48), val[:24].reshape(1, 24))


def _recount(calls, config, row_skip):
    # beat by beat, in the stream order of docs/architecture.md section 4
    R, C = config.rows, config.cols
    dense = kept = 0
    for window in calls:
        gate = None
        for call in window:
            proj = call["name"].split(".")[-2]
            if proj == "gate_proj":
                gate = call["acc"]
            m, k, xq = call["m"], call["k"], call["xq"]
            for t in range(xq.shape[0]):
                for mt in range(-(-m // R)):
                    dead = row_skip and proj == "up_proj" and all(
                        gate[t, r] <= 0 for r in range(mt * R, min(m, (mt + 1) * R)))
                    for kt in range(-(-k // C)):
                        dense += 1
                        if not dead and any(xq[t, kt * C:(kt + 1) * C]):
                            kept += 1
    return dense, kept


@pytest.mark.parametrize("rows, cols", [(5, 8), (40, 1)])
@pytest.mark.parametrize("row_skip", [False, True])
def test_skip_counts_equal_a_beat_by_beat_recount(calls, rows, cols, row_skip):
    c = AccelConfig(rows=rows, cols=cols, max_k=256, max_m=256,
                    adder_stages=min(1, tree_depth(cols)))
    rep = measure(calls, c, row_skip=row_skip)
    dense, kept = _recount(calls, c, row_skip)
    assert rep["tokens"] == 24
    assert rep["bytes_per_token_dense"] * 24 == dense * c.bytes_per_beat
    assert rep["bytes_per_token_skip"] * 24 == kept * c.bytes_per_beat
    assert kept < dense
    assert set(rep["by_projection"]) == set(PROJECTIONS)
    # the o projection's input is the top 50 % of 128 channels: at one lane per chunk at
    # least half the chunks are zero
    if cols == 1:
        assert rep["by_projection"]["o_proj"]["zero_chunk_fraction"] >= 0.5
    assert rep["cycles_per_token_skip"] < rep["cycles_per_token_dense"]


def test_cli_refuses_bad_arguments_before_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_sparsity, "ROOT", tmp_path)
    assert bench_sparsity.main(["--shapes", "5y8"]) == 1
    assert "ROWSxCOLS" in capsys.readouterr().err
    assert bench_sparsity.main(["--shapes", "0x8"]) == 1   # AccelConfig refuses rows=0
    with pytest.raises(SystemExit):
        bench_sparsity.main(["--windows", "0"])
    assert bench_sparsity.main(["--seq-len", "100000"]) == 1
    assert "at most" in capsys.readouterr().err
    assert not (tmp_path / "build").exists()


def test_cli_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_sparsity, "ROOT", tmp_path)
    assert bench_sparsity.main(["--windows", "1", "--seq-len", "8", "--shapes", "5x8,20x2"]) == 0
    out = capsys.readouterr().out
    assert "| 5x8 |" in out and "| 20x2 |" in out
    rep = __import__("json").loads((tmp_path / "build" / "bench_sparsity.json").read_text())
    assert [s["shape"] for s in rep["shapes"]] == ["5x8", "20x2"]
    assert set(rep["best_per_projection"]["choice"].values()) <= {"5x8", "20x2"}
    assert (tmp_path / "build" / "bench_sparsity.md").read_text().startswith("# Weight beats")
    assert np.isfinite(rep["shapes"][1]["cycles_per_token_skip"])
