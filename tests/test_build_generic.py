"""Generic gate area, the gate-level simulator, activity energy, report tables and the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest

from hw.build import activity, generic
from hw.build.__main__ import DEFAULT_TOP, main
from hw.build.energy import energy_tables
from hw.build.gatesim import GateNetlist, GateSimError
from hw.build.ice40 import board_defaults
from hw.build.report import write_report
from model.accel import PRESETS
from model.train import CHECKPOINT

FIXTURES = Path(__file__).parent / "fixtures"
TINY = PRESETS["tiny"]


def test_parse_generic_stat_fixture():
    area = generic.parse_generic_stat((FIXTURES / "generic_stat_tiny.json").read_text())
    assert area["cells"] == {"$_DFF_P_": 72, "$_NAND_": 729, "$_NOR_": 678, "$_NOT_": 239}
    assert area["gates"] == 729 + 678 + 239 and area["flip_flops"] == 72
    # Yosys's estimate equals the kernel/cost.h table: NAND/NOR 4, NOT 2, DFF 16
    assert area["transistors"] == 4 * (729 + 678) + 2 * 239 + 16 * 72 == 7258
    assert area["nand2_equivalent"] == round(7258 / 4)
    assert area["memory_bits"] == 0


def test_parse_generic_stat_rejects_unknown_cells_and_mismatch():
    data = json.loads((FIXTURES / "generic_stat_tiny.json").read_text())
    data["design"]["num_cells_by_type"]["$_AOI3_"] = 1
    with pytest.raises(generic.GenericError, match="AOI3"):
        generic.parse_generic_stat(json.dumps(data))
    data = json.loads((FIXTURES / "generic_stat_tiny.json").read_text())
    data["design"]["estimated_num_transistors"] = "7000"
    with pytest.raises(generic.GenericError, match="7000"):
        generic.parse_generic_stat(json.dumps(data))


def test_gatesim_toggle_fixture():
    net = GateNetlist((FIXTURES / "gatesim_toggle.json").read_text())
    # q: 0 1 0 1 0 1 ; y = ~(a & q)
    a = [1, 1, 0, 1, 1, 0]
    toggles, out = net.run({"a": a}, outputs=("y",))
    q = [t % 2 for t in range(6)]
    assert out["y"] == [1 - (ai & qi) for ai, qi in zip(a, q, strict=True)]
    # toggles counted from cycle 1 on: q and ~q change every cycle
    assert toggles[4] == 5 and toggles[5] == 5
    assert toggles[3] == sum(a[i] != a[i - 1] for i in range(1, 6))
    assert toggles[6] == sum(out["y"][i] != out["y"][i - 1] for i in range(1, 6))
    assert net.fanout[4] == 2 and net.fanout[5] == 1 and net.fanout[6] == 0


def test_gatesim_errors():
    text = (FIXTURES / "gatesim_toggle.json").read_text()
    bad = json.loads(text)
    bad["modules"]["top"]["cells"]["nand"]["type"] = "$_AOI3_"
    with pytest.raises(GateSimError, match="AOI3"):
        GateNetlist(json.dumps(bad))
    loop = json.loads(text)
    loop["modules"]["top"]["cells"]["inv"]["connections"] = {"A": [6], "Y": [5]}
    loop["modules"]["top"]["cells"]["nand"]["connections"] = {"A": [3], "B": [5], "Y": [6]}
    with pytest.raises(GateSimError, match="loop"):
        GateNetlist(json.dumps(loop))
    net = GateNetlist(text)
    with pytest.raises(ValueError, match="not an input"):
        net.run({"y": [0]})
    with pytest.raises(ValueError, match="same length"):
        net.run({"a": [0, 1], "clk": [0]})


def test_array_stimulus_schedule():
    xq = np.array([[1, -2, 3, 4, 5]], dtype=np.int8)
    trits = np.array([[1, 0, -1, 1, 1], [0, 0, 0, 0, 0], [-1, -1, -1, -1, -1]], dtype=np.int8)
    stim, checks = activity.array_stimulus("ternary", 2, 4, 8, 2, xq, trits)
    # 2 m-tiles x 2 k-tiles, then latency + 1 idle cycles
    assert len(stim["en"]) == 4 + 3 and stim["valid"] == [1, 1, 1, 1, 0, 0, 0]
    assert stim["first"][:4] == [1, 0, 1, 0]
    assert [c for c, _ in checks] == [1 + 2, 3 + 2]
    assert checks[0][1].tolist() == [1 - 3 + 4 + 5, 0]
    assert checks[1][1].tolist() == [-(1 - 2 + 3 + 4 + 5), 0]  # padded row expects 0
    # x lanes: two's complement bytes, lane 0 lowest; second k tile is [5, 0, 0, 0]
    assert stim["x"][0] == 1 | (0xFE << 8) | (3 << 16) | (4 << 24) and stim["x"][1] == 5
    # trit codes 00 / 01 / 11, trit r*cols+c at bits 2*(r*cols+c)
    assert stim["trits"][0] & 0xFF == 0b01_11_00_01
    wstim, _ = activity.array_stimulus("int8", 2, 4, 8, 3, xq, trits)
    assert wstim["weights"][2] & 0xFF == 0xFF  # -1 as an int8 weight


def test_write_report_nested_tables(tmp_path):
    write_report(tmp_path, {"title": "t", "comparison": {
        "ternary": {"LUT4": 10, "pj": 0.5}, "int8": {"LUT4": 90, "pj": 2.0, "fits": True}},
        "device": {"LUT4": 3}})
    md = (tmp_path / "report.md").read_text()
    assert "| item | LUT4 | pj | fits |" in md
    assert "| ternary | 10 | 0.5 |  |" in md and "| int8 | 90 | 2 | True |" in md
    assert "| LUT4 | 3 |" in md


def test_energy_tables_per_layer():
    table = {"ternary": {"pj_per_mac_horowitz45": 0.05, "pj_per_mac_gate_model_45nm": None},
             "int8": {"pj_per_mac_horowitz45": 0.25, "pj_per_mac_gate_model_45nm": None}}
    summary, per_layer = energy_tables(TINY, table)
    assert summary == {"pj_per_mac_horowitz45": {"ternary": 0.05, "int8": 0.25,
                                                 "int8_over_ternary": pytest.approx(5.0)}}
    if not per_layer:
        pytest.skip("model/data/bitnet_kjv.npz not present")
    q = per_layer["q_proj"]
    assert q["macs"] == q["M"] * q["K"]
    assert q["ternary_horowitz45_pj"] == pytest.approx(q["macs"] * 0.05)
    total = per_layer["per token (all BitLinear layers)"]
    rows = [r for k, r in per_layer.items() if not k.startswith("per token")]
    assert total["macs"] == sum(r["macs"] * r["count"] for r in rows)
    assert total["int8_horowitz45_pj"] == pytest.approx(0.25 * total["macs"])


@pytest.mark.parametrize("argv, message", [
    (["--target", "generic", "--top", "fpga"], "argument --top: 'fpga' needs a device"),
    (["--target", "asic"], "argument --target: invalid choice: 'asic'"),
    (["--target", "generic", "--cols", "-1"], "argument --cols: '-1': want an integer >= 1"),
])
def test_cli_errors_generic(argv, message, capsys, tmp_path):
    """Usage errors (status 2); the rest of the CLI's refusals: tests/test_build_cli.py."""
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error: " + message in err and "Traceback" not in err


