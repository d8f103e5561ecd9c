"""A whole token of a real-size model through the simulated engine, and what it projects to.

``python -m sim.bench_model`` runs one forward pass of a BitNet checkpoint (default: a
2B4T-shaped one generated with :mod:`model.checkpoint.synthetic` into ``build/``, 30 layers,
210 BitLinear calls) with every BitLinear product computed by the engine's Verilog under the
Verilator-native driver (:class:`sim.native.NativeEngine`), each call checked bit for bit
against the golden model and its cycles against ``model.accel_cycles.cycles``. The checkpoint
is read lazily, a layer at a time.

From the measured cycles it projects a decode token on the engine: cycles and weight bytes per
token, time at the clock, and tokens/s for each weight bandwidth given, each projection marked
compute-bound (the engine's cycles are the limit) or bandwidth-bound (the weight stream is). It
sets the published CPU figure beside it: BitNet b1.58 2B4T decodes in 29 ms per token on a CPU
with bitnet.cpp (Ma et al., "BitNet b1.58 2B4T Technical Report", arXiv 2504.12285, the
comparison table of its results section).

Writes ``build/bench_model.json``, ``build/bench_model.md`` and ``build/bench_model.png``.
Assumptions, stated in the report too: the engine runs the projections one after another with
one weight pass per token (no weight reuse across tokens), the weight stream is the engine's
``tq1`` beats read once per token at the given bandwidth, the non-BitLinear work (norms,
attention, the LM head) is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

from model.accel import AccelConfig
from sim.runner import ROOT

__all__ = ["main", "project", "run_token"]

DEFAULT_CHECKPOINT = ROOT / "build" / "bitnet_2b4t_synthetic"
#: CPU decoding time per token of BitNet b1.58 2B4T with bitnet.cpp (arXiv 2504.12285).
PUBLISHED_CPU_MS = 29.0
#: Weight bandwidths of the projection, MB/s: a QSPI PSRAM, HyperRAM, one DDR3-1600 x16 channel.
DEFAULT_BANDWIDTHS = (100.0, 333.0, 3200.0)


def run_token(reader, tokens, config: AccelConfig, progress=None) -> dict:
    """One forward pass of ``tokens`` with every BitLinear on the native engine; the calls'
    figures. Raises :class:`sim.native.NativeEngineError` on any accumulator or cycle
    mismatch."""
    from model.packing import pack_layer_stream
    from model.transformer import param_shapes
    from sim.native import NativeEngine, check_call

    shapes = param_shapes(reader.config)
    total_calls = sum(1 for _, b in shapes.values() if b)
    calls = []
    t_start = time.perf_counter()
    with NativeEngine(config) as eng:
        def hook(name, xq, trits):
            t0 = time.perf_counter()
            stream = pack_layer_stream(trits, config)
            t1 = time.perf_counter()
            acc, cyc = eng.run_layer(xq, stream=stream, shape=trits.shape)
            t2 = time.perf_counter()
            check_call(config, xq, trits, acc, cyc, f"{name}: ")
            m, k = trits.shape
            t = xq.shape[0]
            calls.append({"name": name, "m": m, "k": k, "tokens": t, "cycles": cyc,
                          "weight_bytes": t * config.beats(m, k) * config.bytes_per_beat,
                          "sim_seconds": eng.last_sim_seconds, "call_seconds": t2 - t1,
                          "pack_seconds": t1 - t0})
            if progress is not None:
                progress(len(calls), total_calls, time.perf_counter() - t_start)
            return acc

        reader.transformer(matmul=hook).forward(np.asarray(tokens))
    wall = time.perf_counter() - t_start
    return {"calls": calls, "wall_seconds": wall,
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


def _by_projection(calls):
    out = {}
    for c in calls:
        p = c["name"].split(".")[-2]
        row = out.setdefault(p, {"m": c["m"], "k": c["k"], "calls": 0, "cycles": 0,
                                 "weight_bytes": 0})
        row["calls"] += 1
        row["cycles"] += c["cycles"]
        row["weight_bytes"] += c["weight_bytes"]
    return out


def _markdown(rep: dict) -> str:
    p, r = rep["projection"], rep["run"]
    lines = [
        "# A whole token through the simulated engine", "",
        f"Checkpoint `{rep['checkpoint']}` ({rep['model']}); engine `{rep['accel_config']}`; "
        f"{rep['machine']}.", "",
        f"- {len(r['calls'])} BitLinear calls, every accumulator equal to the golden model and "
        "every cycle count equal to the cycle model.",
        f"- Simulated {p['cycles_per_token']:,} engine cycles in {r['sim_seconds']:.1f} s of "
        f"simulation ({p['cycles_per_token'] / r['sim_seconds'] / 1e6:.2f} M cycles/s); the "
        f"whole pass took {r['wall_seconds']:.1f} s (calls with pipe transfer "
        f"{r['call_seconds']:.1f} s, packing the weight streams {r['pack_seconds']:.1f} s, the "
        "golden model's own float work and lazy reading the rest); peak RSS "
        f"{rep['peak_rss_mb']:.0f} MB.", "",
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


def _plot(rep: dict, path: Path) -> None:
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


def main(argv=None) -> int:
    from sim.run_layer import DEFAULT_CONFIG

    ap = argparse.ArgumentParser(prog="python -m sim.bench_model",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help=f"model checkpoint (default: {DEFAULT_CHECKPOINT}, generated if "
                         "absent)")
    ap.add_argument("--layers", type=int, default=30,
                    help="layers of the generated default checkpoint (default 30, as 2B4T)")
    ap.add_argument("--tokens-in", default="1", help="token ids of the pass (default: 1)")
    ap.add_argument("--config",
                    help=f"engine AccelConfig JSON (default {DEFAULT_CONFIG.to_json()})")
    ap.add_argument("--clock", type=float, default=None,
                    help="MHz (default: the engine build's Fmax, else the 48 MHz board target)")
    ap.add_argument("--bandwidth", default=",".join(f"{b:g}" for b in DEFAULT_BANDWIDTHS),
                    help="weight bandwidths in MB/s, comma-separated")
    ap.add_argument("--out", default="bench_model", help="report name under build/")
    args = ap.parse_args(argv)
    try:
        config = AccelConfig.from_json(args.config) if args.config else DEFAULT_CONFIG
        bws = [float(b) for b in args.bandwidth.split(",") if b]
        ids = [int(t) for t in args.tokens_in.split(",") if t]
    except (ValueError, TypeError) as e:
        ap.error(str(e))
    if not bws or any(not (np.isfinite(b) and b > 0) for b in bws):
        ap.error("--bandwidth: want positive MB/s values")
    if args.clock is not None and not (np.isfinite(args.clock) and args.clock > 0):
        ap.error("--clock: want MHz > 0")
    if not ids:
        ap.error("--tokens-in: no token ids")
    from model.checkpoint import CheckpointError, open_checkpoint
    from model.checkpoint.synthetic import BITNET_2B4T, write_hf
    from sim.run_model import RunModelError, check_engine_fits, read_build

    path = args.checkpoint
    if path is None:
        path = DEFAULT_CHECKPOINT if args.layers == 30 else \
            DEFAULT_CHECKPOINT.with_name(f"{DEFAULT_CHECKPOINT.name}_{args.layers}")
        if not (path / "config.json").exists():
            print(f"generating {path} ({args.layers} layers)...", file=sys.stderr)
            write_hf(path, BITNET_2B4T.replace(n_layers=args.layers), seed=0)
    try:
        reader = open_checkpoint(path)
        c = reader.config
        if min(ids) < 0 or max(ids) >= c.vocab_size or len(ids) > c.max_seq:
            raise CheckpointError(f"--tokens-in: ids in [0, {c.vocab_size}), at most "
                                  f"{c.max_seq} of them")
        check_engine_fits(config, c)
    except (CheckpointError, RunModelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    clock, source = args.clock, "--clock"
    if clock is None:
        engine_build = read_build(ROOT / "build" / "ice40-engine" / "report.json")
        if engine_build["fmax_mhz"] and engine_build["config"] == config:
            clock, source = engine_build["fmax_mhz"], "build/ice40-engine/report.json Fmax"
        else:
            clock, source = 48.0, "the board's 48 MHz clock (no engine build of this config)"

    def progress(done, total, seconds):
        eta = seconds / done * (total - done)
        print(f"\r{done}/{total} BitLinear calls, {seconds:.0f} s, ETA {eta:.0f} s ",
              end="", file=sys.stderr, flush=True)

    run = run_token(reader, ids, config, progress)
    print(file=sys.stderr)
    rep = {"checkpoint": str(path),
           "model": f"{c.n_layers} layers, d={c.d_model}, ffn={c.d_ff}, heads "
                    f"{c.n_heads}/{c.n_kv_heads}, vocab {c.vocab_size}",
           "accel_config": config.to_dict(), "tokens_in": ids, "clock_source": source,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                      f"{platform.python_version()}",
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "run": run, "by_projection": _by_projection(run["calls"]),
           "projection": project(run["calls"], config, clock, bws),
           "published_cpu_ms_per_token": PUBLISHED_CPU_MS}
    outdir = ROOT / "build"
    outdir.mkdir(exist_ok=True)
    (outdir / f"{args.out}.json").write_text(json.dumps(rep, indent=1) + "\n")
    md = _markdown(rep)
    (outdir / f"{args.out}.md").write_text(md)
    _plot(rep, outdir / f"{args.out}.png")
    print(md)
    print(f"wrote build/{args.out}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
