"""The ternary array beside an int8 multiply-accumulate array of the same shape.

Every report sets the two side by side, so the saving is measured, not claimed: on the iCE40
(:func:`ice40_comparison`), on the ECP5 with the int8 multipliers in MULT18X18D and in LUTs
(:func:`ecp5_comparison`), as generic gates with their activity energy
(:func:`generic_comparison`), and per operation count (:mod:`hw.build.energy`).
:func:`add_comparison` adds all of it (and the whole engine's activity energy) to a report.
"""

from pathlib import Path

from hw.array import MacArray
from hw.baseline import Int8MacArray

from .activity import (
    SRAM_PJ_PER_64BIT,
    activity_notes,
    array_activity,
    calibrate_unit_energy,
    engine_energy,
)
from .checks import check_size
from .ecp5 import DEFAULT_DEVICE, build_ecp5
from .energy import energy_tables, opcount_energies
from .generic import synth_generic
from .ice40 import build_ice40
from .plot import plot
from .report import UP5K
from .toolchain import stage
from .workload import real_layers

__all__ = ["ice40_comparison", "ecp5_comparison", "generic_row", "generic_comparison",
           "add_comparison"]


def ice40_comparison(config, *, board, out, freq_mhz, t0, gen=None, force=False):
    """Build the ternary array and the int8 baseline array of the same shape; return the table.

    The baseline maps its multipliers into SB_MAC16 when they fit (``rows * cols <= 8``), else
    into LUTs (yosys without ``-dsp``), as stated in the returned ``assumptions``. ``gen``
    (:func:`generic_comparison`) adds the generic-gate columns.
    """
    macs = config.rows * config.cols
    use_dsp = macs <= UP5K["SB_MAC16"]
    tern = build_ice40(config, top="array", board=board, out=Path(out) / "array", seeds=1,
                       freq_mhz=freq_mhz, t0=t0, force=force)
    base = build_ice40(config, top="baseline", board=board, out=Path(out) / "baseline", seeds=1,
                       freq_mhz=freq_mhz, allow_mul=True, use_dsp=use_dsp, unfit_ok=True, t0=t0)
    rows = _device_table({"ternary": tern, "int8": base}, ("LUT4", "FF", "SB_MAC16"),
                         config, gen)
    rows["assumptions"] = [
        f"both arrays {config.rows}x{config.cols} in the same serial-in/XOR-out harness "
        "(iCE40 figures); generic gates and activity energy are of the bare arrays",
        "int8 multipliers in SB_MAC16" if use_dsp else
        f"int8 multipliers in LUTs ({macs} > {UP5K['SB_MAC16']} SB_MAC16)",
        "pJ/MAC: operation counts (hw.build.energy.mac_ops) x per-op energies; Horowitz 32-bit "
        "add/mult verified, 8-bit add/mult and all BitNet 7 nm values NOT verified",
    ]
    return rows


def _device_table(reports, cells, config, gen=None):
    """The comparison rows of device builds ``{name: report}`` (``"ternary"`` first): the
    ``cells`` used, Fmax, GOPS, the op-count energies (``int8*`` rows: of an int8 MAC) and,
    with ``gen`` (:func:`generic_comparison`), the generic-gate columns; then for every other
    row ``ratio_<name>_over_ternary``."""
    rows = {}
    for name, rep in reports.items():
        kind = "ternary" if name == "ternary" else "int8"
        rows[name] = {**{k: rep["device"][k]["used"] for k in cells},
                      "fmax_mhz": rep["timing"]["fmax_mhz"],
                      "gops": rep["throughput"]["gops_at_fmax"],
                      **({"macs_per_device": rep["throughput"]["macs_per_device"]}
                         if "macs_per_device" in rep["throughput"] else {}),
                      **opcount_energies(kind, config.cols)}
        if gen is not None:
            rows[name].update(generic_row(gen[kind]))
        if name != "ternary":
            rows[name]["fits_device"] = rep["fits"]
    for name in [n for n in reports if n != "ternary"]:
        rows[f"ratio_{name}_over_ternary"] = {
            k: (rows[name][k] / rows["ternary"][k]
                if rows["ternary"][k] and rows[name].get(k) is not None else None)
            for k in rows["ternary"]}
    return rows


