"""Activity-based energy: real layers run on the gate-level netlists, toggles counted.

Real BitLinear layers of the shipped model (:mod:`hw.build.workload`: the trits of the seven
projections of block 0 and the activation codes that reach each of them when the model reads a
KJV prompt) are run through the generic gate netlist (:mod:`hw.build.generic`) of the ternary
array and of the int8 baseline array by :class:`hw.build.gatesim.GateNetlist`; every
accumulator the layer produces is checked against :func:`model.bitlinear.ternary_matmul`
(``==``). The energy is ::

    E = e_unit * (sum over nets of toggles * (fanout + 1) + 2 * n_FF * cycles)

i.e. each net toggle charges one unit load per gate input it drives plus one for the driver and
wire, and every flip-flop clock pin toggles twice per cycle (the clock tree itself is not
counted; zero-delay simulation, so no glitch power). ``e_unit`` is calibrated, with the same
flow and simulator, so that a 32-bit adder on uniform random operands costs 0.1 pJ per add: the
45 nm, 0.9 V figure of Horowitz, "Computing's energy problem", ISSCC 2014 (the value used by
:mod:`hw.build.energy`, checked there). The result is therefore a 45 nm estimate that counts the
actual switching of each design on real data, not only its operation count.

The whole engine runs the same layers through its streams (:func:`engine_activity`,
:func:`engine_energy`), its memory accesses counted at :data:`SRAM_PJ_PER_64BIT`.
"""

import time
from pathlib import Path

import numpy as np

from .checks import BuildError
from .gatesim import GateNetlist
from .generic import GenericError, synth_generic
from .toolchain import stage

__all__ = ["HOROWITZ_ADD32_PJ", "SRAM_PJ_PER_64BIT", "array_stimulus", "array_run",
           "calibrate_unit_energy",
           "activity_energy", "array_activity", "engine_activity", "engine_energy",
           "activity_notes"]

#: 32-bit integer add, 45 nm (Horowitz ISSCC 2014), the calibration point of ``e_unit``.
HOROWITZ_ADD32_PJ = 0.1
#: SRAM access energy per 64 bits read or written, 45 nm, 8 KB array (Horowitz ISSCC 2014, the
#: commonly quoted "8 KB SRAM, 64-bit access, 10 pJ"; NOT verified here). Applied per access to
#: the memories of the engine run, scaled linearly by word width.
SRAM_PJ_PER_64BIT = 10.0


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


def array_run(net, kind, config, xq, trits, latency):
    """Run ``xq @ trits.T`` on an array's gate netlist ``net``; check it; return
    ``(toggles, cycles, tiles checked)``.

    ``net`` is a :class:`hw.build.gatesim.GateNetlist` of ``kind``'s array (generic gates or
    library cells); every tile's accumulators are compared with the golden model.

    Raises
    ------
    GenericError
        An accumulator of the gate-level run differs from the golden model.
    """
    stim, checks = array_stimulus(kind, config.rows, config.cols, config.act_bits, latency,
                                  xq, trits)
    toggles, samples = net.run(stim, outputs=("acc",))
    for cycle, want in checks:
        got = _unpack_acc(samples["acc"][cycle], config.rows, config.acc_width)
        if got != want.tolist():
            raise GenericError(f"{kind} gate-level run differs from the golden model at cycle "
                               f"{cycle}: {got} != {want.tolist()}")
    return toggles, len(stim["en"]), len(checks)


