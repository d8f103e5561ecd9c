"""Device-independent area: Yosys generic CMOS gates (``--target generic``, and the ``generic``
section of the iCE40 report).

The design is synthesized by Yosys to its internal two-input CMOS gates
(``synth -flatten -noabc -run begin:fine; opt -fast -full; techmap; dfflegalize -cell $_DFF_P_
01; abc -g cmos2; stat -tech cmos``): NAND2, NOR2, NOT and positive-edge D flip-flops (enables
and synchronous resets become gates). Memories are kept as ``$mem_v2`` cells (not turned into
flip-flops) and reported as bits. The transistor estimate is Yosys's own ``stat -tech cmos``
(its ``kernel/cost.h`` table: :data:`CMOS_TRANSISTORS`); the NAND2-equivalent gate count is
transistors / 4. The gate netlist each synthesis writes (``generic.json``) is what
:mod:`hw.build.activity` runs.
"""

import json
import subprocess
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
from .harness import make_dut
from .toolchain import find_tool, stage

__all__ = ["CMOS_TRANSISTORS", "RTL_PREAMBLE", "GenericError", "rtlil_of", "rtl_mul_cells",
           "parse_generic_stat", "synth_generic", "GENERIC_NOTE", "area_section", "build_generic",
           "add_generic_area"]

#: Transistors per Yosys internal cell in ``stat -tech cmos`` (Yosys ``kernel/cost.h``,
#: ``cmos_transistors_db``), for the cells the generic flow produces.
CMOS_TRANSISTORS = {"$_NOT_": 2, "$_NAND_": 4, "$_NOR_": 4, "$_DFF_P_": 16}

#: The start of every gate-level flow's Yosys script: the design flattened and its RTL cells
#: counted (``stat_rtl.json``, for :func:`rtl_mul_cells`) before anything is mapped.
RTL_PREAMBLE = """\
read_rtlil {il}
hierarchy -top top
proc
flatten
opt_expr
tee -q -o stat_rtl.json stat -json
"""

_SCRIPT = RTL_PREAMBLE + """\
synth -flatten -top top -noabc -run begin:fine
opt -fast -full
techmap
opt -fast
dfflegalize -cell $_DFF_P_ 01
abc -g cmos2
opt_clean -purge
tee -q -o generic_stat.json stat -json -tech cmos
write_json generic.json
"""


class GenericError(RuntimeError):
    """Generic synthesis or the gate-level activity run failed (one-line message)."""


def rtlil_of(dut):
    """RTLIL text of the component ``dut`` with its ports as the top module ``top``."""
    from amaranth.back import rtlil
    return rtlil.convert(dut, name="top")


def parse_generic_stat(stat_text, netlist_text=None):
    """Area figures from the ``stat -json -tech cmos`` of the generic flow.

    Parameters
    ----------
    stat_text : str
        ``stat -json -tech cmos`` output.
    netlist_text : str, optional
        ``write_json`` netlist, to count memory bits of ``$mem_v2`` cells.

    Returns
    -------
    dict
        ``cells`` (count per gate type), ``gates`` (logic gates, NOT included), ``flip_flops``,
        ``transistors`` (Yosys's estimate), ``nand2_equivalent`` (transistors / 4),
        ``memory_bits`` and ``transistors_per_cell`` (the table used).
    """
    data = json.loads(stat_text)
    node = data["design"] if "design" in data else next(iter(data["modules"].values()))
    cells = {str(k).lstrip("\\"): int(v) for k, v in node.get("num_cells_by_type", {}).items()}
    cells.pop("$scopeinfo", None)
    unknown = sorted(k for k in cells if k not in CMOS_TRANSISTORS and k != "$mem_v2")
    if unknown:
        raise GenericError(f"generic netlist has cells without a transistor count: {unknown}")
    ours = sum(CMOS_TRANSISTORS[k] * n for k, n in cells.items() if k in CMOS_TRANSISTORS)
    est = str(node.get("estimated_num_transistors", ours)).rstrip("+")
    transistors = int(est)
    if transistors != ours:
        raise GenericError(f"Yosys counts {transistors} transistors, the table gives {ours}")
    mem_bits = 0
    if netlist_text is not None:
        mod = json.loads(netlist_text)["modules"]["top"]
        for cell in mod["cells"].values():
            if cell["type"] == "$mem_v2":
                p = cell["parameters"]
                mem_bits += int(str(p["WIDTH"]), 2) * int(str(p["SIZE"]), 2)
    return {
        "cells": cells,
        "gates": sum(n for k, n in cells.items() if k != "$_DFF_P_" and k != "$mem_v2"),
        "flip_flops": cells.get("$_DFF_P_", 0),
        "transistors": transistors,
        "nand2_equivalent": round(transistors / 4),
        "memory_bits": mem_bits,
        "transistors_per_cell": {k: CMOS_TRANSISTORS[k] for k in sorted(cells)
                                 if k in CMOS_TRANSISTORS},
    }


