"""``python -m hw.build``: synthesize, place, route and pack the accelerator; write a report.

A thin CLI (:func:`main`): parse and check the arguments, then call the build functions of
:mod:`hw.build` (see ``docs/build.md``).
"""

import argparse
import sys
import time
from pathlib import Path

from model import cli
from model.accel import PACKINGS, PRESETS

from .checks import BuildError
from .compare import add_comparison
from .ecp5 import (
    DEFAULT_BOARD,
    DEFAULT_DEVICE,
    DEFAULT_FREQ_MHZ,
    ECP5_DEVICES,
    build_ecp5,
    load_ecp5_board,
)
from .generic import GenericError, add_generic_area, build_generic
from .harness import TOPS
from .ice40 import board_defaults, build_ice40, load_board
from .report import summary_table, write_report
from .seeds import DEFAULT_SEEDS
from .sky130 import build_sky130
from .sky130_cells import Sky130Error
from .toolchain import ToolchainError, stage

__all__ = ["TARGETS", "DEFAULT_TOP", "make_parser", "main"]

TARGETS = ("ice40", "ecp5", "generic", "sky130")
#: Top built by ``python -m hw.build --target ice40`` without ``--top``.
DEFAULT_TOP = "fpga"


def _check_board(parser, args):
    """Fill in and check ``--board`` / ``--device`` for the target: an ECP5 board of
    :data:`hw.build.ecp5.ECP5_BOARDS` with a platform for ``--device`` (``--target ecp5``), else
    an amaranth-boards module with an iCE40 platform; a bad one is a usage error."""
    if args.target == "ecp5":
        args.board = args.board or DEFAULT_BOARD
        args.device = args.device or DEFAULT_DEVICE
        try:
            load_ecp5_board(args.board, args.device)
        except BuildError as exc:
            flag = "--board" if str(exc).startswith("unknown") else "--device"
            parser.error(f"argument {flag}: {exc}")
        return
    if args.device is not None:
        parser.error("argument --device: an ECP5 device size, only with --target ecp5")
    args.board = args.board or "icebreaker"
    try:
        load_board(args.board)
    except BuildError as exc:
        parser.error(f"argument --board: {exc}")


def make_parser():
    """The ``python -m hw.build`` argument parser (every value checked as it is parsed)."""
    p = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.splitlines()[0])
    p.add_argument("--target", default="ice40", choices=TARGETS)
    p.add_argument("--board", default=None,
                   help="ice40: amaranth-boards module with an iCE40 platform (default "
                        f"icebreaker); ecp5: ulx3s, orangecrab, ecpix5 (default {DEFAULT_BOARD})")
    p.add_argument("--device", default=None, choices=ECP5_DEVICES,
                   help=f"ECP5 device size (--target ecp5; default {DEFAULT_DEVICE})")
    p.add_argument("--top", default=None, choices=(*TOPS, "fpga"),
                   help=f"design to build (default {DEFAULT_TOP} for ice40, engine for ecp5 and "
                        "generic; sky130 maps the ternary array, the int8 array and the engine)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS))
    p.add_argument("--config", type=cli.accel_config,
                   help="AccelConfig as JSON text or a .json file (overrides --preset)")
    p.add_argument("--rows", type=cli.positive_int)
    p.add_argument("--cols", type=cli.positive_int)
    p.add_argument("--adder-stages", type=cli.nonnegative_int,
                   help="registered adder-tree levels (at most the tree depth of --cols; "
                        "needed when --cols makes the preset's too deep)")
    p.add_argument("--act-bits", type=int, choices=(4, 8))
    p.add_argument("--packing", choices=PACKINGS)
    p.add_argument("--freq", type=cli.positive_float, default=None,
                   help="nextpnr target MHz (ice40: default 48, top fpga: the board top's "
                        f"clock; ecp5: default {DEFAULT_FREQ_MHZ:g})")
    p.add_argument("--out", type=cli.output_dir, help="report folder (default build/<target>)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the ternary-array vs int8-baseline comparison")
    p.add_argument("--no-activity", action="store_true",
                   help="skip the gate-level activity (switching) energy runs")
    p.add_argument("--seeds", type=cli.positive_int, default=None,
                   help="nextpnr seeds to try (1, 2, ...) until one meets the clock "
                        f"(default {DEFAULT_SEEDS} for ice40, 1 for ecp5)")
    p.add_argument("--jobs", type=cli.positive_int, default=None,
                   help="nextpnr seeds run side by side (default: the machine's cores, at "
                        "most 4)")
    p.add_argument("--force", action="store_true",
                   help="synthesize even if the device's area estimate (UP5K, ECP5) says the "
                        "design does not fit")
    return p


def _configure(parser, args):
    """``(top, config, board_cfg)`` from the parsed arguments; a bad combination of them is
    a usage error (``parser.error``: exit status 2)."""
    if args.target == "sky130" and args.top is not None:
        parser.error("argument --top: --target sky130 always maps the ternary array, the int8 "
                     "array and the engine")
    top = args.top or (DEFAULT_TOP if args.target == "ice40" else "engine")
    if args.target == "generic" and top == "fpga":
        parser.error("argument --top: 'fpga' needs a device (--target ice40); generic tops: "
                     "engine, array, baseline")
    _check_board(parser, args)
    board_cfg = board_defaults() if top == "fpga" else None
    if args.config:
        config = args.config
    elif args.preset:
        config = PRESETS[args.preset]
    elif args.target in ("sky130", "ecp5"):      # the shipped shape: the board's engine
        config = board_defaults()["config"]
    else:
        config = board_cfg["config"] if board_cfg else PRESETS["up5k"]
    changes = {k: v for k, v in (("rows", args.rows), ("cols", args.cols),
                                 ("adder_stages", args.adder_stages),
                                 ("act_bits", args.act_bits), ("packing", args.packing))
               if v is not None}
    try:
        config = config.replace(**changes) if changes else config
    except (TypeError, ValueError) as exc:
        given = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in changes.items())
        parser.error(f"{given}: {exc}")
    return top, config, board_cfg


