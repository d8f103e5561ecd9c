"""``python -m hw.build.sweep``: build a grid of array shapes; table + Pareto plot.

For each ``(rows, cols)`` of the grid and each activation width of ``--act-bits`` the chosen top
is built: on the iCE40 (``--target ice40``, default top ``engine``) with
:func:`hw.build.ice40.build_ice40`, on the ECP5 (``--target ecp5``, default top ``array``,
``--board`` / ``--device`` as for ``python -m hw.build``) with :func:`hw.build.ecp5.build_ecp5`.
The table lists MACs/cycle, the device's cells, Fmax, GOPS and the op-count pJ/MAC;
``sweep.png`` plots GOPS and pJ/MAC against the LUT4 (iCE40) or the placed LUT4 sites (ECP5,
``TRELLIS_COMB``), the Pareto front (fewer LUTs, more GOPS) marked. Multi-token weight reuse
(``AccelConfig.tokens_per_beat``, ``T``) is not swept yet: the sweep builds the bare array,
which is one ``R x C`` array whatever ``T``; an engine with ``T`` arrays builds with
``--top engine --config '{"tokens_per_beat": T}'``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from model.accel import PRESETS

from .checks import BuildError
from .ecp5 import DEFAULT_BOARD, DEFAULT_DEVICE, ECP5_DEVICES, build_ecp5
from .energy import energy_per_mac
from .ice40 import build_ice40

__all__ = ["DEFAULT_GRID", "DEFAULT_ECP5_GRID", "ECP5_ADDER_STAGES", "sweep", "pareto",
           "sweep_table", "plot_sweep", "main"]

DEFAULT_GRID = ((2, 8), (4, 8), (4, 16), (8, 16), (4, 32), (8, 32))
#: The ECP5-85F grid: from the 16 x 32 and 24 x 32 arrays measured first up to 2048 MACs.
DEFAULT_ECP5_GRID = ((8, 32), (16, 32), (16, 64), (32, 64))
#: Adder tree registers of the ECP5 sweep (as the 85F arrays of docs/build.md were measured);
#: the iCE40 sweep takes the ``up5k`` preset's 4. Either at most the shape's tree depth.
ECP5_ADDER_STAGES = 3


def pareto(points):
    """Indices of points not dominated in (lower LUT4, higher GOPS)."""
    keep = []
    for i, (lut_i, gops_i) in enumerate(points):
        if not any((lut_j <= lut_i and gops_j >= gops_i) and (lut_j, gops_j) != (lut_i, gops_i)
                   for lut_j, gops_j in points):
            keep.append(i)
    return keep


def _ice40_row(rep):
    dev = rep["device"]
    return {"LUT4": dev["LUT4"]["used"], "FF": dev["FF"]["used"], "EBR": dev["EBR"]["used"],
            "luts": dev["LUT4"]["used"]}


def _ecp5_row(rep):
    dev = rep["device"]
    return {"LUT4": dev["LUT4"]["used"], "CCU2C": dev["CCU2C"]["used"], "FF": dev["FF"]["used"],
            "DP16KD": dev["DP16KD"]["used"], "sites": dev["TRELLIS_COMB"]["used"],
            "luts": dev["TRELLIS_COMB"]["used"]}


def sweep(grid, *, target="ice40", top=None, board=None, device=DEFAULT_DEVICE, out,
          freq_mhz=None, act_bits=(8,)):
    """Build every shape of ``grid`` at every width of ``act_bits``; return a list of row dicts
    (shapes that do not build included, with their ``error``). ``luts`` is what the Pareto
    front and the plot use: LUT4 on the iCE40, placed LUT4 sites on the ECP5."""
    base = PRESETS["up5k"]
    top = top or ("engine" if target == "ice40" else "array")
    rows, t0 = [], time.monotonic()
    for bits in act_bits:
        for r, c in grid:
            shape = base.replace(rows=r, cols=c, act_bits=bits, adder_stages=0)
            stages = base.adder_stages if target == "ice40" else ECP5_ADDER_STAGES
            # every adder level registered up to this shape's tree depth, at most `stages`
            config = shape.replace(adder_stages=min(stages, shape.tree_depth))
            sub = Path(out) / f"{r}x{c}a{bits}"
            head = {"rows": r, "cols": c, "act_bits": bits, "adder_stages": config.adder_stages,
                    "macs": r * c}
            try:
                # one seed per shape: the table compares shapes under the same placement effort
                if target == "ice40":
                    rep = build_ice40(config, top=top, board=board or "icebreaker", out=sub,
                                      freq_mhz=freq_mhz or 48.0, t0=t0, seeds=1)
                    cells = _ice40_row(rep)
                else:
                    rep = build_ecp5(config, top=top, board=board or DEFAULT_BOARD,
                                     device=device, out=sub, t0=t0, seeds=1,
                                     **({"freq_mhz": freq_mhz} if freq_mhz else {}))
                    cells = _ecp5_row(rep)
            except BuildError as exc:
                rows.append({**head, "error": str(exc)})
                continue
            rows.append({**head, **cells, "fmax_mhz": rep["timing"]["fmax_mhz"],
                         "gops": rep["throughput"]["gops_at_fmax"],
                         "pj_per_mac": energy_per_mac("ternary", c)})
    return rows


#: Table columns per target: (header, row key, format).
_COLUMNS = {
    "ice40": (("LUT4", "LUT4", "d"), ("FF", "FF", "d"), ("EBR", "EBR", "d")),
    "ecp5": (("LUT4", "LUT4", "d"), ("CCU2C", "CCU2C", "d"), ("FF", "FF", "d"),
             ("LUT4 sites", "sites", "d"), ("sites/MAC", "sites_per_mac", ".1f"),
             ("DP16KD", "DP16KD", "d")),
}


def sweep_table(rows, target="ice40"):
    """The Markdown table of :func:`sweep`'s rows (the Pareto shapes in bold)."""
    cols = _COLUMNS[target]
    lines = ["| R x C | act bits | adder stages | MACs/cyc | "
             + " | ".join(h for h, _k, _f in cols) + " | Fmax MHz | GOPS | pJ/MAC (45 nm) |",
             "|---" * (len(cols) + 7) + "|"]
    ok = [row for row in rows if "error" not in row]
    front = {id(ok[i]) for i in pareto([(row["luts"], row["gops"]) for row in ok])}
    for row in rows:
        shape = f"{row['rows']}x{row['cols']}"
        head = f"| {shape} | {row['act_bits']} | {row['adder_stages']} | {row['macs']} |"
        if "error" in row:
            lines.append(f"{head} {row['error']} |")
            continue
        vals = {**row, "sites_per_mac": row.get("sites", 0) / row["macs"]}
        cells = " | ".join(format(vals[k], f) for _h, k, f in cols)
        mark = "**" if id(row) in front else ""
        lines.append(f"| {mark}{shape}{mark} | {row['act_bits']} | {row['adder_stages']} | "
                     f"{row['macs']} | {cells} | {row['fmax_mhz']:.1f} | {row['gops']:.2f} | "
                     f"{row['pj_per_mac']:.4f} |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows, path, target="ice40"):
    """``sweep.png``: GOPS and op-count pJ/MAC against the LUTs of every built shape (the
    op-count model counts 8-bit adds whatever the activation width)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [row for row in rows if "error" not in row]
    front = pareto([(row["luts"], row["gops"]) for row in ok])
    xlabel = "LUT4" if target == "ice40" else "LUT4 sites placed (TRELLIS_COMB)"
    fig, (ax, ax_e) = plt.subplots(1, 2, figsize=(9, 3.5))
    for bits in sorted({row["act_bits"] for row in ok}):
        sel = [row for row in ok if row["act_bits"] == bits]
        ax.scatter([row["luts"] for row in sel], [row["gops"] for row in sel],
                   label=f"{bits}-bit activations")
        ax_e.scatter([row["luts"] for row in sel], [row["pj_per_mac"] for row in sel])
    for i, row in enumerate(ok):
        ax.annotate(f"{row['rows']}x{row['cols']}{' *' if i in front else ''}",
                    (row["luts"], row["gops"]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("GOPS at achieved Fmax")
    ax.set_title(f"ternary {target} shapes (* Pareto)")
    ax.legend(fontsize="small")
    ax_e.set_xlabel(xlabel)
    ax_e.set_ylabel("pJ/MAC (Horowitz 45 nm op count)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _grid(text):
    try:
        return [tuple(int(v) for v in s.split("x")) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad grid {text!r} (want e.g. 4x8,4x16)") from None


def _act_bits(text):
    try:
        bits = [int(v) for v in text.split(",")]
    except ValueError:
        bits = []
    if not bits or any(b not in (4, 8) for b in bits):
        raise argparse.ArgumentTypeError(f"bad activation widths {text!r} (4, 8 or 8,4)")
    return bits


def main(argv=None):
    """Entry point: returns 0 when at least one shape built."""
    p = argparse.ArgumentParser(prog="python -m hw.build.sweep")
    p.add_argument("--target", default="ice40", choices=("ice40", "ecp5"))
    p.add_argument("--top", default=None, choices=("engine", "array"),
                   help="default: engine on ice40, array on ecp5")
    p.add_argument("--board", default=None,
                   help=f"default: icebreaker (ice40), {DEFAULT_BOARD} (ecp5)")
    p.add_argument("--device", default=DEFAULT_DEVICE, choices=ECP5_DEVICES,
                   help="ECP5 device size (--target ecp5)")
    p.add_argument("--grid", type=_grid, default=None,
                   help="comma-separated RxC shapes (default: "
                        + ",".join(f"{r}x{c}" for r, c in DEFAULT_GRID) + " on ice40, "
                        + ",".join(f"{r}x{c}" for r, c in DEFAULT_ECP5_GRID) + " on ecp5)")
    p.add_argument("--act-bits", type=_act_bits, default=None,
                   help="comma-separated activation widths (default: 8 on ice40, 8,4 on ecp5)")
    p.add_argument("--out", type=Path, default=None,
                   help="default build/sweep (ice40), build/sweep-ecp5 (ecp5)")
    args = p.parse_args(argv)
    act_bits = args.act_bits or ([8] if args.target == "ice40" else [8, 4])
    grid = args.grid or (DEFAULT_GRID if args.target == "ice40" else DEFAULT_ECP5_GRID)
    out = args.out or Path("build/sweep" if args.target == "ice40" else "build/sweep-ecp5")
    rows = sweep(grid, target=args.target, top=args.top, board=args.board, device=args.device,
                 out=out, act_bits=act_bits)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = sweep_table(rows, args.target)
    (out / "sweep.md").write_text(table)
    print(table, end="")
    if any("error" not in row for row in rows):
        plot_sweep(rows, out / "sweep.png", args.target)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
