"""``python -m hw.build.sweep``: build a small grid of array shapes; table + Pareto plot.

For each ``(rows, cols)`` the chosen top (``engine`` default, or ``array``) is built for the
iCE40 with :func:`hw.build.ice40.build_ice40`; the table lists MACs/cycle, LUT4, FF, Fmax, GOPS
and the op-count pJ/MAC; ``sweep.png`` plots GOPS against LUT4 (Pareto front marked).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from model.accel import PRESETS

from .checks import BuildError
from .energy import energy_per_mac
from .ice40 import build_ice40

__all__ = ["DEFAULT_GRID", "sweep", "pareto", "main"]

DEFAULT_GRID = ((2, 8), (4, 8), (4, 16), (8, 16), (4, 32), (8, 32))


def pareto(points):
    """Indices of points not dominated in (lower LUT4, higher GOPS)."""
    keep = []
    for i, (lut_i, gops_i) in enumerate(points):
        if not any((lut_j <= lut_i and gops_j >= gops_i) and (lut_j, gops_j) != (lut_i, gops_i)
                   for lut_j, gops_j in points):
            keep.append(i)
    return keep


def sweep(grid, *, top="engine", board="icebreaker", out, freq_mhz=48.0):
    """Build every shape of ``grid``; return a list of row dicts (unfit shapes included)."""
    base = PRESETS["up5k"]
    rows, t0 = [], time.monotonic()
    for r, c in grid:
        # every adder level registered, as in the preset, up to this shape's tree depth
        shape = base.replace(rows=r, cols=c, adder_stages=0)
        config = shape.replace(adder_stages=min(base.adder_stages, shape.tree_depth))
        try:
            # one seed per shape: the table compares shapes under the same placement effort
            rep = build_ice40(config, top=top, board=board, out=Path(out) / f"{r}x{c}",
                              freq_mhz=freq_mhz, t0=t0, seeds=1)
        except BuildError as exc:
            rows.append({"rows": r, "cols": c, "macs": r * c, "error": str(exc)})
            continue
        rows.append({"rows": r, "cols": c, "macs": r * c,
                     "LUT4": rep["device"]["LUT4"]["used"], "FF": rep["device"]["FF"]["used"],
                     "EBR": rep["device"]["EBR"]["used"], "fmax_mhz": rep["timing"]["fmax_mhz"],
                     "gops": rep["throughput"]["gops_at_fmax"],
                     "pj_per_mac": energy_per_mac("ternary", c)})
    return rows


def main(argv=None):
    """Entry point: returns 0 when at least one shape built."""
    p = argparse.ArgumentParser(prog="python -m hw.build.sweep")
    p.add_argument("--top", default="engine", choices=("engine", "array"))
    p.add_argument("--board", default="icebreaker")
    p.add_argument("--grid", default=",".join(f"{r}x{c}" for r, c in DEFAULT_GRID),
                   help="comma-separated RxC shapes")
    p.add_argument("--out", type=Path, default=Path("build/sweep"))
    args = p.parse_args(argv)
    try:
        grid = [tuple(int(v) for v in s.split("x")) for s in args.grid.split(",")]
    except ValueError:
        print(f"error: bad --grid {args.grid!r} (want e.g. 4x8,4x16)", file=sys.stderr)
        return 1
    rows = sweep(grid, top=args.top, board=args.board, out=args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| R x C | MACs/cyc | LUT4 | FF | EBR | Fmax MHz | GOPS | pJ/MAC (45 nm) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['rows']}x{row['cols']} | {row['macs']} | {row['error']} |")
        else:
            lines.append(f"| {row['rows']}x{row['cols']} | {row['macs']} | {row['LUT4']} | "
                         f"{row['FF']} | {row['EBR']} | {row['fmax_mhz']:.1f} | "
                         f"{row['gops']:.2f} | {row['pj_per_mac']:.4f} |")
    (args.out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = [row for row in rows if "error" not in row]
    if ok:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        front = pareto([(row["LUT4"], row["gops"]) for row in ok])
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.scatter([row["LUT4"] for row in ok], [row["gops"] for row in ok])
        for i, row in enumerate(ok):
            ax.annotate(f"{row['rows']}x{row['cols']}{' *' if i in front else ''}",
                        (row["LUT4"], row["gops"]))
        ax.set_xlabel("LUT4")
        ax.set_ylabel("GOPS at achieved Fmax")
        ax.set_title("ternary engine shapes (* Pareto)")
        fig.tight_layout()
        fig.savefig(args.out / "sweep.png", dpi=100)
        plt.close(fig)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
