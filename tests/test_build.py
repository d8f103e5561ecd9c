"""Tests of hw.build.report parsing (fixed logs), the seed search, and a small end-to-end iCE40
build. The command line's refusals of bad input are in ``test_build_cli.py``."""

import json
import threading
from pathlib import Path

import pytest

from hw.build.__main__ import main
from hw.build.checks import BuildError
from hw.build.harness import MAX_CHAIN_BITS, Harness, chain_segments
from hw.build.ice40 import build_ice40, load_board
from hw.build.report import cell_summary, parse_nextpnr_report, parse_yosys_stat, write_report
from hw.build.seeds import keep_seed, search_seeds
from hw.build.toolchain import ToolchainError, find_tool, nextpnr_device_args
from hw.build.yosys import ABC9_WIRE_DELAY_PS, synth_ice40_scripts
from model.accel import PRESETS

FIXTURES = Path(__file__).parent / "fixtures"


def test_parse_yosys_stat_fixture():
    cells = parse_yosys_stat((FIXTURES / "yosys_stat_tiny.json").read_text())
    summary = cell_summary(cells)
    assert summary["LUT4"] == cells["SB_LUT4"] == 595
    assert summary["SB_CARRY"] == 242
    assert summary["FF"] == sum(v for k, v in cells.items() if k.startswith("SB_DFF")) == 383
    assert summary["EBR"] == 2
    assert summary["SPRAM"] == 0 and summary["SB_MAC16"] == 0


def test_parse_nextpnr_report_fixture():
    pnr = parse_nextpnr_report((FIXTURES / "nextpnr_report_tiny.json").read_text())
    assert pnr["fmax_mhz"]["cd_sync.clk"] == pytest.approx(30.6476, abs=1e-3)
    assert pnr["target_mhz"]["cd_sync.clk"] == pytest.approx(12.0, abs=1e-3)
    assert pnr["utilization"]["ICESTORM_RAM"] == {"used": 2, "available": 30}


def test_write_report(tmp_path):
    write_report(tmp_path, {"title": "t", "device": {"LUT4": 3}, "assumptions": ["a1"]})
    assert json.loads((tmp_path / "report.json").read_text())["device"] == {"LUT4": 3}
    md = (tmp_path / "report.md").read_text()
    assert "| LUT4 | 3 |" in md and "- a1" in md


def test_toolchain_env_override(monkeypatch):
    monkeypatch.setenv("YOSYS", "/nonexistent/yosys")
    with pytest.raises(ToolchainError, match="YOSYS"):
        find_tool("yosys")


