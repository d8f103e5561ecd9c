"""The ECP5 build (``python -m hw.build --target ecp5``): boards and devices, the fit checks, and
small builds on the LFE5U-25F (seconds each); the shipped shape on the 85F under ``-m slow``.
The command line's refusals of bad ECP5 arguments are in ``test_build_cli.py``."""

import json

import pytest

from hw.build.__main__ import main
from hw.build.checks import BuildError, check_no_multipliers
from hw.build.ecp5 import (
    CAPACITY,
    arrays_per_device,
    build_ecp5,
    check_fits_ecp5,
    estimate_ecp5,
    load_ecp5_board,
)
from hw.build.toolchain import find_tool, nextpnr_device_args, run_tool
from hw.build.yosys import CHECK_NETLIST_SCRIPT, ECP5_RTL_SCRIPT, HIDE_INDEXED_NAMES_SCRIPT
from model.accel import PRESETS, AccelConfig

#: The board's shape (fpga.top.BOARD_CONFIG), the default of --target ecp5.
SHIPPED = AccelConfig(rows=5, cols=8, adder_stages=2)


@pytest.mark.parametrize("board, device, part, args", [
    ("ulx3s", "85F", "LFE5U-85F", ["--85k", "--package", "CABGA381", "--speed", "6"]),
    ("ulx3s", "25F", "LFE5U-25F", ["--25k", "--package", "CABGA381", "--speed", "6"]),
    ("orangecrab", "25F", "LFE5U-25F", ["--25k", "--package", "CSFBGA285", "--speed", "8"]),
    ("ecpix5", "45F", "LFE5UM5G-45F", ["--um5g-45k", "--package", "CABGA554", "--speed", "8"]),
])
def test_boards_and_devices_come_from_amaranth_boards(board, device, part, args):
    from amaranth.hdl import Elaboratable, Module

    class Empty(Elaboratable):
        def elaborate(self, platform):
            return Module()

    platform = load_ecp5_board(board, device)
    assert platform.device == part
    plan = platform.build(Empty(), name="top", do_build=False)
    assert nextpnr_device_args(plan, "ecp5") == args


def test_unknown_board_or_device_is_refused():
    with pytest.raises(BuildError, match=r"unknown ECP5 board 'icebreaker' \(known: ulx3s"):
        load_ecp5_board("icebreaker", "85F")
    with pytest.raises(BuildError, match=r"orangecrab has no 45F .* \(its devices: 25F, 85F\)"):
        load_ecp5_board("orangecrab", "45F")


def test_multiplier_check_names_the_dsp_cell():
    check_no_multipliers(0, 0, "MULT18X18D")
    with pytest.raises(BuildError, match=r"multiplier check failed: 3 MULT18X18D in the ternary"):
        check_no_multipliers(0, 3, "MULT18X18D")
    with pytest.raises(BuildError, match=r"2 \$mul/\$macc cells"):
        check_no_multipliers(2, 0, "MULT18X18D")


def test_estimate_refuses_what_cannot_fit():
    """A 64 x 64 ternary array (about 80 k LUT4) on the 25F, 40 int8 multipliers on its 28
    MULT18X18D; the shipped shape and its LUT-only int8 array fit the 85F."""
    p25, p85 = load_ecp5_board("ulx3s", "25F"), load_ecp5_board("ulx3s", "85F")
    big = AccelConfig(rows=64, cols=64, adder_stages=1)
    with pytest.raises(BuildError, match=r"top array 64x64 does not fit the LFE5U-25F: \d+ LUT4 "
                                         r"\(estimated\) > 24288 \(refused above 26717"):
        check_fits_ecp5(big, "array", p25)
    with pytest.raises(BuildError, match=r"40 MULT18X18D \(one per int8 multiply\) > 28"):
        check_fits_ecp5(SHIPPED, "baseline", p25)
    check_fits_ecp5(SHIPPED, "baseline", p25, use_dsp=False)
    for top in ("engine", "array", "baseline"):
        check_fits_ecp5(SHIPPED, top, p85)
    assert estimate_ecp5(SHIPPED, "baseline")["MULT18X18D"] == 40
    assert estimate_ecp5(SHIPPED, "baseline", use_dsp=False)["MULT18X18D"] == 0


