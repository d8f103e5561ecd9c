"""Cycle-based, zero-delay simulation of a Yosys gate-level netlist, with toggle counting.

The netlist is the ``write_json`` output of the generic flow in :mod:`hw.build.generic`: Yosys
internal gate cells (``$_NOT_``, ``$_NAND_``, ``$_NOR_`` and the other two-input gates,
``$_MUX_``), positive-edge ``$_DFF_P_`` flip-flops and ``$mem_v2`` memories with synchronous read
ports (as Amaranth's ``lib.memory`` makes them), one clock; or a netlist mapped to library
cells (the sky130 flow of :mod:`hw.build.sky130`), whose functions and flip-flop pins are given
by the caller (``cells``, ``flops``). (YoWASP's Yosys has no ``sim``
pass, hence this small simulator; numpy evaluates one logic level of one gate type per
operation.) Memory reads and writes are counted per cycle, not as gate toggles.

Each cycle: the inputs are set, the combinational logic settles (zero delay: glitches are not
modelled), every net that differs from the previous cycle's settled value counts one toggle, the
outputs are sampled, then every flip-flop loads its ``D``. Toggle counts per net and fan-out per
net are what :mod:`hw.build.activity` turns into an energy estimate.
"""

import json

import numpy as np

__all__ = ["GateNetlist", "GateSimError", "COMB_OPS"]


class GateSimError(ValueError):
    """The netlist has a cell the simulator does not model, or a combinational loop."""


#: Combinational cell type -> (input pins, function of uint8 0/1 arrays).
COMB_OPS = {
    "$_BUF_": (("A",), lambda a: a),
    "$_NOT_": (("A",), lambda a: a ^ 1),
    "$_AND_": (("A", "B"), lambda a, b: a & b),
    "$_NAND_": (("A", "B"), lambda a, b: (a & b) ^ 1),
    "$_OR_": (("A", "B"), lambda a, b: a | b),
    "$_NOR_": (("A", "B"), lambda a, b: (a | b) ^ 1),
    "$_XOR_": (("A", "B"), lambda a, b: a ^ b),
    "$_XNOR_": (("A", "B"), lambda a, b: (a ^ b) ^ 1),
    "$_ANDNOT_": (("A", "B"), lambda a, b: a & (b ^ 1)),
    "$_ORNOT_": (("A", "B"), lambda a, b: a | (b ^ 1)),
    "$_MUX_": (("A", "B", "S"), lambda a, b, s: np.where(s == 1, b, a)),
}
_IGNORED = ("$scopeinfo",)


def _table_op(table):
    """Vectorized function of a truth table (bit ``i``: output for input vector ``i``)."""
    table = int(table)

    def op(*ins):
        idx = np.zeros(len(ins[0]), dtype=np.int64)
        for k, a in enumerate(ins):
            idx |= a.astype(np.int64) << k
        return ((table >> idx) & 1).astype(np.uint8)
    return op


def _bit(b):
    """Net index of a JSON bit: constants ``"0"``/``"x"``/``"z"`` -> 0, ``"1"`` -> 1."""
    if isinstance(b, int):
        return b
    return 1 if b == "1" else 0


