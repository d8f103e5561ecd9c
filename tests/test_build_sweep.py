"""``python -m hw.build.sweep``: the Pareto front and the table (no tools), and a two-shape ECP5
sweep on the LFE5U-25F (seconds per shape; the 85F grid of docs/build.md is run by hand)."""

import json

import pytest

from hw.build.sweep import main, pareto, sweep_table


def test_pareto_keeps_the_undominated_points():
    points = [(100, 1.0), (200, 3.0), (150, 0.5), (200, 2.0), (400, 3.0), (500, 6.0)]
    assert pareto(points) == [0, 1, 5]


def test_table_marks_the_front_and_keeps_the_errors():
    rows = [
        {"rows": 2, "cols": 4, "act_bits": 8, "adder_stages": 1, "macs": 8, "LUT4": 100,
         "CCU2C": 50, "FF": 90, "sites": 240, "DP16KD": 0, "luts": 240, "fmax_mhz": 150.0,
         "gops": 2.4, "pj_per_mac": 0.05},
        {"rows": 2, "cols": 4, "act_bits": 4, "adder_stages": 1, "macs": 8, "LUT4": 80,
         "CCU2C": 40, "FF": 70, "sites": 260, "DP16KD": 0, "luts": 260, "fmax_mhz": 140.0,
         "gops": 2.2, "pj_per_mac": 0.05},
        {"rows": 64, "cols": 64, "act_bits": 8, "adder_stages": 3, "macs": 4096,
         "error": "does not fit"},
    ]
    lines = sweep_table(rows, "ecp5").splitlines()
    assert lines[0].startswith("| R x C | act bits | adder stages | MACs/cyc | LUT4 | CCU2C |")
    assert lines[2] == ("| **2x4** | 8 | 1 | 8 | 100 | 50 | 90 | 240 | 30.0 | 0 | 150.0 | 2.40 "
                        "| 0.0500 |")
    assert lines[3].startswith("| 2x4 | 4 |")
    assert lines[4] == "| 64x64 | 8 | 3 | 4096 | does not fit |"


def test_bad_grid_and_act_bits_are_usage_errors(capsys):
    for args in (["--grid", "4by8"], ["--act-bits", "6"]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
    assert "bad activation widths '6'" in capsys.readouterr().err


@pytest.mark.toolchain
def test_ecp5_sweep_of_two_tiny_shapes(tmp_path, capsys):
    assert main(["--target", "ecp5", "--device", "25F", "--grid", "2x4,2x8", "--act-bits", "8",
                 "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [(r["rows"], r["cols"], r["act_bits"]) for r in rows] == [(2, 4, 8), (2, 8, 8)]
    for row in rows:
        assert row["sites"] >= row["LUT4"] + 2 * row["CCU2C"] and row["DP16KD"] == 0
        assert row["gops"] == pytest.approx(2 * row["macs"] * row["fmax_mhz"] / 1000)
    assert (tmp_path / "2x8a8" / "top.bit").stat().st_size > 0
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert "| LUT4 sites | sites/MAC |" in (tmp_path / "sweep.md").read_text()
    assert "2x8" in capsys.readouterr().out