def main(argv=None):
    """Entry point; returns the exit code (0 ok, 1 build error, 2 bad arguments).

    Bad arguments (a value that does not parse or is out of range, an unknown board, device or
    top, a configuration that is not a valid :class:`AccelConfig`) are usage errors: one
    ``error:`` line naming the argument, status 2. A configuration the target cannot take
    (:func:`hw.build.checks.check_size`, the board top's checks,
    :func:`hw.build.ice40.check_fits_up5k`, :func:`hw.build.ecp5.check_fits_ecp5`) is refused
    with status 1 before anything is elaborated; so is every failure of a build step.
    """
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        top, config, board_cfg = _configure(parser, args)
    except SystemExit as exc:       # argparse: --help (0) or a usage error (2), already printed
        return exc.code
    t0 = time.monotonic()
    freq_mhz = args.freq or (DEFAULT_FREQ_MHZ if args.target == "ecp5" else 48.0)
    try:
        out = args.out or Path("build") / args.target
        if args.target == "generic":
            report = build_generic(config, top=top, out=out, t0=t0)
        elif args.target == "sky130":
            report = build_sky130(config, out=out, activity=not args.no_activity, t0=t0)
        elif args.target == "ecp5":
            report = build_ecp5(config, top=top, board=args.board, device=args.device, out=out,
                                freq_mhz=freq_mhz, allow_mul=top == "baseline", t0=t0,
                                seeds=args.seeds or 1, force=args.force, jobs=args.jobs)
            add_generic_area(report, config, top=top, out=out, t0=t0)
        else:
            pll_mhz = board_cfg["pll_mhz"] if board_cfg else None
            report = build_ice40(config, top=top, board=args.board, out=out,
                                 freq_mhz=args.freq or (float(pll_mhz) if pll_mhz else 48.0),
                                 allow_mul=top == "baseline", t0=t0, pll_mhz=pll_mhz,
                                 seeds=args.seeds or DEFAULT_SEEDS, force=args.force,
                                 jobs=args.jobs)
            if report.get("fits", True):
                add_generic_area(report, config, top=top, out=out, t0=t0)
        if not args.no_compare and top != "baseline" and args.target != "sky130":
            add_comparison(report, config, target=args.target, top=top, board=args.board,
                           device=args.device, out=out, freq_mhz=freq_mhz,
                           activity=not args.no_activity, force=args.force, t0=t0)
        write_report(out, report)
    except (BuildError, GenericError, Sky130Error, ToolchainError, ValueError, TypeError,
            OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stage("done", t0)
    print(summary_table(report))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
