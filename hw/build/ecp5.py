"""The ECP5 build: synthesize (``synth_ecp5``), place and route (nextpnr-ecp5) and pack
(ecppack) a top for an amaranth-boards ECP5 board.

:func:`build_ecp5` is ``python -m hw.build --target ecp5``'s step: the engine or an array in the
pin harness, or the board top :class:`fpga.top.BoardTop` (UART host link, generic memories,
the board clock) on a board with a UART. The boards are
:data:`ECP5_BOARDS` (ULX3S, OrangeCrab r0.2, ECPIX-5), the device sizes their amaranth-boards
platform classes offer (:func:`load_ecp5_board`). Before anything is elaborated
:func:`check_fits_ecp5` refuses, from :func:`estimate_ecp5`, what cannot fit the device; after
synthesis, before place and route, the synthesized cell counts are checked against the device
(:func:`check_synthesis_fits`).
"""

import importlib
import time
from pathlib import Path

from .checks import (
    MUL_CELLS,
    BuildError,
    check_no_multipliers,
    check_size,
    design_macs,
    shape_name,
)
from .harness import BoardHarness, harness_overhead, make_dut
from .ice40 import FIT_MARGIN, estimate_up5k
from .report import ECP5_CELLS, cell_summary, parse_yosys_stat
from .seeds import default_jobs, keep_seed, place_and_route_seeds
from .toolchain import find_tool, nextpnr_device_args, run_tool, stage
from .yosys import CHECK_NETLIST_SCRIPT, ECP5_RTL_SCRIPT

__all__ = ["ECP5_BOARDS", "ECP5_DEVICES", "DEFAULT_BOARD", "DEFAULT_DEVICE", "DEFAULT_FREQ_MHZ",
           "load_ecp5_board", "ecp5_capacity", "lut_slots", "estimate_ecp5", "check_fits_ecp5",
           "check_synthesis_fits", "arrays_per_device", "build_ecp5"]

#: ``--board`` name -> amaranth-boards module of the board's ECP5 platforms.
ECP5_BOARDS = {"ulx3s": "ulx3s", "orangecrab": "orangecrab_r0_2", "ecpix5": "ecpix5"}
#: ``--device`` names: the size suffix of the platforms' ``device`` (``LFE5U-85F``,
#: ``LFE5UM5G-85F``).
ECP5_DEVICES = ("85F", "45F", "25F")
DEFAULT_BOARD = "ulx3s"
DEFAULT_DEVICE = "85F"
#: nextpnr-ecp5 ``--freq`` without ``--freq``: a target the arrays can reach, so the placer
#: works for speed (the board's own 25-100 MHz oscillator constraint is not used).
DEFAULT_FREQ_MHZ = 100.0

#: Resources per device, as nextpnr-ecp5 counts them in its utilisation report
#: (``TRELLIS_COMB``: LUT4 sites, two per slice; ``TRELLIS_FF``; ``DP16KD``: 18 kbit block RAM;
#: ``MULT18X18D``: 18 x 18 multiplier). Lattice ECP5 family data sheet (FPGA-DS-02012), table
#: 1.1: 24 k / 44 k / 84 k LUTs, 56 / 108 / 208 sysMEM blocks, 28 / 72 / 156 18 x 18
#: multipliers; ``tests/test_build_ecp5.py`` checks the table against nextpnr's report.
CAPACITY = {
    "25F": {"TRELLIS_COMB": 24288, "TRELLIS_FF": 24288, "DP16KD": 56, "MULT18X18D": 28},
    "45F": {"TRELLIS_COMB": 43848, "TRELLIS_FF": 43848, "DP16KD": 108, "MULT18X18D": 72},
    "85F": {"TRELLIS_COMB": 83640, "TRELLIS_FF": 83640, "DP16KD": 208, "MULT18X18D": 156},
}


def _platforms(board):
    """``{size: platform class}`` of an :data:`ECP5_BOARDS` board (``{"85F": ULX3S_85F...}``)."""
    from amaranth.vendor import LatticePlatform
    module = importlib.import_module(f"amaranth_boards.{ECP5_BOARDS[board]}")
    found = {}
    for attr in sorted(dir(module)):
        cls = getattr(module, attr)
        device = getattr(cls, "device", None)
        if (isinstance(cls, type) and issubclass(cls, LatticePlatform)
                and isinstance(device, str) and device.split("-")[-1] in ECP5_DEVICES):
            found.setdefault(device.split("-")[-1], cls)
    return found