def ecp5_comparison(config, *, board, device=DEFAULT_DEVICE, out, freq_mhz, t0, gen=None,
                    force=False):
    """Build the ternary array and the int8 baseline array of the same shape on the same ECP5,
    the int8 one twice: multipliers in MULT18X18D (``synth_ecp5``'s default: row ``int8``) and
    in LUTs (``synth_ecp5 -nodsp``: row ``int8_lut``); return the table.

    Each row: LUT4, CCU2C, FF, LUT4 sites and FFs as nextpnr places them (``TRELLIS_COMB``,
    ``TRELLIS_FF``), DP16KD, MULT18X18D, Fmax, GOPS, MACs per device (copies of the array the
    device holds, :func:`hw.build.ecp5.arrays_per_device`, times its MACs), energies. An int8
    array that does not fit the device is reported from synthesis (``fits_device`` false).
    """
    out = Path(out)
    common = {"board": board, "device": device, "freq_mhz": freq_mhz, "t0": t0, "seeds": 1}
    tern = build_ecp5(config, top="array", out=out / "array", force=force, **common)
    base = build_ecp5(config, top="baseline", out=out / "baseline", allow_mul=True,
                      unfit_ok=True, **common)
    base_lut = build_ecp5(config, top="baseline", out=out / "baseline_lut", allow_mul=True,
                          use_dsp=False, unfit_ok=True, **common)
    rows = _device_table({"ternary": tern, "int8": base, "int8_lut": base_lut},
                         ("LUT4", "CCU2C", "FF", "TRELLIS_COMB", "TRELLIS_FF", "DP16KD",
                          "MULT18X18D"), config, gen)
    rows["assumptions"] = [
        f"the three arrays {config.rows}x{config.cols} in the same serial-in/XOR-out harness "
        f"on the same {tern['title'].rsplit('(', 1)[-1].rstrip(')')}, nextpnr-ecp5 --freq "
        f"{freq_mhz}, seed 1 (ECP5 figures); generic gates and activity energy are of the "
        "bare arrays, device-independent (the int8_lut row repeats the int8 ones)",
        "int8: multipliers in MULT18X18D (synth_ecp5); int8_lut: synth_ecp5 -nodsp",
        "TRELLIS_COMB / TRELLIS_FF: LUT4 sites / FFs as nextpnr placed them (a LUT4, half a "
        "CCU2C, route-through LUTs); from synthesis (LUT4 + 2 CCU2C + 2 DPR16X4) if not placed",
        "macs_per_device: copies of the array the device holds (min available // used over "
        "LUT4 sites, FF, DP16KD, MULT18X18D; harness included) x MACs per copy",
        "pJ/MAC: operation counts (hw.build.energy.mac_ops) x per-op energies and the 45 nm "
        "gate model; no ECP5 power figures (none verified): not FPGA energy",
    ]
    return rows


def generic_row(gen):
    """Comparison-table fields of one side of :func:`generic_comparison`."""
    area, act = gen["area"], gen.get("activity")
    return {"gates": area["gates"], "gate_ff": area["flip_flops"],
            "nand2_eq": area["nand2_equivalent"], "transistors": area["transistors"],
            "pj_per_mac_gate_model_45nm": act["pj_per_mac"] if act else None}


def generic_comparison(config, *, out, activity=True, t0):
    """Generic gates of the ternary array and the int8 baseline, and their activity energy.

    Both arrays are synthesized to CMOS gates (:func:`hw.build.generic.synth_generic`); with
    ``activity`` a real layer of the shipped model runs on both gate-level netlists (checked
    against the golden model) and the toggles give pJ per MAC (:mod:`hw.build.activity`).
    """
    check_size(config)
    out = Path(out)
    result = {}
    if activity:
        stage("activity: calibrate the unit energy (32-bit adder = Horowitz 0.1 pJ)", t0)
        result["calibration"] = calibrate_unit_energy(out / "calibration")
        layers, source = real_layers(act_bits=config.act_bits)
        result["layers"] = layers  # numpy arrays, for engine_energy (not reported)
        result["workload"] = {"source": source, "layers": {
            name.split(".")[-2]: {"tokens": int(xq.shape[0]), "m": int(w.shape[0]),
                                  "k": int(w.shape[1])} for name, (xq, w) in layers.items()}}
    for name, cls in (("ternary", MacArray), ("int8", Int8MacArray)):
        dut = cls.from_config(config)
        stage(f"generic gates: {name} array {config.rows}x{config.cols} (yosys abc -g cmos2)",
              t0)
        side = {"area": synth_generic(dut, out / name)}
        if activity:
            side["activity"], side["activity_layers"] = array_activity(
                out / name / "generic.json", name, config, layers,
                result["calibration"]["e_unit_pj"], dut.latency, t0)
        result[name] = side
    return result



