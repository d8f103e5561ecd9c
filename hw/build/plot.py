"""``comparison.png``: area and energy of the ternary array beside the int8 baseline array."""

from pathlib import Path

from .generic import CMOS_TRANSISTORS

__all__ = ["plot"]


def plot(out, table, generic=None, engine=None):
    """Write ``comparison.png``: area and energy breakdown, ternary vs int8 array.

    Panels: iCE40 cells (when built for the device), generic CMOS area by cell type (when
    ``generic`` is given), energy per MAC by method (activity-based split into data and clock;
    with ``engine``, the totals of :func:`hw.build.activity.engine_energy`, a bar of the whole
    ternary engine split into logic and activation memory).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    kinds = ("ternary", "int8")
    panels = (["ice40"] if "LUT4" in table["ternary"] else []) + (
        ["gates"] if generic else []) + ["energy"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == "ice40":        # the device's cells: iCE40, or ECP5 with int8 in LUTs too
            keys = [k for k in ("LUT4", "CCU2C", "FF", "SB_MAC16", "MULT18X18D")
                    if k in table["ternary"]]
            names = [n for n in (*kinds, "int8_lut") if n in table]
            width = 0.8 / len(names)
            for i, name in enumerate(names):
                ax.bar([x + width * i for x in range(len(keys))],
                       [table[name][k] or 0 for k in keys], width=width, label=name)
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))], keys)
            ax.set_title("iCE40 cells" if "SB_MAC16" in keys else "ECP5 cells")
        elif panel == "gates":
            # stacked transistors per cell type
            types = sorted({t for k in kinds for t in generic[k]["area"]["cells"]
                            if t != "$mem_v2"})
            for i, name in enumerate(kinds):
                bottom = 0.0
                for t in types:
                    n = generic[name]["area"]["cells"].get(t, 0) * CMOS_TRANSISTORS[t] / 1000
                    ax.bar(i, n, bottom=bottom, width=0.6, color=f"C{types.index(t)}",
                           label=t.strip("$_") if i == 0 else None)
                    bottom += n
            ax.set_xticks(range(len(kinds)), kinds)
            ax.set_title("CMOS transistors (thousands)")
        else:
            methods = [k for k in table["ternary"] if k.startswith("pj_per_mac")
                       and table["ternary"][k] is not None]
            for i, name in enumerate(kinds):
                xs = [x + 0.4 * i for x in range(len(methods))]
                vals = [table[name][k] for k in methods]
                if generic and generic[name].get("activity"):
                    act = generic[name]["activity"]
                    j = methods.index("pj_per_mac_gate_model_45nm")
                    clock = act["clock_pj"] / act["useful_macs"]
                    vals[j] -= clock
                    ax.bar(xs[j], clock, bottom=vals[j], width=0.4, color="0.6",
                           label="clock (gate model 45 nm)" if i == 0 else None)
                ax.bar(xs, vals, width=0.4, label=name, color=f"C{i}")
            labels = [k.removeprefix("pj_per_mac_") for k in methods]
            if engine:
                x = len(methods)
                logic = engine["logic_pj_per_mac"]
                mem = engine["memory_pj"] / engine["useful_macs"]
                ax.bar(x, logic, width=0.4, color="C0")
                ax.bar(x, mem, bottom=logic, width=0.4, color="C2",
                       label="engine act. SRAM (10 pJ/64 b)")
                ax.set_yscale("log")
                labels.append("engine")
            ax.set_xticks([x + 0.2 for x in range(len(labels))], labels)
            ax.set_title("energy per MAC (pJ" + (", log)" if engine else ")"))
        if panel == "energy":
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
        else:
            ax.legend(fontsize=7)
    fig.suptitle("ternary array vs int8 multiply-accumulate array, same shape", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(out) / "comparison.png", dpi=100)
    plt.close(fig)
