"""``python -m hw.build``: synthesize, place, route and pack the accelerator; write a report.

Thin CLI over :mod:`hw.flow`-style functions in this module; see ``docs/build.md``.
"""

import argparse
import importlib
import subprocess
import sys
import time
from pathlib import Path

from amaranth.hdl import Elaboratable

from model.accel import AccelConfig

from .report import UP5K, cell_summary, parse_nextpnr_report, parse_yosys_stat, write_report
from .toolchain import ToolchainError, find_tool

__all__ = ["PRESETS", "BuildError", "load_board", "build_ice40", "main"]

#: Named configurations. ``up5k`` is the default build (see docs/build.md for how it was chosen).
PRESETS = {
    "up5k": AccelConfig(rows=4, cols=16, act_bits=8, packing="tq1", max_k=1024, max_m=4096,
                        adder_stages=1),
    "tiny": AccelConfig(rows=2, cols=4, act_bits=8, packing="tq1", max_k=64, max_m=64,
                        adder_stages=1),
}
TARGETS = ("ice40", "generic")


class BuildError(RuntimeError):
    """A build step failed or the design does not meet a requirement (one-line message)."""


def _stage(name, t0):
    print(f"[{time.monotonic() - t0:7.1f} s] {name}", flush=True)


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


def _request_pin(m, platform, names, direction):
    """Return the buffered 1-bit input (``"i"``) or output (``"o"``) of the first resource found."""
    from amaranth.build import ResourceError
    from amaranth.lib import io
    for name in names:
        try:
            res = platform.request(name, 0, dir="-")
        except ResourceError:
            continue
        port = (res.rx if direction == "i" else res.tx) if name == "uart" else res
        buf = io.Buffer(direction, port)
        m.submodules[f"{name}_{direction}_buffer"] = buf
        return buf.i if direction == "i" else buf.o
    raise BuildError(f"board has none of the resources {names} for the harness pins")


class _BoardHarness(Elaboratable):
    """Elaboratable: the harness around a component, pins on the platform's button/LED."""

    def __init__(self, dut):
        self.dut = dut

    def elaborate(self, platform):
        from amaranth.hdl import Module, Signal

        from .harness import Harness
        m = Module()
        din, dout = Signal(), Signal()
        m.submodules.harness = Harness(self.dut, din=din, dout=dout)
        pin_in = _request_pin(m, platform, ("button", "uart"), "i")
        pin_out = _request_pin(m, platform, ("led", "uart"), "o")
        m.d.comb += [din.eq(pin_in), pin_out.eq(dout)]
        return m


