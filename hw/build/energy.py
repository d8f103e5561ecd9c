"""Operation-count energy model: ternary MAC vs int8 multiply-accumulate.

Per-operation energies (pJ) and their sources. ``verified`` records whether the value was checked
against a source during this project (see docs/build.md); unverified values are reported as such.

- Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V. 32-bit int add 0.1 pJ and
  32-bit int mult 3.1 pJ verified via a secondary table that cites it (PMC8934428, Table 3);
  8-bit add 0.03 pJ and 8-bit mult 0.2 pJ are the commonly quoted values, not verified here.
- BitNet b1.58 (Ma et al., arXiv 2402.17764), 7 nm INT8 add / mult: not verified here.

:func:`energy_tables` makes the report's energy sections: per-MAC energies (these, and the
activity-based ones of :mod:`hw.build.activity`) times the MACs of the shipped model's layers.
"""

from .workload import model_layers

__all__ = ["ENERGY_TABLES", "mac_ops", "energy_per_mac", "opcount_energies", "layer_energy",
           "energy_tables"]

ENERGY_TABLES = {
    "horowitz45": {
        "source": "Horowitz ISSCC 2014, 45 nm",
        "add8": (0.03, False), "add32": (0.1, True), "mul8": (0.2, False), "mul32": (3.1, True),
    },
    "bitnet7": {
        "source": "BitNet b1.58 arXiv 2402.17764, 7 nm",
        "add8": (0.007, False), "mul8": (0.07, False),
    },
}


def mac_ops(kind, cols):
    """Operations per MAC of an array row of ``cols`` lanes.

    A ternary lane is a select (counted free) feeding the row's adder tree: ``cols - 1`` adds per
    ``cols`` MACs at about 8..(8 + log2 cols) bits, counted as 8-bit adds, plus one accumulator add
    per ``cols`` MACs, counted as a 32-bit add. The int8 baseline adds one 8-bit multiply per MAC.

    Returns
    -------
    dict
        ``{"add8": n, "add32": n, "mul8": n}`` per MAC.
    """
    if kind not in ("ternary", "int8"):
        raise ValueError(f"kind must be 'ternary' or 'int8', got {kind!r}")
    if not isinstance(cols, int) or cols < 1:
        raise ValueError(f"cols must be an int >= 1, got {cols!r}")
    ops = {"add8": (cols - 1) / cols, "add32": 1 / cols, "mul8": 0.0}
    if kind == "int8":
        ops["mul8"] = 1.0
    return ops


def energy_per_mac(kind, cols, table="horowitz45"):
    """Energy (pJ) per MAC from :func:`mac_ops` and ``ENERGY_TABLES[table]``.

    32-bit adds fall back to the table's 8-bit add scaled by 4 (linear in width) when the table
    has no 32-bit entry.
    """
    tab = ENERGY_TABLES[table]
    ops = mac_ops(kind, cols)
    add32 = tab["add32"][0] if "add32" in tab else 4 * tab["add8"][0]
    return ops["add8"] * tab["add8"][0] + ops["add32"] * add32 + ops["mul8"] * tab["mul8"][0]


def opcount_energies(kind, cols):
    """``{"pj_per_mac_<table>": pJ}``: :func:`energy_per_mac` for every table of
    :data:`ENERGY_TABLES` (the comparison table's op-count columns)."""
    return {f"pj_per_mac_{table}": energy_per_mac(kind, cols, table) for table in ENERGY_TABLES}


def layer_energy(kind, cols, m, k, table="horowitz45"):
    """Energy (pJ) of one BitLinear ``M x K`` matrix-vector product (``M * K`` MACs)."""
    if m < 1 or k < 1:
        raise ValueError(f"layer sizes must be >= 1, got M={m}, K={k}")
    return m * k * energy_per_mac(kind, cols, table)


def energy_tables(config, table, measured=None, engine=None):
    """The ``energy`` summary and ``energy_per_layer`` sections from a comparison table.

    Per-MAC energies (op-count per table, activity-based when measured) times the MACs of each
    BitLinear layer of the shipped model; ``per token`` sums every BitLinear layer once.
    ``measured`` (``{kind: {projection: pJ/MAC}}``, from the activity runs of block 0) replaces
    the average gate-model pJ/MAC for the projections it names, in every block. ``engine``
    (``{projection: pJ/MAC}`` of the whole engine with its memory) adds an
    ``engine_gate_model_45nm`` column.
    """
    methods = [k.removeprefix("pj_per_mac_") for k in table["ternary"]
               if k.startswith("pj_per_mac_") and table["ternary"][k] is not None]
    summary = {}
    for method in methods:
        t, i = table["ternary"][f"pj_per_mac_{method}"], table["int8"][f"pj_per_mac_{method}"]
        summary[f"pj_per_mac_{method}"] = {"ternary": t, "int8": i,
                                           "int8_over_ternary": i / t if t and i else None}
    layers = model_layers()
    per_layer = {}
    if layers:
        total = {}
        for short, m, k, n in layers:
            row = {"M": m, "K": k, "count": n, "macs": m * k}
            for method in methods:
                for kind in ("ternary", "int8"):
                    pj = table[kind][f"pj_per_mac_{method}"]
                    if method == "gate_model_45nm" and measured and short in measured.get(kind, {}):
                        pj = measured[kind][short]
                    row[f"{kind}_{method}_pj"] = m * k * pj if pj is not None else None
                    total[f"{kind}_{method}_pj"] = total.get(f"{kind}_{method}_pj", 0.0) + (
                        n * m * k * pj if pj is not None else 0.0)
            if engine and short in engine:
                row["engine_gate_model_45nm_pj"] = m * k * engine[short]
                total["engine_gate_model_45nm_pj"] = total.get("engine_gate_model_45nm_pj", 0.0) + (
                    n * m * k * engine[short])
            per_layer[short] = row
        total["macs"] = sum(n * m * k for _s, m, k, n in layers)
        total["count"] = sum(n for *_x, n in layers)
        per_layer["per token (all BitLinear layers)"] = total
    return summary, per_layer