@pytest.mark.toolchain
def test_small_build_end_to_end(tmp_path):
    assert main(["--preset", "tiny", "--top", "engine", "--out", str(tmp_path),
                 "--no-activity"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "top.bin").stat().st_size > 0
    assert report["device"]["SB_MAC16"]["used"] == 0
    assert report["device"]["LUT4"]["used"] > 0
    assert report["timing"]["fmax_mhz"] > 0
    # the seed search: the kept seed is among those tried, with its Fmax
    tried = report["timing"]["seeds_tried"]
    assert tried[f"seed {report['timing']['seed']}"] == round(report["timing"]["fmax_mhz"], 2)
    assert (tmp_path / "top.asc").exists() and (tmp_path / "pnr.json").exists()
    assert report["throughput"]["macs_per_cycle"] == 8
    assert report["checks"]["sb_mac16"] == 0 and report["checks"]["rtl_mul_cells"] == 0
    comp = report["comparison"]
    assert comp["int8"]["SB_MAC16"] == 8 and comp["ternary"]["SB_MAC16"] == 0
    # generic area of the top and of both arrays (activity skipped by --no-activity)
    assert report["generic"]["transistors"] > report["generic"]["nand2_equivalent"] > 0
    assert comp["int8"]["transistors"] > comp["ternary"]["transistors"] > 0
    assert comp["ternary"]["pj_per_mac_gate_model_45nm"] is None and "activity" not in report
    assert report["energy"]["pj_per_mac_horowitz45"]["int8_over_ternary"] > 1
    assert (tmp_path / "comparison.png").stat().st_size > 0


def test_energy_arithmetic():
    from hw.build.energy import energy_per_mac, layer_energy, mac_ops
    assert mac_ops("ternary", 16) == {"add8": 15 / 16, "add32": 1 / 16, "mul8": 0.0}
    assert mac_ops("int8", 1)["mul8"] == 1.0
    # Horowitz 45 nm: ternary 15/16 * 0.03 + 1/16 * 0.1; int8 adds one 0.2 pJ multiply.
    assert energy_per_mac("ternary", 16) == pytest.approx(15 / 16 * 0.03 + 0.1 / 16)
    assert energy_per_mac("int8", 16) - energy_per_mac("ternary", 16) == pytest.approx(0.2)
    assert layer_energy("ternary", 16, 3, 5) == pytest.approx(15 * energy_per_mac("ternary", 16))
    with pytest.raises(ValueError, match="kind"):
        mac_ops("fp16", 4)
    with pytest.raises(ValueError, match="sizes"):
        layer_energy("int8", 4, 0, 5)


@pytest.mark.toolchain
def test_multiplier_check_rejects_int8_baseline(tmp_path):
    with pytest.raises(BuildError, match=r"multiplier check failed: \d+ \$mul"):
        build_ice40(PRESETS["tiny"], top="baseline", out=tmp_path)


def _fake_pnr(fmax_by_seed, calls):
    def place_and_route(seed):
        calls.append(seed)
        return {"fmax_mhz": {"clk": fmax_by_seed[seed]}}
    return place_and_route


def test_search_seeds_stops_at_the_first_seed_that_meets_the_goal():
    calls, misses = [], []
    seed, fmax, pnr, tried = search_seeds(
        _fake_pnr({1: 46.8, 2: 49.6, 3: 50.0}, calls), 48.0, 4,
        progress=lambda *a: misses.append(a))
    assert (seed, fmax, calls) == (2, 49.6, [1, 2])
    assert tried == {"seed 1": 46.8, "seed 2": 49.6} and misses == [(1, 46.8, 48.0)]
    assert pnr == {"fmax_mhz": {"clk": 49.6}}


def test_search_seeds_goes_on_after_a_seed_that_does_not_place():
    calls, misses = [], []

    def place_and_route(seed):
        calls.append(seed)
        if seed in (1, 3):
            raise BuildError("Unable to find legal placement for all cells")
        return {"fmax_mhz": {"clk": {2: 47.0, 4: 48.5}[seed]}}
    seed, fmax, _, tried = search_seeds(place_and_route, 48.0, 4,
                                        progress=lambda *a: misses.append(a[0]))
    assert (seed, fmax, calls) == (4, 48.5, [1, 2, 3, 4])
    assert tried == {"seed 1": None, "seed 2": 47.0, "seed 3": None, "seed 4": 48.5}
    assert misses == [1, 2, 3]
    # no seed places: the last error
    calls.clear()
    with pytest.raises(BuildError, match="legal placement"):
        search_seeds(lambda s: place_and_route(1), 48.0, 2)


def test_search_seeds_keeps_the_fastest_when_none_meets_the_goal():
    calls = []
    seed, fmax, _, tried = search_seeds(
        _fake_pnr({1: 45.0, 2: 47.5, 3: 47.5, 4: 46.0}, calls), 48.0, 4)
    assert (seed, fmax, calls) == (2, 47.5, [1, 2, 3, 4])
    assert list(tried) == ["seed 1", "seed 2", "seed 3", "seed 4"]
    seed, fmax, _, _ = search_seeds(_fake_pnr({1: 30.0}, []), 48.0, 1)
    assert (seed, fmax) == (1, 30.0)
    with pytest.raises(BuildError, match="seeds"):
        search_seeds(_fake_pnr({}, []), 48.0, 0)


def test_search_seeds_side_by_side_keeps_what_one_at_a_time_keeps():
    """``jobs=2``: seeds run in batches of two, concurrently (a barrier that both runs of a
    batch must reach), and the kept seed, its Fmax and the misses are those of ``jobs=1``;
    ``tried`` also holds the batch's seeds after the kept one."""
    table = {1: 46.8, 2: 45.0, 3: 49.6, 4: 50.0, 5: 47.0}
    barrier = threading.Barrier(2, timeout=10)
    calls, misses = [], []

    def place_and_route(seed):
        calls.append(seed)
        barrier.wait()                      # both seeds of the batch are running
        return {"fmax_mhz": {"clk": table[seed]}}
    seed, fmax, _, tried = search_seeds(place_and_route, 48.0, 5, jobs=2,
                                        progress=lambda *a: misses.append(a[0]))
    assert (seed, fmax) == (3, 49.6) == search_seeds(_fake_pnr(table, []), 48.0, 5)[:2]
    assert sorted(calls) == [1, 2, 3, 4] and misses == [1, 2]
    assert tried == {"seed 1": 46.8, "seed 2": 45.0, "seed 3": 49.6, "seed 4": 50.0}
    # none meets: the fastest, every seed tried (the odd last batch runs alone)
    seed, fmax, _, tried = search_seeds(_fake_pnr({1: 45.0, 2: 47.5, 3: 47.0}, []), 48.0, 3,
                                        jobs=2)
    assert (seed, fmax, len(tried)) == (2, 47.5, 3)

    # a seed that does not place, side by side with one that does
    def flaky(seed):
        if seed == 1:
            raise BuildError("Unable to find legal placement for all cells")
        return {"fmax_mhz": {"clk": 48.5}}
    seed, _, _, tried = search_seeds(flaky, 48.0, 4, jobs=2)
    assert seed == 2 and tried == {"seed 1": None, "seed 2": 48.5}
    with pytest.raises(BuildError, match="jobs"):
        search_seeds(flaky, 48.0, 4, jobs=0)


@pytest.mark.parametrize("device, dev", [("iCE40UP5K", "u"), ("iCE40HX8K", "hx"),
                                         ("iCE40LP1K", "lp")])
def test_synth_scripts_time_the_lut_mapping_for_the_device(device, dev):
    opts, script = synth_ice40_scripts(device)
    assert opts == f"-dsp -device {dev} -run :map_luts"
    assert f"-D ICE40_{dev.upper()} " in script
    assert f"abc9 -W {ABC9_WIRE_DELAY_PS};" in script
    assert script.endswith(f"synth_ice40 -dsp -device {dev} -top top -run map_cells:")
    opts, script = synth_ice40_scripts(device, use_dsp=False, wire_delay_ps=300)
    assert "-dsp" not in opts + script and "abc9 -W 300;" in script


def test_keep_seed_names_the_kept_result_and_removes_the_others(tmp_path):
    for n in (1, 2, 3):
        for name in (f"top.seed{n}.asc", f"pnr.seed{n}.json", f"nextpnr.seed{n}.log"):
            (tmp_path / name).write_text(f"{name}")
    keep_seed(tmp_path, 2, 3)
    assert (tmp_path / "top.asc").read_text() == "top.seed2.asc"
    assert (tmp_path / "pnr.json").read_text() == "pnr.seed2.json"
    assert (tmp_path / "nextpnr.log").read_text() == "nextpnr.seed2.log"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "nextpnr.log", "nextpnr.seed1.log", "nextpnr.seed2.log", "nextpnr.seed3.log",
        "pnr.json", "top.asc"]


