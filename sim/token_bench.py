"""A whole token of a real-size model on the native engine, and the decode figures it projects.

:func:`run_token` runs one forward pass with every BitLinear product on the engine's Verilog
under the Verilator-native driver (:class:`sim.native.NativeEngine`), each call checked bit for
bit against the golden model and its cycles against ``model.accel_cycles.cycles``.
:func:`project` turns the measured calls into per-token figures at a clock and weight
bandwidths (compute-bound or bandwidth-bound); :func:`markdown` and :func:`plot` are the
report of ``python -m sim.bench_model`` beside the published CPU figure.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from model.accel import AccelConfig

__all__ = ["DEFAULT_BANDWIDTHS", "PUBLISHED_CPU_MS", "by_projection", "markdown", "plot",
           "project", "run_token"]

#: CPU decoding time per token of BitNet b1.58 2B4T with bitnet.cpp (arXiv 2504.12285).
PUBLISHED_CPU_MS = 29.0
#: Weight bandwidths of the projection, MB/s: a QSPI PSRAM, HyperRAM, one DDR3-1600 x16 channel.
DEFAULT_BANDWIDTHS = (100.0, 333.0, 3200.0)


def run_token(reader, tokens, config: AccelConfig, progress=None, workers: int = 2) -> dict:
    """One forward pass of ``tokens`` with every BitLinear on the native engine; the calls'
    figures. Raises :class:`sim.native.NativeEngineError` on any accumulator or cycle
    mismatch.

    The calls run on a :class:`sim.native.NativePool` of ``workers`` driver processes, so the
    engine simulates while the golden model goes on: each hook returns the golden product
    (``model.bitlinear.ternary_matmul``) at once and the pool checks the engine's accumulators
    against it. The pass fails unless all of them are equal, so a pass that completes is
    exactly the pass with the engine's accumulators.
    """
    from model.bitlinear import ternary_matmul
    from model.transformer import param_shapes
    from sim.native import NativePool

    shapes = param_shapes(reader.config)
    total_calls = sum(1 for _, b in shapes.values() if b)
    t_start = time.perf_counter()
    with NativePool(config, workers) as pool:
        def hook(name, xq, trits):
            want = ternary_matmul(xq, trits, config.act_bits)
            n = pool.submit(name, xq, trits, want=want) + 1
            if progress is not None:
                progress(n, total_calls, time.perf_counter() - t_start)
            return want

        reader.transformer(matmul=hook).forward(np.asarray(tokens))
        t_golden = time.perf_counter() - t_start
        done = pool.results()
        queue_size = pool.queue_size
    wall = time.perf_counter() - t_start
    calls = [{**{key: v for key, v in c.items() if key != "acc"},
              "weight_bytes": c["tokens"] * config.beats(c["m"], c["k"]) * config.bytes_per_beat}
             for c in done]
    return {"calls": calls, "wall_seconds": wall, "workers": workers, "queue_size": queue_size,
            "golden_seconds": t_golden,
            "sim_seconds": sum(c["sim_seconds"] for c in calls),
            "call_seconds": sum(c["call_seconds"] for c in calls),
            "pack_seconds": sum(c["pack_seconds"] for c in calls)}


def project(calls: list[dict], config: AccelConfig, clock_mhz: float,
            bandwidths_mb_s) -> dict:
    """Per-token figures from measured calls of one token, at a clock and weight bandwidths."""
    cycles = sum(c["cycles"] for c in calls)
    wbytes = sum(c["weight_bytes"] for c in calls)
    compute_s = cycles / (clock_mhz * 1e6)
    need = config.bytes_per_beat * clock_mhz          # MB/s the engine takes at full rate
    rows = []
    for bw in bandwidths_mb_s:
        memory_s = wbytes / (bw * 1e6)
        bound = "compute" if compute_s >= memory_s else "bandwidth"
        rows.append({"bandwidth_mb_s": bw, "seconds_per_token": max(compute_s, memory_s),
                     "tokens_per_s": 1 / max(compute_s, memory_s), "bound": bound})
    return {"cycles_per_token": cycles, "weight_bytes_per_token": wbytes,
            "clock_mhz": clock_mhz, "compute_seconds_per_token": compute_s,
            "compute_tokens_per_s": 1 / compute_s, "engine_bandwidth_mb_s": need,
            "bandwidths": rows}


def by_projection(calls):
    """The calls summed per projection (``q_proj``, ..., ``down_proj``)."""
    out = {}
    for c in calls:
        p = c["name"].split(".")[-2]
        row = out.setdefault(p, {"m": c["m"], "k": c["k"], "calls": 0, "cycles": 0,
                                 "weight_bytes": 0})
        row["calls"] += 1
        row["cycles"] += c["cycles"]
        row["weight_bytes"] += c["weight_bytes"]
    return out


def markdown(rep: dict) -> str:
    """The Markdown report of a ``python -m sim.bench_model`` run."""
    p, r = rep["projection"], rep["run"]
    lines = [
        "# A whole token through the simulated engine", "",
        f"Checkpoint `{rep['checkpoint']}` ({rep['model']}); engine `{rep['accel_config']}`; "
        f"{rep['machine']}.", "",
        f"- {len(r['calls'])} BitLinear calls, every accumulator equal to the golden model and "
        "every cycle count equal to the cycle model.",
        f"- Simulated {p['cycles_per_token']:,} engine cycles in {r['sim_seconds']:.1f} s of "
        f"simulation summed over the calls ({p['cycles_per_token'] / r['sim_seconds'] / 1e6:.2f}"
        f" M cycles/s per driver process). The whole pass took {r['wall_seconds']:.1f} s "
        f"wall: the golden model's pass (reading the layers lazily, its float work and its "
        f"integer products) with {r.get('workers', 1)} driver process(es) simulating the calls "
        f"beside it (it waits when {r.get('queue_size', 0)} calls wait for them); the golden "
        f"pass ended at {r.get('golden_seconds', 0):.1f} s. Summed over the calls: "
        f"{r['call_seconds']:.1f} s in the calls with the pipe transfer, "
        f"{r['pack_seconds']:.1f} s packing the weight streams. Peak RSS "
        f"{rep['peak_rss_mb']:.0f} MB (the Python process).", "",
        "| projection | M x K | calls | cycles | weight bytes |", "|---|---|---|---|---|"]
    for name, row in rep["by_projection"].items():
        lines.append(f"| {name} | {row['m']} x {row['k']} | {row['calls']} | "
                     f"{row['cycles']:,} | {row['weight_bytes']:,} |")
    lines += [
        "", f"## Projection at {p['clock_mhz']:.2f} MHz ({rep['clock_source']})", "",
        f"Cycles per token {p['cycles_per_token']:,}: {p['compute_seconds_per_token'] * 1e3:.1f} "
        f"ms, {p['compute_tokens_per_s']:.2f} tokens/s if the weights arrive at the engine's "
        f"rate ({p['engine_bandwidth_mb_s']:.0f} MB/s: {rep['accel_config']['rows']} x "
        f"{rep['accel_config']['cols']} trits per cycle in "
        f"{AccelConfig.from_dict(rep['accel_config']).bytes_per_beat} bytes). Weight bytes per "
        f"token {p['weight_bytes_per_token'] / 1e6:.1f} MB.", "",
        "| weight bandwidth | ms / token | tokens/s | bound |", "|---|---|---|---|"]
    for row in p["bandwidths"]:
        lines.append(f"| {row['bandwidth_mb_s']:.0f} MB/s | {row['seconds_per_token'] * 1e3:.1f}"
                     f" | {row['tokens_per_s']:.2f} | {row['bound']} |")
    lines += [
        f"| published: bitnet.cpp on a CPU (arXiv 2504.12285) | {PUBLISHED_CPU_MS:.0f} | "
        f"{1e3 / PUBLISHED_CPU_MS:.1f} | - |", "",
        "Assumptions: one weight pass per token (decode, no reuse across tokens); projections "
        "run one after another; only the BitLinear products are counted (norms, attention, "
        "the LM head and the embedding are not); the weights are the engine's tq1 stream, "
        "read once per token. The published figure is a whole model on a CPU, everything "
        "included.", ""]
    return "\n".join(lines)


def plot(rep: dict, path: Path) -> None:
    """The decode roofline of the report: tokens/s against weight bandwidth, to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = rep["projection"]
    bws = np.logspace(1, 4.5, 60)
    tps = [1 / max(p["compute_seconds_per_token"], p["weight_bytes_per_token"] / (b * 1e6))
           for b in bws]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.loglog(bws, tps, label=f"engine {rep['accel_config']['rows']}x"
                              f"{rep['accel_config']['cols']} at {p['clock_mhz']:.1f} MHz")
    for row in p["bandwidths"]:
        ax.plot(row["bandwidth_mb_s"], row["tokens_per_s"], "o")
    ax.axhline(1e3 / PUBLISHED_CPU_MS, ls="--", color="gray",
               label="bitnet.cpp CPU, 29 ms/token (arXiv 2504.12285)")
    ax.axvline(p["engine_bandwidth_mb_s"], ls=":", color="gray", label="engine's full rate")
    ax.set_xlabel("weight bandwidth (MB/s)")
    ax.set_ylabel("tokens/s (BitLinear only)")
    ax.set_title(f"Decode roofline per token: {rep['model'].split(', vocab')[0]}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