def test_tool_failures_say_what_failed(tmp_path):
    """nextpnr-ecp5 out of sites: "does not fit"; Yosys -q with its log in -l FILE (its own
    output empty): the ERROR line of that file."""
    no_bels = ("echo \"ERROR: Unable to place cell 'm.0', no BELs remaining to implement cell "
               "type 'DP16KD'\"; exit 1")
    with pytest.raises(BuildError, match=r"^design does not fit the device: no DP16KD left"):
        run_tool(["sh", "-c", no_bels], tmp_path, "pnr.log")
    yosys = "printf 'line\\nERROR: Assert failed.\\nend\\n' > top.rpt; exit 1"
    with pytest.raises(BuildError, match=r"sh failed \(see .*top.rpt\): ERROR: Assert failed\.$"):
        run_tool(["sh", "-c", yosys, "-l", "top.rpt"], tmp_path, "yosys.log")


def test_arrays_per_device():
    cap = CAPACITY["85F"]
    assert arrays_per_device({"TRELLIS_COMB": 1000, "MULT18X18D": 0}, cap) == 83
    assert arrays_per_device({"TRELLIS_COMB": 500, "MULT18X18D": 40}, cap) == 3
    assert arrays_per_device({}, cap) is None


#: The smallest design Yosys 0.70's ABC9 maps wrong (docs/build.md, "Why the 1024-MAC arrays
#: failed"): a wire named ``a[1]`` beside a wire ``a``, both flip-flop outputs feeding logic.
NAME_CLASH_V = """module top(input clk, input [7:0] d, output reg y);
  reg [3:0] a;
  reg [1:0] \\a[1] ;
  always @(posedge clk) begin
    a <= d[3:0];
    \\a[1]  <= d[5:4];
    y <= (a[0] & a[1]) ^ (a[2] | a[3]) ^ (\\a[1] [0] & \\a[1] [1]);
  end
endmodule
"""


def _flop_outputs(tmp_path, script):
    """The Q bits of the TRELLIS_FF of :data:`NAME_CLASH_V` after ``script`` and
    ``synth_ecp5``."""
    (tmp_path / "clash.v").write_text(NAME_CLASH_V)
    run_tool([find_tool("yosys"), "-q", "-p", f"read_verilog clash.v; {script}; "
              "synth_ecp5 -top top; write_json clash.json"], tmp_path, "yosys.log")
    cells = json.loads((tmp_path / "clash.json").read_text())["modules"]["top"]["cells"]
    return [c["connections"]["Q"][0] for c in cells.values() if c["type"] == "TRELLIS_FF"]


def test_indexed_names_are_hidden_in_the_flow(tmp_path, monkeypatch):
    """The ECP5 build's Yosys script (as Amaranth writes it; Yosys not run) hides the indexed
    names before synthesis and checks the netlist after it."""
    def stop(cmd, cwd, log):
        raise BuildError("stopped before Yosys")
    monkeypatch.setattr("hw.build.ecp5.run_tool", stop)
    monkeypatch.setattr("hw.build.ecp5.find_tool", lambda name: name)
    with pytest.raises(BuildError, match="stopped before Yosys"):
        build_ecp5(PRESETS["tiny"], top="array", device="25F", out=tmp_path)
    script = (tmp_path / "top.ys").read_text()
    assert ECP5_RTL_SCRIPT.endswith(HIDE_INDEXED_NAMES_SCRIPT)
    assert script.index(HIDE_INDEXED_NAMES_SCRIPT) < script.index("synth_ecp5")
    assert script.index("synth_ecp5") < script.index(CHECK_NETLIST_SCRIPT)


