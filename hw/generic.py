"""Device-independent area and activity-based energy: Yosys generic gates + a gate-level run.

Area (``--target generic``, and the ``generic`` section of the iCE40 report)
    The design is synthesized by Yosys to its internal two-input CMOS gates
    (``synth -flatten -noabc -run begin:fine; opt -fast -full; techmap; dfflegalize -cell $_DFF_P_
    01; abc -g cmos2; stat -tech cmos``): NAND2, NOR2, NOT and positive-edge D flip-flops (enables
    and synchronous resets become gates). Memories are kept as ``$mem_v2`` cells (not turned into
    flip-flops) and reported as bits. The transistor estimate is Yosys's own ``stat -tech cmos``
    (its ``kernel/cost.h`` table: :data:`CMOS_TRANSISTORS`); the NAND2-equivalent gate count is
    transistors / 4.

Energy, activity-based
    Real BitLinear layers of the shipped model (``model/data/bitnet_kjv.npz``: the trits of the
    seven projections of block 0 and the activation codes that reach each of them when the model
    reads a KJV prompt) are run
    through the gate-level netlist of the ternary array and of the int8 baseline array by
    :class:`hw.gatesim.GateNetlist`; every accumulator the layer produces is checked against
    :func:`model.bitlinear.ternary_matmul` (``==``). The energy is ::

        E = e_unit * (sum over nets of toggles * (fanout + 1) + 2 * n_FF * cycles)

    i.e. each net toggle charges one unit load per gate input it drives plus one for the driver
    and wire, and every flip-flop clock pin toggles twice per cycle (the clock tree itself is not
    counted; zero-delay simulation, so no glitch power). ``e_unit`` is calibrated, with the same
    flow and simulator, so that a 32-bit adder on uniform random operands costs 0.1 pJ per add:
    the 45 nm, 0.9 V figure of Horowitz, "Computing's energy problem", ISSCC 2014 (the value used
    by :mod:`hw.energy`, checked there). The result is therefore a 45 nm estimate that counts the
    actual switching of each design on real data, not only its operation count.
"""

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from .gatesim import GateNetlist
from .toolchain import find_tool

__all__ = ["CMOS_TRANSISTORS", "GenericError", "synth_generic", "parse_generic_stat",
           "real_layers", "array_stimulus", "calibrate_unit_energy", "activity_energy",
           "engine_activity", "HOROWITZ_ADD32_PJ", "SRAM_PJ_PER_64BIT"]

#: Transistors per Yosys internal cell in ``stat -tech cmos`` (Yosys ``kernel/cost.h``,
#: ``cmos_transistors_db``), for the cells the generic flow produces.
CMOS_TRANSISTORS = {"$_NOT_": 2, "$_NAND_": 4, "$_NOR_": 4, "$_DFF_P_": 16}
#: 32-bit integer add, 45 nm (Horowitz ISSCC 2014), the calibration point of ``e_unit``.
HOROWITZ_ADD32_PJ = 0.1
#: SRAM access energy per 64 bits read or written, 45 nm, 8 KB array (Horowitz ISSCC 2014, the
#: commonly quoted "8 KB SRAM, 64-bit access, 10 pJ"; NOT verified here). Applied per access to
#: the memories of the engine run, scaled linearly by word width.
SRAM_PJ_PER_64BIT = 10.0