def _run(cmd, cwd, log):
    with open(Path(cwd) / log, "w") as fh:
        proc = subprocess.run(["nice", "-n", "10", *cmd], cwd=cwd, stdout=fh,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        import re
        text = (Path(cwd) / log).read_text()
        over = re.search(r"Failed to expand region .* of (\d+) (\w+)", text)
        if over:
            raise BuildError(f"design does not fit the device: {over.group(1)} {over.group(2)} "
                             f"needed (see {Path(cwd) / log})")
        tail = (Path(cwd) / log).read_text().strip().splitlines()[-3:]
        raise BuildError(f"{Path(cmd[0]).name} failed (see {Path(cwd) / log}): "
                         + " | ".join(tail))


def make_dut(kind, config):
    """Return the component to synthesize: ``engine`` or ``baseline``-array top."""
    if kind == "engine":
        from .engine import BitLinearEngine
        return BitLinearEngine(config=config)
    if kind == "array":
        from .array import MacArray
        return MacArray.from_config(config)
    if kind == "baseline":
        from .baseline import Int8MacArray
        return Int8MacArray.from_config(config)
    raise BuildError(f"unknown top {kind!r}")


def build_ice40(config, *, top="engine", board="icebreaker", out, freq_mhz=48.0,
                allow_mul=False, use_dsp=True, unfit_ok=False, t0=None):
    """Synthesize / place / route / pack ``top`` for ``board``; return the report dict."""
    t0 = time.monotonic() if t0 is None else t0
    platform = load_board(board)
    harness = None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tools = {name: find_tool(name) for name in ("yosys", "nextpnr-ice40", "icepack")}
    _stage(f"elaborate {top} {config.rows}x{config.cols} for {board}", t0)
    if top == "fpga":
        from fpga.top import BoardTop
        design = BoardTop(config=config)
    else:
        design = _BoardHarness(make_dut(top, config))
        from amaranth.hdl import Value

        from .harness import port_bits
        ins, outs = port_bits(design.dut)
        in_bits = sum(len(Value.cast(v)) for v in ins)
        out_bits = sum(len(Value.cast(v)) for v in outs)
        harness = {"input_bits": in_bits, "output_bits": out_bits,
                   "ff": in_bits + out_bits + 1, "lut4_approx": -(-(out_bits - 1) // 3)}
    plan = platform.build(design, name="top", build_dir=str(out), do_build=False,
                          synth_opts="-dsp" if use_dsp else "",
                          script_after_read="hierarchy -top top; proc; "
                                            "tee -q -o stat_rtl.json stat -json",
                          script_after_synth="tee -q -o stat.json stat -json")
    plan.extract(str(out))
    _stage("synthesize (yosys synth_ice40)", t0)
    _run([tools["yosys"], "-q", "-l", "top.rpt", "top.ys"], out, "yosys.log")
    cells = parse_yosys_stat((out / "stat.json").read_text())
    summary = cell_summary(cells)
    rtl_cells = parse_yosys_stat((out / "stat_rtl.json").read_text())
    muls = sum(v for k, v in rtl_cells.items() if k in ("$mul", "$macc", "$macc_v2"))
    if not allow_mul and muls:
        raise BuildError(f"multiplier check failed: {muls} $mul/$macc cells in the ternary RTL")
    if not allow_mul and summary["SB_MAC16"]:
        raise BuildError(f"multiplier check failed: {summary['SB_MAC16']} SB_MAC16 in the "
                         "ternary netlist")
    macs = config.rows * config.cols
    for key in ("LUT4", "FF", "EBR", "SPRAM", "SB_MAC16"):
        if summary[key] > UP5K[key] and platform.device == "iCE40UP5K":
            if not unfit_ok:
                raise BuildError(f"design does not fit {platform.device}: {summary[key]} {key}"
                                 f" > {UP5K[key]}")
            _stage(f"does not fit ({summary[key]} {key} > {UP5K[key]}): synthesis only", t0)
            return {"title": f"{top} {config.rows}x{config.cols} (synthesis only, does not fit)",
                    "fits": False,
                    "device": {k: {"used": v, "available": UP5K[k],
                                   "percent": round(100 * v / UP5K[k], 1)}
                               for k, v in summary.items()},
                    "timing": {"fmax_mhz": None},
                    "throughput": {"macs_per_cycle": macs, "gops_at_fmax": None}}
    _stage(f"place and route (nextpnr-ice40, target {freq_mhz} MHz)", t0)
    dev = platform._nextpnr_device_options[platform.device]
    pkg = platform.package.lower() + platform._nextpnr_package_options.get(platform.device, "")
    _run([tools["nextpnr-ice40"], dev, "--package", pkg, "--json", "top.json", "--pcf",
          "top.pcf", "--asc", "top.asc", "--freq", str(freq_mhz), "--report", "pnr.json",
          "--timing-allow-fail", "--seed", "1"], out, "nextpnr.log")
    pnr = parse_nextpnr_report((out / "pnr.json").read_text())
    _stage("pack (icepack)", t0)
    _run([tools["icepack"], "top.asc", "top.bin"], out, "icepack.log")
    fmax = min(pnr["fmax_mhz"].values()) if pnr["fmax_mhz"] else float("nan")
    device = {k: {"used": v, "available": UP5K[k], "percent": round(100 * v / UP5K[k], 1)}
              for k, v in summary.items()} if platform.device == "iCE40UP5K" else summary
    return {
        "title": f"{top} {config.rows}x{config.cols} on {board} ({platform.device})",
        "fits": True,
        "config": config.to_dict(),
        "device": device,
        "timing": {"fmax_mhz": fmax, "target_mhz": freq_mhz, "clocks": pnr["fmax_mhz"],
                   "meets_48mhz": fmax >= 48.0},
        "throughput": {"macs_per_cycle": macs, "gops_at_fmax": 2 * macs * fmax / 1000,
                       "bits_per_trit": config.bits_per_trit,
                       "weight_bandwidth_mbyte_s": config.bytes_per_beat * fmax},
        "checks": {"sb_mac16": summary["SB_MAC16"], "rtl_mul_cells": muls},
        "harness_overhead": harness or {"note": "none (board top)"},
        "raw_cells": cells,
        "assumptions": ["GOPS counts 2 ops (add + select) per MAC per cycle at achieved Fmax",
                        f"nextpnr --seed 1, --freq {freq_mhz}",
                        "harness overhead (serial-in shift register, XOR-reduced outputs) "
                        "included unless top=fpga"],
    }


def compare(config, *, board, out, freq_mhz, t0):
    """Build the ternary array and the int8 baseline array of the same shape; return the table.

    The baseline maps its multipliers into SB_MAC16 when they fit (``rows * cols <= 8``), else
    into LUTs (yosys without ``-dsp``), as stated in the returned ``assumptions``.
    """
    from .energy import ENERGY_TABLES, energy_per_mac
    macs = config.rows * config.cols
    use_dsp = macs <= UP5K["SB_MAC16"]
    tern = build_ice40(config, top="array", board=board, out=Path(out) / "array",
                       freq_mhz=freq_mhz, t0=t0)
    base = build_ice40(config, top="baseline", board=board, out=Path(out) / "baseline",
                       freq_mhz=freq_mhz, allow_mul=True, use_dsp=use_dsp, unfit_ok=True, t0=t0)
    rows = {}
    for name, rep in (("ternary", tern), ("int8", base)):
        rows[name] = {
            "LUT4": rep["device"]["LUT4"]["used"], "FF": rep["device"]["FF"]["used"],
            "SB_MAC16": rep["device"]["SB_MAC16"]["used"],
            "fmax_mhz": rep["timing"]["fmax_mhz"], "gops": rep["throughput"]["gops_at_fmax"],
        }
        for table in ENERGY_TABLES:
            rows[name][f"pj_per_mac_{table}"] = energy_per_mac(
                "ternary" if name == "ternary" else "int8", config.cols, table)
    rows["int8"]["fits_device"] = base["fits"]
    rows["ratio_int8_over_ternary"] = {
        k: (rows["int8"][k] / rows["ternary"][k]
            if rows["ternary"][k] and rows["int8"][k] is not None else None)
        for k in rows["ternary"]}
    rows["assumptions"] = [
        f"both arrays {config.rows}x{config.cols} in the same serial-in/XOR-out harness",
        "int8 multipliers in SB_MAC16" if use_dsp else
        f"int8 multipliers in LUTs ({macs} > {UP5K['SB_MAC16']} SB_MAC16)",
        "pJ/MAC: operation counts (hw.energy.mac_ops) x per-op energies; Horowitz 32-bit add/mult "
        "verified, 8-bit add/mult and all BitNet 7 nm values NOT verified",
    ]
    return rows


def plot(out, table):
    """Write ``comparison.png``: LUT4/FF/DSP and pJ per MAC, ternary vs int8."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    keys = ["LUT4", "FF", "SB_MAC16"]
    for i, name in enumerate(("ternary", "int8")):
        axes[0].bar([x + 0.4 * i for x in range(len(keys))], [table[name][k] for k in keys],
                    width=0.4, label=name)
        ekeys = [k for k in table[name] if k.startswith("pj_per_mac")]
        axes[1].bar([x + 0.4 * i for x in range(len(ekeys))], [table[name][k] for k in ekeys],
                    width=0.4, label=name)
    axes[0].set_xticks([x + 0.2 for x in range(len(keys))], keys)
    axes[0].set_title("area (cells)")
    axes[1].set_xticks([x + 0.2 for x in range(len(ekeys))],
                       [k.removeprefix("pj_per_mac_") for k in ekeys])
    axes[1].set_title("energy per MAC (pJ, op-count model)")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(Path(out) / "comparison.png", dpi=100)
    plt.close(fig)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.splitlines()[0])
    p.add_argument("--target", default="ice40")
    p.add_argument("--board", default="icebreaker")
    p.add_argument("--top", default="engine", choices=("engine", "array", "baseline", "fpga"))
    p.add_argument("--preset", default="up5k", choices=sorted(PRESETS))
    p.add_argument("--config", type=Path, help="AccelConfig JSON file (overrides --preset)")
    p.add_argument("--rows", type=int)
    p.add_argument("--cols", type=int)
    p.add_argument("--act-bits", type=int)
    p.add_argument("--packing")
    p.add_argument("--freq", type=float, default=48.0, help="nextpnr target MHz")
    p.add_argument("--out", type=Path, help="report folder (default build/<target>)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the ternary-array vs int8-baseline comparison builds")
    return p.parse_args(argv)


def main(argv=None):
    """Entry point; returns the exit code (0 ok, 1 build error, 2 bad arguments)."""
    args = parse_args(argv)
    t0 = time.monotonic()
    try:
        if args.target not in TARGETS:
            raise BuildError(f"unknown target {args.target!r}; known: {', '.join(TARGETS)}")
        config = (AccelConfig.from_json(args.config.read_text()) if args.config
                  else PRESETS[args.preset])
        changes = {k: v for k, v in (("rows", args.rows), ("cols", args.cols),
                                     ("act_bits", args.act_bits), ("packing", args.packing))
                   if v is not None}
        config = config.replace(**changes) if changes else config
        out = args.out or Path("build") / args.target
        if args.target != "ice40":
            raise BuildError(f"target {args.target!r} is not implemented yet")
        report = build_ice40(config, top=args.top, board=args.board, out=out,
                             freq_mhz=args.freq, allow_mul=args.top == "baseline", t0=t0)
        if not args.no_compare and args.top != "baseline":
            report["comparison"] = compare(config, board=args.board, out=out,
                                           freq_mhz=args.freq, t0=t0)
            plot(out, report["comparison"])
        write_report(out, report)
    except (BuildError, ToolchainError, ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _stage("done", t0)
    d, t = report["device"], report["timing"]
    def used(k):
        return d[k]["used"] if isinstance(d[k], dict) else d[k]
    print(f"{'MACs/cycle':>12} {'LUT4':>6} {'FF':>6} {'EBR':>4} {'DSP':>4} {'Fmax MHz':>9} "
          f"{'GOPS':>7}")
    print(f"{report['throughput']['macs_per_cycle']:>12} {used('LUT4'):>6} {used('FF'):>6} "
          f"{used('EBR'):>4} {used('SB_MAC16'):>4} {t['fmax_mhz']:>9.1f} "
          f"{report['throughput']['gops_at_fmax']:>7.2f}")
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
