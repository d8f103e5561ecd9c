"""Reports: parse Yosys ``stat -json`` and nextpnr ``--report`` output; write the build's
``report.json`` / ``report.md`` and the summary it prints."""

import json
from pathlib import Path

__all__ = ["ICE40_CELLS", "UP5K", "ECP5_CELLS", "parse_yosys_stat", "parse_nextpnr_report",
           "cell_summary", "write_report", "summary_table"]

#: Report row -> iCE40 cell types counted in it.
ICE40_CELLS = {
    "LUT4": ("SB_LUT4",),
    "SB_CARRY": ("SB_CARRY",),
    "FF": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFSS", "SB_DFFRSS",
           "SB_DFFESR", "SB_DFFER", "SB_DFFES", "SB_DFFESS", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR",
           "SB_DFFNR", "SB_DFFNS", "SB_DFFNSS", "SB_DFFNRSS", "SB_DFFNESR", "SB_DFFNER",
           "SB_DFFNES", "SB_DFFNESS", "SB_DFFER", "SB_DFFESS"),
    "EBR": ("SB_RAM40_4K",),
    "SPRAM": ("SB_SPRAM256KA",),
    "SB_MAC16": ("SB_MAC16",),
}
#: iCE40 UP5K capacity per report row (Lattice iCE40 UltraPlus family data sheet).
UP5K = {"LUT4": 5280, "SB_CARRY": 5280, "FF": 5280, "EBR": 30, "SPRAM": 4, "SB_MAC16": 8}
#: Report row -> ECP5 cell types of a ``synth_ecp5`` netlist counted in it (CCU2C: a two-bit
#: carry-chain cell, two LUT4 with carry logic; TRELLIS_DPR16X4: 16 x 4 distributed RAM).
ECP5_CELLS = {
    "LUT4": ("LUT4",),
    "CCU2C": ("CCU2C",),
    "FF": ("TRELLIS_FF",),
    "DPR16X4": ("TRELLIS_DPR16X4",),
    "DP16KD": ("DP16KD",),
    "MULT18X18D": ("MULT18X18D",),
    "ALU54B": ("ALU54B",),
}


def parse_yosys_stat(text, top=None):
    """Return ``{cell_type: count}`` of the top module (or design total) from ``stat -json``.

    Parameters
    ----------
    text : str
        The JSON Yosys writes with ``tee -o FILE stat -json``.
    top : str, optional
        Module to read; default the design total (``"design"`` key, flattened hierarchy).
    """
    data = json.loads(text)
    if top is None and "design" in data:
        node = data["design"]
    else:
        modules = data["modules"]
        key = top if top in modules else "\\" + str(top)
        node = modules[key]
    cells = node.get("num_cells_by_type", {})
    return {str(k).lstrip("\\"): int(v) for k, v in cells.items()}


def cell_summary(cells, rows=ICE40_CELLS):
    """Group raw cell counts into report rows (:data:`ICE40_CELLS`, :data:`ECP5_CELLS`)."""
    return {row: sum(cells.get(t, 0) for t in set(types)) for row, types in rows.items()}