@pytest.mark.toolchain
def test_generic_build_end_to_end(tmp_path):
    assert main(["--target", "generic", "--preset", "tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["generic"]["transistors"] > report["generic"]["gates"] > 0
    assert report["generic"]["memory_bits"] > 0 and report["checks"]["rtl_mul_cells"] == 0
    comp = report["comparison"]
    for key in ("nand2_eq", "transistors", "pj_per_mac_gate_model_45nm", "pj_per_mac_horowitz45"):
        assert comp["int8"][key] > comp["ternary"][key] > 0, key
    for name in ("ternary", "int8"):
        act = report["activity"][name]
        assert act["checked_against_golden"] and act["tiles_checked"] > 0
        assert act["energy_pj"] == pytest.approx(act["data_pj"] + act["clock_pj"])
    if CHECKPOINT.exists():
        assert len(report["energy_per_layer"]) == 8  # 7 projections + per token
        assert set(report["activity_per_layer"]) == {
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        down = report["activity_per_layer"]["down_proj"]
        per_layer = report["energy_per_layer"]["down_proj"]
        assert per_layer["ternary_gate_model_45nm_pj"] == pytest.approx(
            down["ternary_pj_per_mac"] * 128 * 256)
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    assert not (tmp_path / "top.bin").exists()


@pytest.mark.toolchain
def test_activity_run_detects_a_wrong_netlist(tmp_path):
    from hw.array import MacArray
    rng = np.random.default_rng(3)
    xq = rng.integers(-128, 128, (2, 9)).astype(np.int8)
    trits = rng.integers(-1, 2, (3, 9)).astype(np.int8)
    dut = MacArray.from_config(TINY)
    generic.synth_generic(dut, tmp_path)
    path = tmp_path / "generic.json"
    res = activity.activity_energy(path, "ternary", TINY, xq, trits, 1e-4, dut.latency)
    assert res["checked_against_golden"] and res["tiles_checked"] == 2 * 2
    assert res["useful_macs"] == 2 * 3 * 9 and res["energy_pj"] > 0
    net = json.loads(path.read_text())
    cells = net["modules"]["top"]["cells"]
    # turn every NAND into a NOR: the run must no longer match the golden model
    for cell in cells.values():
        if cell["type"] == "$_NAND_":
            cell["type"] = "$_NOR_"
    path.write_text(json.dumps(net))
    with pytest.raises(generic.GenericError, match="differs from the golden model"):
        activity.activity_energy(path, "ternary", TINY, xq, trits, 1e-4, dut.latency)


@pytest.mark.toolchain
def test_calibration_adder():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        cal = activity.calibrate_unit_energy(d, width=8, samples=300)
    assert cal["adder_transistors"] > 0
    assert cal["e_unit_pj"] * cal["units_per_add"] == pytest.approx(activity.HOROWITZ_ADD32_PJ)


@pytest.mark.toolchain
def test_rtl_multiplier_count(tmp_path):
    """A variable word_select (a constant power-of-two $mul in RTLIL) is not a multiplier;
    a product of two signals is."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Select(wiring.Component):
        word: In(32)
        index: In(2)
        other: In(8)
        y: Out(16)

        def __init__(self, multiply):
            self._multiply = multiply
            super().__init__()

        def elaborate(self, platform):
            m = Module()
            picked = self.word.word_select(self.index, 8)
            m.d.comb += self.y.eq(picked * self.other if self._multiply else picked)
            return m

    assert generic.synth_generic(Select(False), tmp_path / "sel")["rtl_mul_cells"] == 0
    assert generic.synth_generic(Select(True), tmp_path / "mul")["rtl_mul_cells"] == 1


@pytest.mark.toolchain
def test_engine_activity_tiny(tmp_path, monkeypatch):
    """The whole engine's gate netlist (with its activation memory) runs a layer exactly."""
    from hw.engine import BitLinearEngine
    rng = np.random.default_rng(4)
    xq = rng.integers(-128, 128, (2, 13)).astype(np.int8)
    xq[0, :] = -128  # extreme codes
    trits = rng.integers(-1, 2, (5, 13)).astype(np.int8)
    trits[0, :] = -1
    area = generic.synth_generic(BitLinearEngine(config=TINY), tmp_path)
    assert area["memory_bits"] > 0
    net = GateNetlist((tmp_path / "generic.json").read_text())
    assert len(net.mems) == 1
    res = activity.engine_activity(net, TINY, xq, trits, 1e-4)
    assert res["checked_against_golden"] and res["results_checked"] == 2 * 5
    assert res["memory_writes"] > 0 and res["memory_reads"] > 0
    assert res["energy_pj"] == pytest.approx(res["data_pj"] + res["clock_pj"] + res["memory_pj"])
    # a run that cannot produce the golden result is reported, not passed
    with pytest.raises(generic.GenericError, match="timed out"):
        activity.engine_activity(net, TINY, xq, trits, 1e-4, budget=5)
    # ... and a wrong golden value (one accumulator off by one) is detected
    import model.bitlinear
    real = model.bitlinear.ternary_matmul

    def off_by_one(*args, **kw):
        acc = real(*args, **kw).copy()
        acc[1, 3] += 1
        return acc

    monkeypatch.setattr(model.bitlinear, "ternary_matmul", off_by_one)
    with pytest.raises(generic.GenericError, match=r"1 wrong results, first at \[\[1, 3\]\]"):
        activity.engine_activity(net, TINY, xq, trits, 1e-4)


def test_board_defaults_follow_fpga_top():
    from fpga import top as fpga_top
    got = board_defaults()
    assert got["config"] == fpga_top.BOARD_CONFIG
    assert got["pll_mhz"] == fpga_top.BOARD_PLL_MHZ
    assert DEFAULT_TOP in ("fpga", "engine")
