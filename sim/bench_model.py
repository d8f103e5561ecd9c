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
import os
import platform
import resource
import sys
from pathlib import Path

import numpy as np

from model.accel import AccelConfig
from sim.layer_run import DEFAULT_CONFIG
from sim.reports import write_report
from sim.runner import ROOT
from sim.token_bench import (
    DEFAULT_BANDWIDTHS,
    PUBLISHED_CPU_MS,
    by_projection,
    markdown,
    plot,
    project,
    run_token,
)

__all__ = ["main"]

DEFAULT_CHECKPOINT = ROOT / "build" / "bitnet_2b4t_synthetic"


def main(argv=None) -> int:
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
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="driver processes simulating calls side by side (default: 2, or 1 "
                         "on a one-core machine)")
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
    if args.workers < 1:
        ap.error("--workers: want at least 1")
    from model.checkpoint import CheckpointError, open_checkpoint
    from model.checkpoint.synthetic import BITNET_2B4T, write_hf
    from sim.build_report import read_build
    from sim.inference import RunModelError, check_engine_fits

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

    run = run_token(reader, ids, config, progress, args.workers)
    print(file=sys.stderr)
    rep = {"checkpoint": str(path),
           "model": f"{c.n_layers} layers, d={c.d_model}, ffn={c.d_ff}, heads "
                    f"{c.n_heads}/{c.n_kv_heads}, vocab {c.vocab_size}",
           "accel_config": config.to_dict(), "tokens_in": ids, "clock_source": source,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                      f"{platform.python_version()}",
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "run": run, "by_projection": by_projection(run["calls"]),
           "projection": project(run["calls"], config, clock, bws),
           "published_cpu_ms_per_token": PUBLISHED_CPU_MS}
    md = markdown(rep)
    outdir = write_report(ROOT / "build", args.out, rep, md)
    plot(rep, outdir / f"{args.out}.png")
    print(md)
    print(f"wrote build/{args.out}.json, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