def parse_nextpnr_report(text):
    """Return ``{"fmax_mhz": {clock: achieved}, "target_mhz": {...}, "utilization": {...}}``.

    Parameters
    ----------
    text : str
        The JSON nextpnr writes with ``--report FILE``.
    """
    data = json.loads(text)
    fmax = {clk: float(v["achieved"]) for clk, v in data.get("fmax", {}).items()}
    target = {clk: float(v["constraint"]) for clk, v in data.get("fmax", {}).items()}
    util = {bel: {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in data.get("utilization", {}).items()}
    return {"fmax_mhz": fmax, "target_mhz": target, "utilization": util}


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(body):
    """Markdown lines of one report section.

    Scalar entries give a two-column ``item | value`` table; entries that are dicts of scalars
    give one table with a column per key (union over the entries); lists become bullets.
    """
    scalars = {k: v for k, v in body.items() if not isinstance(v, (dict, list))}
    nested = {k: v for k, v in body.items() if isinstance(v, dict)}
    lists = {k: v for k, v in body.items() if isinstance(v, list)}
    lines = []
    if scalars:
        lines += ["| item | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in scalars.items()]
        lines.append("")
    if nested:
        cols = []
        for row in nested.values():
            cols += [c for c in row if c not in cols]
        lines += ["| item | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for key, row in nested.items():
            cells = []
            for c in cols:
                v = row.get(c, "")
                cells.append(", ".join(f"{a}={_fmt(b)}" for a, b in v.items())
                             if isinstance(v, dict) else _fmt(v))
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
    for key, items in lists.items():
        lines += [f"{key}:", ""] + [f"- {_fmt(v)}" for v in items] + [""]
    return lines


def write_report(folder, report):
    """Write ``report.json`` and ``report.md`` (one table per section, see :func:`_table`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    lines = [f"# Build report: {report.get('title', '')}", ""]
    for section, body in report.items():
        if not isinstance(body, dict):
            continue
        lines += [f"## {section}", ""] + _table(body)
    notes = report.get("assumptions", [])
    if isinstance(notes, list) and notes:
        lines += ["## assumptions", ""] + [f"- {n}" for n in notes] + [""]
    (folder / "report.md").write_text("\n".join(lines))


def summary_table(report):
    """The short summary printed at the end of a build (ternary top and comparison)."""
    lines = []
    d, t = report.get("device"), report.get("timing", {})
    g = report.get("generic", {})
    if d:
        def used(*keys):        # the first of ``keys`` the device has (iCE40 or ECP5 rows)
            k = next((k for k in keys if k in d), None)
            return "-" if k is None else d[k]["used"] if isinstance(d[k], dict) else d[k]
        fmax = t.get("fmax_mhz")
        gops = report["throughput"].get("gops_at_fmax")
        lines.append(f"{'MACs/cycle':>10} {'LUT4':>6} {'FF':>6} {'EBR':>4} {'SPRAM':>5} "
                     f"{'DSP':>4} {'Fmax MHz':>9} {'GOPS':>6} {'NAND2-eq':>9} {'transistors':>11}")
        lines.append(f"{report['throughput']['macs_per_cycle']:>10} {used('LUT4')!s:>6} "
                     f"{used('FF')!s:>6} {used('EBR', 'DP16KD')!s:>4} {used('SPRAM')!s:>5} "
                     f"{used('SB_MAC16', 'MULT18X18D')!s:>4} "
                     f"{fmax if fmax is None else round(fmax, 1)!s:>9} "
                     f"{gops if gops is None else round(gops, 2)!s:>6} "
                     f"{g.get('nand2_equivalent', '-')!s:>9} {g.get('transistors', '-')!s:>11}")
    elif g:
        lines.append(f"{report['throughput']['macs_per_cycle']} MACs/cycle, {g['gates']} gates, "
                     f"{g['flip_flops']} FF, {g['nand2_equivalent']} NAND2-eq, "
                     f"{g['transistors']} transistors, {g['memory_bits']} memory bits")
    comp = report.get("comparison")
    if comp:
        keys = [k for k in ("LUT4", "CCU2C", "FF", "SB_MAC16", "MULT18X18D", "fmax_mhz", "gops",
                            "macs_per_device", "nand2_eq",
                            "transistors", "pj_per_mac_horowitz45", "pj_per_mac_bitnet7",
                            "pj_per_mac_gate_model_45nm") if k in comp["ternary"]]
        lines.append("array comparison " + " | ".join(f"{k}" for k in keys))
        for name in [n for n in ("ternary", "int8", "int8_lut", "ratio_int8_over_ternary",
                                  "ratio_int8_lut_over_ternary") if n in comp]:
            vals = [comp[name].get(k) for k in keys]
            lines.append(f"{name.removeprefix('ratio_')[:18]:>18}: " + " | ".join(
                "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
                for v in vals))
    return "\n".join(lines)