def load_ecp5_board(board=DEFAULT_BOARD, device=DEFAULT_DEVICE):
    """An instance of the amaranth-boards platform of ``board`` with ECP5 ``device`` (``85F``).

    Raises
    ------
    BuildError
        ``board`` is not one of :data:`ECP5_BOARDS`, or has no platform for ``device`` (the
        OrangeCrab comes as 25F and 85F, the ECPIX-5 as 45F and 85F).
    """
    if board not in ECP5_BOARDS:
        raise BuildError(f"unknown ECP5 board {board!r} (known: {', '.join(ECP5_BOARDS)})")
    platforms = _platforms(board)
    if device not in platforms:
        raise BuildError(f"board {board} has no {device} platform in amaranth_boards."
                         f"{ECP5_BOARDS[board]} (its devices: {', '.join(sorted(platforms))})")
    return platforms[device]()


def ecp5_capacity(platform):
    """:data:`CAPACITY` of the platform's device (``LFE5U-85F`` and ``LFE5UM5G-85F``: 85F)."""
    return CAPACITY[platform.device.split("-")[-1]]


def lut_slots(summary):
    """LUT4 sites a synthesized netlist takes: its LUT4, two per CCU2C (a carry cell is two
    LUT4 with carry logic) and two per TRELLIS_DPR16X4 (a distributed RAM's two LUTs)."""
    return summary["LUT4"] + 2 * summary["CCU2C"] + 2 * summary["DPR16X4"]


#: Memories of at least this many bits are counted in block RAM by :func:`estimate_ecp5`.
BLOCK_RAM_MIN_BITS = 16384
#: Bits of one DP16KD (18 kbit).
DP16KD_BITS = 18432