def add_comparison(report, config, *, target, top, board, out, freq_mhz, activity, force, t0,
                   device=DEFAULT_DEVICE):
    """Add the ternary-vs-int8 comparison to ``report`` (of top ``top``, built for ``target``).

    The sections ``comparison`` (:func:`ice40_comparison` on the iCE40,
    :func:`ecp5_comparison` on the ECP5 ``device``, else the generic and op-count columns
    alone), ``energy`` and ``energy_per_layer``
    (:func:`hw.build.energy.energy_tables`); with ``activity`` also ``activity``,
    ``activity_per_layer`` and ``activity_calibration``, and for an engine top (``engine`` or
    ``fpga``) the whole engine's ``engine_activity`` (:func:`hw.build.activity.engine_energy`
    on the netlist :func:`hw.build.generic.build_generic` wrote to ``out / "generic_engine"``).
    Their notes go to ``assumptions``; ``comparison.png`` (:func:`hw.build.plot.plot`) to
    ``out``.
    """
    out = Path(out)
    core = "engine" if top == "fpga" else top
    gen = generic_comparison(config, out=out / "generic", activity=activity, t0=t0)
    if target == "ice40":
        table = ice40_comparison(config, board=board, out=out, freq_mhz=freq_mhz, t0=t0,
                                 gen=gen, force=force)
    elif target == "ecp5":
        table = ecp5_comparison(config, board=board, device=device, out=out, freq_mhz=freq_mhz,
                                t0=t0, gen=gen, force=force)
    else:
        table = {name: {**generic_row(gen[name]), **opcount_energies(name, config.cols)}
                 for name in ("ternary", "int8")}
        table["ratio_int8_over_ternary"] = {
            k: (table["int8"][k] / v if v and table["int8"][k] is not None else None)
            for k, v in table["ternary"].items()}
    notes = table.pop("assumptions", [])
    report["comparison"] = table
    measured = ({name: {short: r["pj_per_mac"]
                        for short, r in gen[name]["activity_layers"].items()}
                 for name in ("ternary", "int8")} if "activity" in gen["ternary"] else None)
    eng = None
    if measured and core == "engine":
        eng = engine_energy(config, out / "generic_engine" / "generic.json", gen, t0)
    report["energy"], report["energy_per_layer"] = energy_tables(
        config, table, measured,
        {k: r["pj_per_mac"] for k, r in eng["layers"].items()} if eng else None)
    if eng:
        t = eng["total"]
        report["energy"]["engine_pj_per_mac_gate_model_45nm"] = {
            "ternary": t["pj_per_mac"], "logic_only": t["logic_pj_per_mac"],
            "memory_share": t["memory_pj"] / t["energy_pj"]}
        report["engine_activity"] = t
        notes.append(
            "engine activity: the whole BitLinearEngine gate netlist runs the same layers "
            "through its streams (cmd, act, one weight pass per token, result), results "
            "checked == golden; energy = gate toggles as above + memory accesses at "
            f"{SRAM_PJ_PER_64BIT} pJ per 64 bits (Horowitz 45 nm 8 KB SRAM, NOT "
            "verified, not scaled to the 1 KB buffer); the weight stream's source "
            "(SPRAM, host link) is outside the engine and not counted")
    if measured:
        report["activity"] = {
            name: {k: v for k, v in gen[name]["activity"].items()}
            for name in ("ternary", "int8")}
        report["activity_per_layer"] = {
            short: {f"{name}_{k}": gen[name]["activity_layers"][short][k]
                    for name in ("ternary", "int8")
                    for k in ("pj_per_mac", "energy_pj", "cycles")}
            for short in gen["ternary"]["activity_layers"]}
        if eng:
            for short, r in eng["layers"].items():
                report["activity_per_layer"][short].update({
                    "engine_pj_per_mac": r["pj_per_mac"],
                    "engine_logic_pj_per_mac": r["logic_pj_per_mac"],
                    "engine_cycles": r["cycles"]})
        report["activity_calibration"] = dict(gen["calibration"])
        notes += activity_notes(gen)
    notes.append("pJ/MAC op-count: hw.build.energy.mac_ops x per-op energies; Horowitz 45 nm "
                 "32-bit add 0.1 / mult 3.1 pJ verified, 8-bit add 0.03 / mult 0.2 pJ "
                 "and BitNet b1.58 7 nm values NOT verified")
    if report.get("energy_per_layer"):
        notes.append("energy per layer: pJ/MAC x M*K of each BitLinear projection of "
                     "model/data/bitnet_kjv.npz (lm_head is not ternary: not counted); "
                     "activity pJ/MAC as measured on the same projection of block 0")
    report.setdefault("assumptions", []).extend(notes)
    plot(out, table, gen, eng["total"] if eng else None)