class GateNetlist:
    """A gate-level module ready to simulate.

    Parameters
    ----------
    netlist_json : str
        Yosys ``write_json`` text.
    top : str
        Module name (default ``"top"``).
    cells : dict, optional
        Library cells besides Yosys's internal gates: ``{type: (input pins, output pin,
        truth table)}``, the table an int whose bit ``i`` is the output for the input vector
        with input ``k`` at bit ``k`` of ``i`` (as :mod:`hw.build.sky130_cells` reads them).
    flops : dict, optional
        Library positive-edge D flip-flops besides ``$_DFF_P_``: ``{type: (D pin, Q pin,
        clock pin)}``.

    Raises
    ------
    GateSimError
        Unknown cell type, a flip-flop other than ``$_DFF_P_``, several clocks, or a
        combinational loop.
    """

    def __init__(self, netlist_json, top="top", *, cells=None, flops=None):
        mod = json.loads(netlist_json)["modules"][top]
        self._ops = {kind: (pins, "Y", fn) for kind, (pins, fn) in COMB_OPS.items()}
        for kind, (pins, out, table) in (cells or {}).items():
            self._ops[kind] = (tuple(pins), out, _table_op(table))
        flop_pins = {"$_DFF_P_": ("D", "Q", "C"), **(flops or {})}
        self.ports = {name: (p["direction"], [_bit(b) for b in p["bits"]])
                      for name, p in mod["ports"].items()}
        nbits = 2
        for p in mod["ports"].values():
            nbits = max([nbits] + [b + 1 for b in p["bits"] if isinstance(b, int)])
        comb, ffs, clocks, mems, ff_kinds = [], [], set(), [], []
        for name, cell in mod["cells"].items():
            kind, conn = cell["type"], cell["connections"]
            for bits in conn.values():
                nbits = max([nbits] + [b + 1 for b in bits if isinstance(b, int)])
            if kind in _IGNORED:
                continue
            if kind in flop_pins:
                d, q, c = flop_pins[kind]
                ffs.append((_bit(conn[d][0]), _bit(conn[q][0])))
                clocks.add(_bit(conn[c][0]))
                ff_kinds.append(kind)
            elif kind == "$mem_v2":
                mems.append(self._memory(name, cell, clocks))
            elif kind in self._ops:
                pins, out, _fn = self._ops[kind]
                comb.append((kind, [_bit(conn[p][0]) for p in pins], _bit(conn[out][0])))
            else:
                raise GateSimError(f"cell {name} of type {kind} is not supported by the gate "
                                   "simulator (run dfflegalize / abc -g first, or pass its "
                                   "function in cells=)")
        if len(clocks) > 1:
            raise GateSimError(f"{len(clocks)} clock nets; one clock domain supported")
        self.nbits = nbits
        self.clock_net = clocks.pop() if clocks else None
        self.ff_d = np.array([d for d, _ in ffs], dtype=np.int64)
        self.ff_q = np.array([q for _, q in ffs], dtype=np.int64)
        self.init = np.zeros(nbits, dtype=np.uint8)
        self.init[1] = 1
        for net in mod["netnames"].values():
            init = net.get("attributes", {}).get("init")
            if isinstance(init, str) and set(init) <= {"0", "1", "x"}:
                for b, v in zip(net["bits"], reversed(init), strict=False):
                    if isinstance(b, int) and v == "1":
                        self.init[b] = 1
        # fan-out: input pins of cells (comb + FF D) on each net
        self.fanout = np.zeros(nbits, dtype=np.int64)
        for _kind, ins, _y in comb:
            for i in ins:
                self.fanout[i] += 1
        np.add.at(self.fanout, self.ff_d, 1)
        self.mems = mems
        for mem in mems:
            for port in mem["rd"]:
                np.add.at(self.fanout, port["addr"], 1)
                np.add.at(self.fanout, port["en"], 1)
            for port in mem["wr"]:
                for key in ("addr", "data", "en"):
                    np.add.at(self.fanout, port[key], 1)
        self.driver = {y: kind for kind, _ins, y in comb}
        self.driver.update((q, kind) for (_d, q), kind in zip(ffs, ff_kinds, strict=True))
        self.ff_kinds = ff_kinds
        self.comb_cells = comb
        self._levels = self._levelize(comb)
        self.cell_count = len(comb) + len(ffs)
        self.reset()

    @staticmethod
    def _memory(name, cell, clocks):
        """Parse a ``$mem_v2``: synchronous read ports only, no read resets."""
        p, conn = cell["parameters"], cell["connections"]

        def num(key):
            return int(str(p[key]), 2)

        width, abits, nrd, nwr = num("WIDTH"), num("ABITS"), num("RD_PORTS"), num("WR_PORTS")
        rd_clk_en = str(p["RD_CLK_ENABLE"]).rjust(nrd, "0")[::-1]
        transp = str(p["RD_TRANSPARENCY_MASK"]).rjust(nrd * nwr, "0")[::-1]
        for key in ("RD_ARST", "RD_SRST"):
            if any(_bit(b) != 0 for b in conn.get(key, [])):
                raise GateSimError(f"memory {name}: read port resets are not supported")
        if nrd and "0" in rd_clk_en[:nrd]:
            raise GateSimError(f"memory {name}: asynchronous read ports are not supported")
        for key in ("RD_CLK", "WR_CLK"):
            clocks.update(_bit(b) for b in conn.get(key, []))

        def bits(key, i, n):
            return np.array([_bit(b) for b in conn[key][i * n:(i + 1) * n]], dtype=np.int64)

        return {
            "name": name, "width": width, "size": num("SIZE"), "offset": num("OFFSET"),
            "rd": [{"addr": bits("RD_ADDR", i, abits), "data": bits("RD_DATA", i, width),
                    "en": bits("RD_EN", i, 1),
                    "transparent": [transp[i * nwr + w] == "1" for w in range(nwr)]}
                   for i in range(nrd)],
            "wr": [{"addr": bits("WR_ADDR", i, abits), "data": bits("WR_DATA", i, width),
                    "en": bits("WR_EN", i, width)} for i in range(nwr)],
        }

    def reset(self):
        """Return to the initial state (flip-flop ``init`` values, memories all zero)."""
        self.v = self.init.copy()
        self.prev = self.v.copy()
        self.toggles = np.zeros(self.nbits, dtype=np.int64)
        self.cycles = 0
        self.mem_data = [np.zeros((m["size"], m["width"]), dtype=np.uint8) for m in self.mems]
        self.mem_reads = [0] * len(self.mems)
        self.mem_writes = [0] * len(self.mems)

    def settle(self, inputs):
        """Apply ``{input_port: unsigned int}`` (others keep their value), settle the logic.

        Toggles against the previous settled state are counted from the second cycle on.
        """
        v = self.v
        for name, value in inputs.items():
            direction, bits = self.ports.get(name, ("", []))
            if direction != "input":
                raise ValueError(f"{name!r} is not an input port")
            value = int(value)
            v[bits] = [(value >> i) & 1 for i in range(len(bits))]
        for op, ins, y in self._levels:
            v[y] = op(*[v[i] for i in ins])
        if self.cycles:
            self.toggles += v != self.prev
        self.prev[:] = v

    def get(self, name):
        """Unsigned value of port (or list of nets) ``name`` in the settled state."""
        bits = self.ports[name][1] if isinstance(name, str) else name
        return int(sum(int(b) << i for i, b in enumerate(self.v[bits])))

    def clock(self):
        """Rising clock edge: flip-flops load ``D``; memories read (synchronously) and write."""
        v = self.v
        updates = []
        for k, mem in enumerate(self.mems):
            data = self.mem_data[k]
            writes = []
            for port in mem["wr"]:
                en = v[port["en"]]
                if en.any():
                    addr = self.get(port["addr"]) - mem["offset"]
                    if 0 <= addr < mem["size"]:
                        writes.append((addr, en.astype(bool), v[port["data"]].copy()))
            for port in mem["rd"]:
                if not v[port["en"][0]]:
                    continue
                addr = self.get(port["addr"]) - mem["offset"]
                word = data[addr].copy() if 0 <= addr < mem["size"] else np.zeros(
                    mem["width"], np.uint8)
                for (waddr, en, wdata), transparent in zip(writes, port["transparent"],
                                                           strict=False):
                    if transparent and waddr == addr:
                        word[en] = wdata[en]
                updates.append((port["data"], word))
                self.mem_reads[k] += 1
            for addr, en, wdata in writes:
                data[addr][en] = wdata[en]
                self.mem_writes[k] += 1
        if self.ff_q.size:
            v[self.ff_q] = v[self.ff_d]
        for nets, word in updates:
            v[nets] = word
        self.cycles += 1

    def _levelize(self, comb):
        driven = {y: i for i, (_k, _ins, y) in enumerate(comb)}
        level = [None] * len(comb)
        for start in range(len(comb)):
            if level[start] is not None:
                continue
            stack = [(start, False)]
            on_stack = set()
            while stack:
                i, done = stack.pop()
                if done:
                    on_stack.discard(i)
                    level[i] = 1 + max((level[driven[n]] for n in comb[i][1] if n in driven),
                                       default=0)
                    continue
                if level[i] is not None:
                    continue
                if i in on_stack:
                    raise GateSimError(f"combinational loop through net {comb[i][2]}")
                on_stack.add(i)
                stack.append((i, True))
                for n in comb[i][1]:
                    j = driven.get(n)
                    if j is not None and level[j] is None:
                        if j in on_stack:
                            raise GateSimError(f"combinational loop through net {comb[j][2]}")
                        stack.append((j, False))
        groups = {}
        for (kind, ins, y), lev in zip(comb, level, strict=True):
            groups.setdefault((lev, kind), []).append((ins, y))
        out = []
        for (_lev, kind), cells in sorted(groups.items()):
            pins, _out, fn = self._ops[kind]
            ins = [np.array([c[0][p] for c in cells], dtype=np.int64) for p in range(len(pins))]
            out.append((fn, ins, np.array([c[1] for c in cells], dtype=np.int64)))
        return out

    def port_width(self, name):
        return len(self.ports[name][1])

    def run(self, stimulus, outputs=()):
        """Simulate ``len`` cycles of ``stimulus``; return ``(toggles, samples)``.

        Parameters
        ----------
        stimulus : dict
            ``{input_port: sequence of ints}``, one unsigned value per cycle, all the same length.
            Inputs not named (and the clock) are held at 0.
        outputs : sequence of str
            Output ports to sample each cycle (after the logic settles, before the clock edge).

        Returns
        -------
        toggles : numpy.ndarray
            Per-net count of value changes between consecutive settled cycles (int64, indexed
            by net; the first cycle only settles the initial state and counts nothing).
        samples : dict
            ``{output_port: list of unsigned ints}``, one per cycle.
        """
        lengths = {len(v) for v in stimulus.values()}
        if len(lengths) != 1:
            raise ValueError("every stimulus sequence must have the same length")
        (cycles,) = lengths
        for name in stimulus:
            if self.ports.get(name, ("",))[0] != "input":
                raise ValueError(f"{name!r} is not an input port")
        for name in outputs:
            if self.ports.get(name, ("",))[0] != "output":
                raise ValueError(f"{name!r} is not an output port")
        self.reset()
        samples = {name: [] for name in outputs}
        for t in range(cycles):
            self.settle({name: seq[t] for name, seq in stimulus.items()})
            for name in outputs:
                samples[name].append(self.get(name))
            self.clock()
        toggles = self.toggles.copy()
        toggles[0:2] = 0
        return toggles, samples