def estimate_ecp5(config, top, *, use_dsp=True):
    """Estimated ECP5 resources of ``top`` (``fpga``, ``engine``, ``array``, ``baseline``), in
    the units of :data:`CAPACITY`, before anything is elaborated.

    The LUT4 sites are the iCE40 LUT4 model (:func:`hw.build.ice40.estimate_up5k`): the same
    LUT4-and-carry logic, an iCE40 adder bit being one SB_LUT4 beside its SB_CARRY and an ECP5
    one half a CCU2C (docs/build.md, "ECP5", has it against the ECP5 builds). The int8
    baseline with ``use_dsp`` takes one MULT18X18D per multiply (``synth_ecp5`` maps every
    8 x 8 ``$mul`` to one), else its multipliers go to LUTs. DP16KD: a lower bound, the
    memories of the iCE40 model of at least :data:`BLOCK_RAM_MIN_BITS` bits (and for the board
    top its weight memory, SPRAM on the UP5K) at 18 kbit per DP16KD.
    """
    macs = config.rows * config.cols
    est = estimate_up5k(config, top, use_dsp=use_dsp, dsp_limit=macs)
    bits = [w * d for _name, w, d, _ebr in est["memories"]]
    if top == "fpga":
        from fpga.memory import SPRAM_WORDS, WORD_BYTES
        bits.append(SPRAM_WORDS * WORD_BYTES * 8)
    return {"TRELLIS_COMB": est["LUT4"], "MULT18X18D": est["SB_MAC16"],
            "DP16KD": sum(-(-b // DP16KD_BITS) for b in bits if b >= BLOCK_RAM_MIN_BITS)}


def check_fits_ecp5(config, top, platform, *, use_dsp=True):
    """Raise :class:`BuildError` if ``top`` surely does not fit the platform's device: its
    :func:`estimate_ecp5` LUT4 sites exceed the device by more than
    :data:`hw.build.ice40.FIT_MARGIN`, or it needs more MULT18X18D or DP16KD than the device
    has. Returns the estimate otherwise."""
    est = estimate_ecp5(config, top, use_dsp=use_dsp)
    cap = ecp5_capacity(platform)
    limit = round(cap["TRELLIS_COMB"] * (1 + FIT_MARGIN))
    over = []
    if est["TRELLIS_COMB"] > limit:
        over.append(f"{est['TRELLIS_COMB']} LUT4 (estimated) > {cap['TRELLIS_COMB']} (refused "
                    f"above {limit}, +{FIT_MARGIN:.0%} margin)")
    if est["MULT18X18D"] > cap["MULT18X18D"]:
        over.append(f"{est['MULT18X18D']} MULT18X18D (one per int8 multiply) > "
                    f"{cap['MULT18X18D']}")
    if est["DP16KD"] > cap["DP16KD"]:
        over.append(f"{est['DP16KD']} DP16KD (memories at 18 kbit each, at least) > "
                    f"{cap['DP16KD']}")
    if over:
        raise BuildError(f"top {top} {shape_name(config, top)} does not fit the "
                         f"{platform.device}: " + "; ".join(over)
                         + " (hw.build.ecp5.estimate_ecp5, docs/build.md); --force "
                           "(force=True) synthesizes anyway")
    return est


def check_synthesis_fits(summary, platform):
    """``[]`` if the synthesized cells (:data:`hw.build.report.ECP5_CELLS` rows) fit the
    platform's device, else one ``"N what > available"`` string per resource over it."""
    cap = ecp5_capacity(platform)
    need = {"TRELLIS_COMB": lut_slots(summary), "TRELLIS_FF": summary["FF"],
            "DP16KD": summary["DP16KD"], "MULT18X18D": summary["MULT18X18D"]}
    return [f"{n} {key} > {cap[key]}" for key, n in need.items() if n > cap[key]]


def arrays_per_device(used, capacity):
    """How many copies of a design fit the device: the smallest ``available // used`` over the
    resources it uses (``used`` and ``capacity`` keyed as :data:`CAPACITY`)."""
    counts = [capacity[k] // n for k, n in used.items() if n and k in capacity]
    return min(counts) if counts else None


def _device_rows(summary, util, capacity):
    """The report's ``device`` section: each :data:`ECP5_CELLS` row used, and the sites of
    :data:`CAPACITY` used / available (from nextpnr's utilisation when placed)."""
    rows = {k: {"used": v} for k, v in summary.items()}
    synth = {"TRELLIS_COMB": lut_slots(summary), "TRELLIS_FF": summary["FF"],
             "DP16KD": summary["DP16KD"], "MULT18X18D": summary["MULT18X18D"]}
    for key, avail in capacity.items():
        used = util[key]["used"] if key in util else synth[key]
        rows[key] = {"used": used, "available": avail, "percent": round(100 * used / avail, 1)}
    return rows


def build_ecp5(config, *, top="engine", board=DEFAULT_BOARD, device=DEFAULT_DEVICE, out,
               freq_mhz=DEFAULT_FREQ_MHZ, allow_mul=False, use_dsp=True, unfit_ok=False,
               t0=None, seeds=1, force=False, jobs=None):
    """Synthesize / place / route / pack ``top`` for ``board`` with ECP5 ``device``; return the
    report dict.

    ``synth_ecp5`` (with ``-nodsp`` unless ``use_dsp``: multipliers in LUTs), the multiplier
    check unless ``allow_mul``, then the synthesized cells against the device: a design that
    does not fit is refused before place and route (:class:`BuildError`), or with ``unfit_ok``
    reported from synthesis alone (``"fits": False``). nextpnr-ecp5 runs with ``--freq
    freq_mhz`` (the board oscillator's constraint is dropped from the LPF so that every build
    is timed against the same target) and seeds 1 .. ``seeds`` until one meets it
    (:func:`hw.build.seeds.search_seeds`); ecppack writes ``top.bit``.

    The board top (``top="fpga"``) is :class:`fpga.top.BoardTop` without a PLL: it runs from
    the board clock, which is then the target (``freq_mhz`` is not used), and its memories are
    the generic ``lib.memory`` ones (block RAM).

    Before anything is elaborated: :func:`check_size`, for the board top a UART on the board
    and :func:`fpga.top.check_board_params`, and unless ``unfit_ok`` or ``force``
    :func:`check_fits_ecp5`.
    """
    t0 = time.monotonic() if t0 is None else t0
    platform = load_ecp5_board(board, device)
    check_size(config)
    if top == "fpga":
        from fpga.top import check_board_params
        if not any(name == "uart" for name, _number in platform.resources):
            raise BuildError(f"board {board} has no UART for the board top's host link (ECP5 "
                             "tops without one: engine, array, baseline)")
        try:
            check_board_params(config=config, pll_mhz=None)
        except (TypeError, ValueError) as exc:
            raise BuildError(f"the board top (fpga.top.BoardTop) cannot take "
                             f"{config.rows}x{config.cols}: {exc}") from None
    if not (unfit_ok or force):
        check_fits_ecp5(config, top, platform, use_dsp=use_dsp)
    capacity = ecp5_capacity(platform)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tools = {name: find_tool(name) for name in ("yosys", "nextpnr-ecp5", "ecppack")}
    variant = "" if use_dsp else " (-nodsp)"
    stage(f"elaborate {top} {shape_name(config, top)} for {board} {platform.device}", t0)
    if top == "fpga":
        from fpga.top import BoardTop
        design = BoardTop(config=config, pll_mhz=None)
        freq_mhz = design.clock_hz(platform) / 1e6
        harness = {"note": "none (board top)"}
    else:
        design = BoardHarness(make_dut(top, config))
        harness = harness_overhead(design.dut)
    plan = platform.build(design, name="top", build_dir=str(out), do_build=False,
                          synth_opts="" if use_dsp else "-nodsp",
                          script_after_read=ECP5_RTL_SCRIPT,
                          script_after_synth=CHECK_NETLIST_SCRIPT
                          + "; tee -q -o stat.json stat -json")
    plan.extract(str(out))
    lpf = out / "top.lpf"
    lpf.write_text("".join(line for line in lpf.read_text().splitlines(keepends=True)
                           if not line.lstrip().startswith("FREQUENCY")))
    stage(f"synthesize (yosys synth_ecp5{variant})", t0)
    run_tool([tools["yosys"], "-q", "-l", "top.rpt", "top.ys"], out, "yosys.log")
    cells = parse_yosys_stat((out / "stat.json").read_text())
    summary = cell_summary(cells, ECP5_CELLS)
    rtl_cells = parse_yosys_stat((out / "stat_rtl.json").read_text())
    muls = sum(v for k, v in rtl_cells.items() if k in MUL_CELLS)
    dsp = summary["MULT18X18D"] + summary["ALU54B"]
    if not allow_mul:
        check_no_multipliers(muls, dsp, "MULT18X18D/ALU54B")
    macs = design_macs(config, top)
    title = f"{top} {shape_name(config, top)}{variant} on {board} ({platform.device})"
    report = {"title": title, "fits": True, "config": config.to_dict(),
              "checks": {"mult18x18d": summary["MULT18X18D"], "alu54b": summary["ALU54B"],
                         "rtl_mul_cells": muls},
              "harness_overhead": harness, "raw_cells": cells}
    over = check_synthesis_fits(summary, platform)
    if over:
        message = f"design does not fit the {platform.device}: " + ", ".join(over)
        if not unfit_ok:
            raise BuildError(message + " (synthesized cells; place and route not run)")
        stage(message + ": synthesis only", t0)
        return {**report, "title": title + " (synthesis only, does not fit)", "fits": False,
                "device": _device_rows(summary, {}, capacity),
                "timing": {"fmax_mhz": None},
                "throughput": {"macs_per_cycle": macs, "gops_at_fmax": None,
                               "copies_per_device": 0, "macs_per_device": 0}}
    device_args = nextpnr_device_args(plan, "ecp5")

    seed, fmax, pnr, tried = place_and_route_seeds(
        tools["nextpnr-ecp5"], [*device_args, "--lpf", "top.lpf"], "--textcfg", "config",
        freq_mhz, freq_mhz, seeds, out, t0, f"nextpnr-ecp5 {platform.device}",
        jobs=default_jobs() if jobs is None else jobs)
    keep_seed(out, seed, len(tried), placed="config")
    stage("pack (ecppack)", t0)
    run_tool([tools["ecppack"], "--input", "top.config", "--bit", "top.bit"], out, "ecppack.log")
    device_rows = _device_rows(summary, pnr["utilization"], capacity)
    used = {k: device_rows[k]["used"] for k in capacity}
    copies = arrays_per_device(used, capacity)
    return {
        **report,
        "device": device_rows,
        "timing": {"fmax_mhz": fmax, "target_mhz": freq_mhz, "clocks": pnr["fmax_mhz"],
                   "meets_target": fmax >= freq_mhz, "seed": seed, "seeds_tried": tried,
                   **({"clock_mhz": freq_mhz, "meets_clock": fmax >= freq_mhz}
                      if top == "fpga" else {})},
        "throughput": {"macs_per_cycle": macs, "gops_at_fmax": 2 * macs * fmax / 1000,
                       **({"gops_at_clock": 2 * macs * freq_mhz / 1000} if top == "fpga"
                          else {}),
                       "bits_per_trit": config.bits_per_trit,
                       "weight_bandwidth_mbyte_s": config.bytes_per_beat * fmax,
                       **({"copies_per_device": copies,
                           "macs_per_device": copies * macs if copies else None}
                          if top != "fpga" else {})},
        "assumptions": [
            "GOPS counts 2 ops per MAC per cycle at achieved Fmax",
            f"nextpnr-ecp5 --seed {seed}, --freq {freq_mhz} (seeds tried, Fmax MHz: "
            + ", ".join(f"{k[5:]}: {v}" for k, v in tried.items()) + ")",
            "harness overhead (serial-in shift register, XOR-reduced outputs) included"
            if top != "fpga" else f"board top: clocked by the board's {freq_mhz:g} MHz "
            "oscillator (no PLL), generic memories",
            *([f"copies_per_device: the smallest available // used over "
               f"{', '.join(capacity)} (nextpnr's utilisation; the harness in every copy, no "
               "routing limit assumed)"] if top != "fpga" else [])],
    }