@pytest.mark.parametrize("board, args", [("icebreaker", ["--up5k", "--package", "sg48"]),
                                         ("icestick", ["--hx1k", "--package", "tq144"])])
def test_nextpnr_device_args_come_from_the_platform_build_plan(board, args):
    from amaranth.hdl import Elaboratable, Module

    class Empty(Elaboratable):
        def elaborate(self, platform):
            return Module()

    plan = load_board(board).build(Empty(), name="top", do_build=False)
    assert nextpnr_device_args(plan) == args


def test_chain_segments_bound_the_longest_flip_flop_path():
    assert chain_segments(MAX_CHAIN_BITS) == [(0, MAX_CHAIN_BITS)]
    segs = chain_segments(4675)
    half = MAX_CHAIN_BITS // 2
    assert segs[0] == (0, half) and segs[-1] == (4 * half, 4675) and len(segs) == 5
    assert all(b == a2 for (_, b), (a2, _) in zip(segs, segs[1:], strict=False))
    with pytest.raises(BuildError, match="more than 5 segments of 4"):
        chain_segments(30, 8)


def test_segmented_harness_drives_every_input_bit_differently():
    """A 20-bit input through 4-bit segments: after a random bit stream on the pin every input
    bit has its own history (no two could be merged), and the output pin follows the DUT."""
    import random

    from amaranth.hdl import Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from amaranth.sim import Simulator

    class Wide(wiring.Component):
        a: In(12)
        b: In(8)
        y: Out(1)

        def elaborate(self, platform):
            from amaranth.hdl import Module
            m = Module()
            m.d.comb += self.y.eq(self.a[0])
            return m

    dut = Wide()
    din, dout = Signal(), Signal()
    top = Harness(dut, din=din, dout=dout, max_chain=8)
    histories = {i: [] for i in range(20)}
    rng = random.Random(1)

    async def bench(ctx):
        for _ in range(60):
            ctx.set(din, rng.getrandbits(1))
            await ctx.tick()
            bits = ctx.get(dut.a) | ctx.get(dut.b) << 12
            for i in histories:
                histories[i].append(bits >> i & 1)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len({tuple(h[20:]) for h in histories.values()}) == 20