def activity_energy(netlist, kind, config, xq, trits, e_unit_pj, latency):
    """Run ``xq @ trits.T`` on a generic array netlist; check it; return the energy figures.

    ``netlist`` is a :class:`hw.build.gatesim.GateNetlist` or the path of a ``write_json``
    netlist.

    Raises
    ------
    GenericError
        An accumulator of the gate-level run differs from the golden model.
    """
    t0 = time.monotonic()
    net = netlist if isinstance(netlist, GateNetlist) else GateNetlist(
        Path(netlist).read_text())
    toggles, cycles, tiles = array_run(net, kind, config, xq, trits, latency)
    data, clock = _energy_units(net, toggles, cycles)
    macs = int(xq.shape[0] * trits.shape[0] * trits.shape[1])
    energy = (data + clock) * e_unit_pj
    return {"cycles": cycles, "useful_macs": macs, "tiles_checked": tiles,
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


def array_activity(netlist_path, kind, config, layers, e_unit_pj, latency, t0):
    """Run every layer of ``layers`` (``{name: (xq, trits)}``) on the ``kind`` array's gate
    netlist ``netlist_path`` (:func:`activity_energy`); return ``(total, per_layer)``.

    ``per_layer`` maps each layer's short name (``q_proj``) to its figures, ``total`` sums
    them, with ``pj_per_mac`` over all the layers' MACs.
    """
    stage(f"activity: {kind} array runs {len(layers)} layers on its gate netlist", t0)
    net = GateNetlist(Path(netlist_path).read_text())
    per_layer = {}
    try:
        for layer, (xq, trits) in layers.items():
            per_layer[layer.split(".")[-2]] = activity_energy(
                net, kind, config, xq, trits, e_unit_pj, latency)
    except GenericError as exc:
        raise BuildError(str(exc)) from None
    total = {k: sum(r[k] for r in per_layer.values())
             for k in ("cycles", "useful_macs", "tiles_checked", "net_toggles",
                       "data_units", "clock_units", "energy_pj", "data_pj", "clock_pj",
                       "sim_seconds")}
    total["pj_per_mac"] = total["energy_pj"] / total["useful_macs"]
    total["checked_against_golden"] = all(r["checked_against_golden"]
                                          for r in per_layer.values())
    return total, per_layer


def engine_energy(config, netlist_path, gen, t0):
    """Activity energy of the whole engine (gate netlist ``netlist_path``) on the layers of
    ``gen`` (from :func:`hw.build.compare.generic_comparison`) that fit ``config``; ``None``
    if none fits."""
    layers = {name: v for name, v in gen["layers"].items()
              if v[0].shape[1] <= config.max_k and v[1].shape[0] <= config.max_m}
    if not layers:
        return None
    stage(f"activity: engine runs {len(layers)} layers on its gate netlist", t0)
    net = GateNetlist(Path(netlist_path).read_text())
    per_layer = {}
    try:
        for name, (xq, trits) in layers.items():
            per_layer[name.split(".")[-2]] = engine_activity(
                net, config, xq, trits, gen["calibration"]["e_unit_pj"])
    except GenericError as exc:
        raise BuildError(str(exc)) from None
    total = {k: sum(r[k] for r in per_layer.values())
             for k in ("cycles", "useful_macs", "results_checked", "net_toggles", "data_pj",
                       "clock_pj", "memory_reads", "memory_writes", "memory_pj", "energy_pj",
                       "sim_seconds")}
    total["logic_pj_per_mac"] = (total["data_pj"] + total["clock_pj"]) / total["useful_macs"]
    total["pj_per_mac"] = total["energy_pj"] / total["useful_macs"]
    total["checked_against_golden"] = True
    return {"total": total, "layers": per_layer}


def activity_notes(gen):
    """The report's notes on the activity runs of ``gen``: the workload and how the energy is
    counted (``gen`` from :func:`hw.build.compare.generic_comparison`)."""
    cal = gen["calibration"]
    return [
        f"activity workload: {gen['workload']['source']}; every accumulator of the gate-level "
        "runs equals model.bitlinear.ternary_matmul",
        "gate_model_45nm (45 nm-calibrated gate model, not FPGA or silicon energy; measured "
        "cells: --target sky130): "
        f"E = e_unit * (sum over nets of toggles * (fanout + 1) + 2 * FFs * "
        f"cycles); e_unit = {cal['e_unit_pj'] * 1000:.4g} fJ per unit-load toggle, calibrated "
        f"so a {cal['adder_bits']}-bit adder (same flow, random operands, "
        f"{cal['units_per_add']:.0f} unit toggles per add) costs {cal['source']}; zero-delay "
        "(no glitches), no clock tree, no wires beyond one unit load per net; activity figures "
        "are of the bare arrays (no decoder / buffers) and the int8 baseline runs the same "
        "ternary weights as int8 values",
    ]