@pytest.mark.toolchain
def test_a_net_with_two_drivers_fails_the_netlist_check(tmp_path):
    """The build's post-synthesis check (CHECK_NETLIST_SCRIPT) refuses the wrong netlist."""
    (tmp_path / "clash.v").write_text(NAME_CLASH_V)
    with pytest.raises(BuildError, match=r"ERROR: Found 1 problems in 'check -assert'"):
        run_tool([find_tool("yosys"), "-q", "-l", "clash.rpt", "-p", "read_verilog clash.v; "
                  "synth_ecp5 -top top; " + CHECK_NETLIST_SCRIPT], tmp_path, "yosys.log")
    assert "multiple conflicting drivers for top.\\a [1]" in (tmp_path / "clash.rpt").read_text()


@pytest.mark.toolchain
def test_abc9_name_clash_is_worked_around(tmp_path):
    """Without the flow's script two of the seven flip-flops drive one net (``a[1]`` and
    ``\\a[1] [0]`` merged); with it all seven outputs are distinct."""
    plain = _flop_outputs(tmp_path, "hierarchy -top top; proc")
    assert len(plain) == 7 and len(set(plain)) == 6, (
        "Yosys no longer merges a[1] with \\a[1] [0]: HIDE_INDEXED_NAMES_SCRIPT may go")
    fixed = _flop_outputs(tmp_path, ECP5_RTL_SCRIPT)
    assert len(fixed) == 7 and len(set(fixed)) == 7