def synth_generic(dut, out):
    """Synthesize component ``dut`` to generic CMOS gates in folder ``out``; return the area.

    Writes ``top.il``, ``generic.ys``, ``generic.log``, ``generic_stat.json`` and
    ``generic.json`` (the gate netlist for :class:`hw.build.gatesim.GateNetlist`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "top.il").write_text(rtlil_of(dut))
    (out / "generic.ys").write_text(_SCRIPT.format(il="top.il"))
    yosys = find_tool("yosys")
    with open(out / "generic.log", "w") as fh:
        proc = subprocess.run(["nice", "-n", "10", yosys, "-q", "generic.ys"], cwd=out,
                              stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = (out / "generic.log").read_text().strip().splitlines()[-3:]
        raise GenericError(f"yosys generic synthesis failed (see {out / 'generic.log'}): "
                           + " | ".join(tail))
    area = parse_generic_stat((out / "generic_stat.json").read_text(),
                              (out / "generic.json").read_text())
    area["rtl_mul_cells"] = rtl_mul_cells((out / "stat_rtl.json").read_text())
    return area


def rtl_mul_cells(stat_text):
    """Multiplier cells (:data:`hw.build.checks.MUL_CELLS`) in a ``stat -json`` of the RTL,
    before mapping."""
    rtl = json.loads(stat_text)
    node = rtl["design"] if "design" in rtl else next(iter(rtl["modules"].values()))
    return sum(int(v) for k, v in node.get("num_cells_by_type", {}).items()
               if str(k) in MUL_CELLS)


#: How the generic area is counted (goes into every report that has it).
GENERIC_NOTE = ("generic area: yosys synth + dfflegalize $_DFF_P_ + abc -g cmos2 (NAND2/NOR2/NOT, "
                "D flip-flops); transistors = yosys stat -tech cmos (kernel/cost.h: NOT 2, "
                "NAND2 4, NOR2 4, DFF 16); NAND2-equivalent = transistors / 4; memories kept "
                "as $mem_v2 and counted in bits, not gates")


def area_section(area):
    """The report's ``generic`` section of :func:`synth_generic`'s ``area`` (the cell counts
    last, the transistor table left out)."""
    flat = {k: v for k, v in area.items() if k not in ("cells", "transistors_per_cell")}
    flat["cells"] = area["cells"]
    return flat


def build_generic(config, *, top="engine", out, t0=None):
    """``--target generic``: the gate-level area of ``top`` without a device; the report dict."""
    t0 = time.monotonic() if t0 is None else t0
    if top == "fpga":
        raise BuildError("top 'fpga' needs a device (--target ice40); generic tops: engine, "
                         "array, baseline")
    check_size(config)
    stage(f"generic gates: {top} {shape_name(config, top)} (yosys abc -g cmos2)", t0)
    try:
        area = synth_generic(make_dut(top, config), Path(out) / f"generic_{top}")
    except GenericError as exc:
        raise BuildError(str(exc)) from None
    if top != "baseline":
        check_no_multipliers(area["rtl_mul_cells"])
    return {"title": f"{top} {shape_name(config, top)}, generic CMOS gates (no device)",
            "config": config.to_dict(),
            "generic": area_section(area),
            "throughput": {"macs_per_cycle": design_macs(config, top),
                           "bits_per_trit": config.bits_per_trit,
                           "weight_bytes_per_cycle": config.bytes_per_beat},
            "checks": {"rtl_mul_cells": area["rtl_mul_cells"]},
            "assumptions": [GENERIC_NOTE]}


def add_generic_area(report, config, *, top, out, t0):
    """Add the generic gate area of ``top`` (of the engine for the board top ``fpga``: UART,
    link and memories are not counted) to the iCE40 ``report``: its ``generic`` section and
    :data:`GENERIC_NOTE`."""
    core = "engine" if top == "fpga" else top
    report["generic"] = build_generic(config, top=core, out=out, t0=t0)["generic"]
    report.setdefault("assumptions", []).append(
        GENERIC_NOTE + (" (top fpga: the engine, without UART/link/memories)"
                        if top == "fpga" else ""))