_SCRIPT = """\
read_rtlil {il}
hierarchy -top top
proc
flatten
opt_expr
tee -q -o stat_rtl.json stat -json
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
    ``generic.json`` (the gate netlist for :class:`hw.gatesim.GateNetlist`).
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
    rtl = json.loads((out / "stat_rtl.json").read_text())
    node = rtl["design"] if "design" in rtl else next(iter(rtl["modules"].values()))
    area["rtl_mul_cells"] = sum(int(v) for k, v in node.get("num_cells_by_type", {}).items()
                                if str(k) in ("$mul", "$macc", "$macc_v2"))
    return area


# -- the workload ---------------------------------------------------------------------------

#: The projections of block 0 of the shipped model that the activity runs execute.
DEFAULT_LAYERS = tuple(f"layers.0.{p}.weight" for p in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
DEFAULT_PROMPT = b"In the beginning God created the heaven and the earth."


def _checkpoint_path():
    import model
    return Path(model.__file__).parent / "data" / "bitnet_kjv.npz"


def real_layers(names=DEFAULT_LAYERS, tokens=1, act_bits=8, seed=0):
    """Return ``({name: (xq, trits)}, source)``: real BitLinear products of the shipped model.

    ``xq`` (``tokens x K`` int8 codes) are the activation codes that reach projection ``name``
    for the last ``tokens`` positions of :data:`DEFAULT_PROMPT` (captured through the golden
    transformer's matmul hook); ``trits`` (``M x K``) its weights. For ``act_bits=4`` the 8-bit
    codes are shifted right by 4. If the checkpoint is missing, one seeded random 256 x 128
    layer ``"random"`` is returned and ``source`` says so.
    """
    path = _checkpoint_path()
    if not path.exists():
        rng = np.random.default_rng(seed)
        trits = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(256, 128),
                           p=[0.3, 0.4, 0.3])
        lo = -(1 << (act_bits - 1))
        xq = rng.integers(lo, -lo, size=(tokens, 128)).astype(np.int8)
        return {"random": (xq, trits)}, f"seeded random 256x128 layer (seed {seed}; {path} " \
                                         "missing)"
    from model import checkpoint
    from model.bitlinear import ternary_matmul
    ck = checkpoint.load(path)
    missing = [n for n in names if n not in ck.ternary]
    if missing:
        raise GenericError(f"no ternary layer(s) {missing} in {path}")
    seen = {}

    def hook(layer, xq, trits):
        if layer in names and layer not in seen:
            seen[layer] = np.array(xq, dtype=np.int8)
        return ternary_matmul(xq, trits)

    prompt = np.frombuffer(DEFAULT_PROMPT, dtype=np.uint8).astype(np.int64)
    ck.transformer(matmul=hook).forward(prompt)
    out = {}
    for name in names:
        xq = seen[name][-tokens:]
        if act_bits == 4:
            xq = (xq >> 4).astype(np.int8)
        out[name] = (xq, np.asarray(ck.ternary[name].trits, dtype=np.int8))
    return out, (f"{path.name}: projections {', '.join(n.split('.')[-2] for n in names)} of "
                 f"block {names[0].split('.')[1]}, activation codes of the last {tokens} "
                 f"token(s) of {DEFAULT_PROMPT.decode()!r}")


def _pack(values, width):
    mask = (1 << width) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * width)
    return out


def array_stimulus(kind, rows, cols, act_bits, latency, xq, trits):
    """Per-cycle inputs that run ``xq @ trits.T`` through an array; the expected accumulators.

    Parameters
    ----------
    kind : str
        ``"ternary"`` (:class:`hw.array.MacArray`, 2-bit trit codes) or ``"int8"``
        (:class:`hw.baseline.Int8MacArray`, the trits as int8 weights).
    rows, cols, act_bits, latency : int
        Array shape, activation width and the array's latency in cycles.
    xq, trits : numpy.ndarray
        ``T x K`` activation codes and ``M x K`` weights in {-1, 0, 1}.

    Returns
    -------
    stimulus : dict
        Port -> per-cycle values (``en``, ``valid``, ``first``, ``x``, ``trits``/``weights``).
    checks : list
        ``(cycle, expected accumulators of the rows)`` when a tile's result is in ``acc``.
    """
    from model.bitlinear import ternary_matmul
    t_count, k = xq.shape
    m = trits.shape[0]
    golden = ternary_matmul(xq, trits, act_bits).astype(np.int64)
    kt, mt = -(-k // cols), -(-m // rows)
    xp = np.zeros((t_count, kt * cols), dtype=np.int64)
    xp[:, :k] = xq
    wp = np.zeros((mt * rows, kt * cols), dtype=np.int64)
    wp[:m, :k] = trits
    stim = {"en": [], "valid": [], "first": [], "x": [],
            "trits" if kind == "ternary" else "weights": []}
    wkey = "trits" if kind == "ternary" else "weights"
    checks = []
    for t in range(t_count):
        for mi in range(mt):
            for ki in range(kt):
                stim["en"].append(1)
                stim["valid"].append(1)
                stim["first"].append(int(ki == 0))
                stim["x"].append(_pack(xp[t, ki * cols:(ki + 1) * cols], act_bits))
                w = wp[mi * rows:(mi + 1) * rows, ki * cols:(ki + 1) * cols].reshape(-1)
                if kind == "ternary":
                    stim[wkey].append(_pack([{0: 0, 1: 1, -1: 3}[int(v)] for v in w], 2))
                else:
                    stim[wkey].append(_pack(w, 8))
            want = np.zeros(rows, dtype=np.int64)
            hi = min(m, (mi + 1) * rows)
            want[:hi - mi * rows] = golden[t, mi * rows:hi]
            checks.append((len(stim["en"]) - 1 + latency, want))
    for _ in range(latency + 1):
        for key in stim:
            stim[key].append(1 if key == "en" else 0)
    return stim, checks


def _signed(v, width):
    return v - (1 << width) if v >> (width - 1) else v


def _unpack_acc(value, rows, width):
    mask = (1 << width) - 1
    return [_signed((value >> (r * width)) & mask, width) for r in range(rows)]


def _energy_units(net, toggles, cycles):
    """``sum(toggles * (fanout + 1))`` (data) and ``2 * n_FF * cycles`` (clock), unit loads."""
    data = int((toggles * (net.fanout + 1)).sum())
    clock = 2 * len(net.ff_q) * cycles
    return data, clock


def calibrate_unit_energy(out, width=32, samples=2000, seed=1):
    """``e_unit`` (pJ per unit-load toggle) making a ``width``-bit adder cost 0.1 pJ per add.

    The adder (``s = a + b``, combinational) goes through the same generic flow and simulator;
    ``samples`` uniform random operand pairs are applied, one per cycle.
    """
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Adder(wiring.Component):
        a: In(width)
        b: In(width)
        s: Out(width)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.s.eq(self.a + self.b)
            return m

    area = synth_generic(Adder(), out)
    net = GateNetlist((Path(out) / "generic.json").read_text())
    rng = np.random.default_rng(seed)
    a = [int(v) for v in rng.integers(0, 1 << width, samples, dtype=np.uint64)]
    b = [int(v) for v in rng.integers(0, 1 << width, samples, dtype=np.uint64)]
    toggles, got = net.run({"a": a, "b": b}, outputs=("s",))
    mask = (1 << width) - 1
    if got["s"] != [(x + y) & mask for x, y in zip(a, b, strict=True)]:
        raise GenericError("calibration adder: gate-level sums are wrong")
    data, _clock = _energy_units(net, toggles, samples)
    units_per_add = data / (samples - 1)
    return {"e_unit_pj": HOROWITZ_ADD32_PJ / units_per_add, "units_per_add": units_per_add,
            "adder_bits": width, "adder_transistors": area["transistors"],
            "source": f"{width}-bit add = {HOROWITZ_ADD32_PJ} pJ, Horowitz ISSCC 2014, 45 nm"}


def activity_energy(netlist, kind, config, xq, trits, e_unit_pj, latency):
    """Run ``xq @ trits.T`` on a generic array netlist; check it; return the energy figures.

    ``netlist`` is a :class:`hw.gatesim.GateNetlist` or the path of a ``write_json`` netlist.

    Raises
    ------
    GenericError
        An accumulator of the gate-level run differs from the golden model.
    """
    t0 = time.monotonic()
    net = netlist if isinstance(netlist, GateNetlist) else GateNetlist(
        Path(netlist).read_text())
    stim, checks = array_stimulus(kind, config.rows, config.cols, config.act_bits, latency,
                                  xq, trits)
    toggles, samples = net.run(stim, outputs=("acc",))
    for cycle, want in checks:
        got = _unpack_acc(samples["acc"][cycle], config.rows, config.acc_width)
        if got != want.tolist():
            raise GenericError(f"{kind} gate-level run differs from the golden model at cycle "
                               f"{cycle}: {got} != {want.tolist()}")
    cycles = len(stim["en"])
    data, clock = _energy_units(net, toggles, cycles)
    macs = int(xq.shape[0] * trits.shape[0] * trits.shape[1])
    energy = (data + clock) * e_unit_pj
    return {"cycles": cycles, "useful_macs": macs, "tiles_checked": len(checks),
            "checked_against_golden": True,
            "net_toggles": int(toggles.sum()),
            "toggles_per_net_per_cycle": float(toggles.sum() / (net.nbits - 2) / cycles),
            "data_units": data, "clock_units": clock,
            "energy_pj": energy, "data_pj": data * e_unit_pj, "clock_pj": clock * e_unit_pj,
            "pj_per_mac": energy / macs, "sim_seconds": round(time.monotonic() - t0, 2)}


def engine_activity(netlist, config, xq, trits, e_unit_pj, *, budget=None):
    """Run one layer ``xq @ trits.T`` through a generic netlist of the whole engine.

    The engine's streams are driven at full rate (``cmd`` once, ``act`` chunks and one weight
    pass per token from :func:`model.packing.pack_layer_stream`, ``result.ready`` always high),
    its results are checked against :func:`model.bitlinear.ternary_matmul` (values, ``last``
    flags, nothing extra), and the energy is the gate toggles as in :func:`activity_energy`
    plus the memory accesses at :data:`SRAM_PJ_PER_64BIT` (scaled by width).

    Raises
    ------
    GenericError
        Wrong, missing or extra results, the engine's ``error``, or a timeout.
    """
    from model.bitlinear import ternary_matmul
    from model.packing import pack_layer_stream
    t0 = time.monotonic()
    net = netlist if isinstance(netlist, GateNetlist) else GateNetlist(
        Path(netlist).read_text())
    t_count, k = xq.shape
    m = trits.shape[0]
    golden = ternary_matmul(xq, trits, config.act_bits).astype(np.int64)
    c, b = config.cols, config.act_bits
    kt = config.k_tiles(k)
    padded = np.zeros((t_count, kt * c), dtype=np.int64)
    padded[:, :k] = xq
    acts = [_pack(padded[t, i * c:(i + 1) * c], b) for t in range(t_count) for i in range(kt)]
    beats = [int.from_bytes(bytes(row), "little")
             for row in pack_layer_stream(trits, config)] * t_count
    cmd = m | k << 16 | t_count << 32
    budget = budget or 4 * (len(beats) + t_count * m) + 200
    net.reset()
    sent_cmd, ai, wi, results = False, 0, 0, []
    cycle = 0
    while len(results) < t_count * m:
        if cycle > budget:
            raise GenericError(f"engine gate-level run timed out after {budget} cycles: "
                               f"{len(results)} of {t_count * m} results, {ai}/{len(acts)} "
                               f"act chunks, {wi}/{len(beats)} beats")
        net.settle({"cmd__valid": int(not sent_cmd), "cmd__payload": cmd,
                    "act__valid": int(ai < len(acts)),
                    "act__payload": acts[ai] if ai < len(acts) else 0,
                    "weights__valid": int(wi < len(beats)),
                    "weights__payload": beats[wi] if wi < len(beats) else 0,
                    "result__ready": 1})
        if net.get("error"):
            raise GenericError("engine gate-level run: the engine raised error")
        if not sent_cmd and net.get("cmd__ready"):
            sent_cmd = True
        if ai < len(acts) and net.get("act__ready"):
            ai += 1
        if wi < len(beats) and net.get("weights__ready"):
            wi += 1
        if net.get("result__valid"):
            results.append(net.get("result__payload"))
        net.clock()
        cycle += 1
    for _ in range(4):  # nothing may follow the last result
        net.settle({"cmd__valid": 0, "act__valid": 0, "weights__valid": 0})
        if net.get("result__valid"):
            raise GenericError("engine gate-level run: an extra result after the last one")
        net.clock()
    raw = np.array(results, dtype=np.int64)
    acc = raw & 0xFFFFFFFF
    acc = np.where(acc >= 1 << 31, acc - (1 << 32), acc).reshape(t_count, m)
    last = ((raw >> 32) & 1).reshape(t_count, m)
    want_last = np.zeros((t_count, m), dtype=np.int64)
    want_last[:, -1] = 1
    if (ai, wi) != (len(acts), len(beats)) or not np.array_equal(acc, golden) or \
            not np.array_equal(last, want_last):
        bad = np.argwhere(acc != golden)
        raise GenericError(f"engine gate-level run differs from the golden model "
                           f"({len(bad)} wrong results, first at {bad[:1].tolist()}; "
                           f"last flags ok: {np.array_equal(last, want_last)}; "
                           f"{ai}/{len(acts)} acts, {wi}/{len(beats)} beats consumed)")
    toggles = net.toggles.copy()
    toggles[0:2] = 0
    data, clock = _energy_units(net, toggles, net.cycles)
    mem_pj = sum((r + w) * SRAM_PJ_PER_64BIT * mem["width"] / 64
                 for mem, r, w in zip(net.mems, net.mem_reads, net.mem_writes, strict=True))
    macs = int(t_count * m * k)
    logic = (data + clock) * e_unit_pj
    return {"cycles": net.cycles, "useful_macs": macs, "results_checked": len(results),
            "checked_against_golden": True, "net_toggles": int(toggles.sum()),
            "data_units": data, "clock_units": clock,
            "data_pj": data * e_unit_pj, "clock_pj": clock * e_unit_pj,
            "logic_pj_per_mac": logic / macs,
            "memory_reads": int(sum(net.mem_reads)), "memory_writes": int(sum(net.mem_writes)),
            "memory_pj": mem_pj, "energy_pj": logic + mem_pj,
            "pj_per_mac": (logic + mem_pj) / macs,
            "sim_seconds": round(time.monotonic() - t0, 2)}