@pytest.mark.toolchain
def test_ternary_array_on_25f(tmp_path):
    """No multiplier in the ternary netlist, a bitstream, nextpnr's capacities are the table's."""
    rep = build_ecp5(PRESETS["tiny"], top="array", device="25F", out=tmp_path)
    assert rep["fits"] and (tmp_path / "top.bit").stat().st_size > 0
    assert rep["checks"] == {"mult18x18d": 0, "alu54b": 0, "rtl_mul_cells": 0}
    assert rep["device"]["LUT4"]["used"] > 0 and rep["device"]["CCU2C"]["used"] > 0
    assert rep["device"]["MULT18X18D"]["used"] == 0 and rep["timing"]["fmax_mhz"] > 0
    util = json.loads((tmp_path / "pnr.json").read_text())["utilization"]
    assert {k: util[k]["available"] for k in CAPACITY["25F"]} == CAPACITY["25F"]
    # the LUT4 sites placed: at least the synthesized LUT4 + 2 per CCU2C
    sites = rep["device"]["TRELLIS_COMB"]["used"]
    assert sites >= rep["device"]["LUT4"]["used"] + 2 * rep["device"]["CCU2C"]["used"]
    assert rep["throughput"]["macs_per_device"] == 8 * (24288 // sites)


@pytest.mark.toolchain
def test_multiplier_check_fires_on_the_int8_array(tmp_path):
    with pytest.raises(BuildError, match=r"multiplier check failed: 8 \$mul"):
        build_ecp5(PRESETS["tiny"], top="baseline", device="25F", out=tmp_path)
    assert not list(tmp_path.glob("nextpnr*.log"))


@pytest.mark.toolchain
def test_design_over_the_device_is_refused_before_place_and_route(tmp_path):
    """Forced past the estimate, the 40 MULT18X18D of the 5 x 8 int8 array are refused from
    the synthesized netlist (nextpnr never runs); with unfit_ok it is reported from synthesis."""
    with pytest.raises(BuildError, match=r"design does not fit the LFE5U-25F: 40 MULT18X18D > 28 "
                                         r"\(synthesized cells; place and route not run\)"):
        build_ecp5(SHIPPED, top="baseline", device="25F", out=tmp_path / "a", allow_mul=True,
                   force=True)
    assert not list((tmp_path / "a").glob("nextpnr*.log"))
    rep = build_ecp5(SHIPPED, top="baseline", device="25F", out=tmp_path / "b", allow_mul=True,
                     unfit_ok=True)
    assert rep["fits"] is False and rep["throughput"]["macs_per_device"] == 0
    assert rep["device"]["MULT18X18D"] == {"used": 40, "available": 28, "percent": 142.9}


@pytest.mark.toolchain
def test_cli_tiny_engine_on_25f(tmp_path, capsys):
    """The whole --target ecp5 flow: engine, then the three-way array comparison, in which
    synth_ecp5 puts each int8 multiply in a MULT18X18D and -nodsp puts none there."""
    assert main(["--target", "ecp5", "--device", "25F", "--preset", "tiny", "--top", "engine",
                 "--no-activity", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "top.bit").stat().st_size > 0
    assert report["checks"]["mult18x18d"] == 0 and report["checks"]["rtl_mul_cells"] == 0
    assert report["device"]["DPR16X4"]["used"] == 8      # the 16 x 32-bit activation buffer
    comp = report["comparison"]
    assert comp["ternary"]["MULT18X18D"] == comp["int8_lut"]["MULT18X18D"] == 0
    assert comp["int8"]["MULT18X18D"] == 8
    assert comp["ratio_int8_lut_over_ternary"]["LUT4"] > 5
    assert comp["int8_lut"]["LUT4"] > 5 * comp["int8"]["LUT4"]
    assert all(comp[k]["fmax_mhz"] > 0 for k in ("ternary", "int8", "int8_lut"))
    assert "int8_lut" in capsys.readouterr().out
    assert "| int8_lut |" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.toolchain
@pytest.mark.parametrize("device", ["45F", "85F"])
def test_capacity_table_is_nextpnrs(device, tmp_path):
    build_ecp5(PRESETS["tiny"], top="array", device=device, out=tmp_path)
    util = json.loads((tmp_path / "pnr.json").read_text())["utilization"]
    assert {k: util[k]["available"] for k in CAPACITY[device]} == CAPACITY[device]


@pytest.mark.slow
@pytest.mark.toolchain
def test_shipped_shape_on_85f(tmp_path):
    """The 5 x 8 arrays on the 85F: ternary in LUTs, int8 on 40 MULT18X18D, int8 in LUTs
    (docs/build.md, "ECP5"; several minutes on 2 cores)."""
    assert main(["--target", "ecp5", "--top", "array", "--no-activity",
                 "--out", str(tmp_path)]) == 0
    comp = json.loads((tmp_path / "report.json").read_text())["comparison"]
    assert comp["ternary"]["MULT18X18D"] == 0 and comp["int8"]["MULT18X18D"] == 40
    assert comp["int8_lut"]["MULT18X18D"] == 0
    assert comp["ternary"]["LUT4"] < comp["int8"]["LUT4"] < comp["int8_lut"]["LUT4"]
    assert comp["ternary"]["macs_per_device"] > comp["int8_lut"]["macs_per_device"]


@pytest.mark.slow
@pytest.mark.toolchain
def test_board_top_on_ulx3s_85f(tmp_path):
    """fpga.top.BoardTop (UART link, generic memories in DP16KD, the 25 MHz board clock) on the
    ULX3S 85F (docs/build.md, "ECP5"; a few minutes on 2 cores)."""
    assert main(["--target", "ecp5", "--top", "fpga", "--no-compare", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "top.bit").stat().st_size > 0
    assert report["checks"]["mult18x18d"] == 0 and report["checks"]["rtl_mul_cells"] == 0
    assert report["device"]["DP16KD"]["used"] >= estimate_ecp5(SHIPPED, "fpga")["DP16KD"]
    assert report["timing"]["clock_mhz"] == 25.0 and report["timing"]["meets_clock"]


@pytest.mark.slow
@pytest.mark.toolchain
def test_2048_mac_array_on_85f(tmp_path):
    """32 x 64 ternary MACs per cycle on the 85F at >= 80 MHz with no DSP (docs/build.md,
    "ECP5": about 13 minutes on 2 cores; 107.6 MHz measured)."""
    rep = build_ecp5(AccelConfig(rows=32, cols=64, adder_stages=3), top="array", out=tmp_path)
    assert rep["fits"] and (tmp_path / "top.bit").stat().st_size > 0
    assert rep["checks"] == {"mult18x18d": 0, "alu54b": 0, "rtl_mul_cells": 0}
    assert rep["throughput"]["macs_per_cycle"] == 2048
    assert rep["device"]["MULT18X18D"]["used"] == 0
    assert rep["timing"]["fmax_mhz"] >= 80
