"""How much of the weight stream the a4.8 model's zero activations make unnecessary, per shape.

``python -m sim.bench_sparsity`` runs the golden a4.8 model (``model/data/bitnet_kjv_a48.npz``
by default) over validation windows of its corpus and records every BitLinear call's activation
codes. For each array shape given (default the UP5K shapes of 40 trits per beat: 5x8, 10x4,
20x2, 40x1) it counts, per decode token, the weight beats a reader must fetch when it leaves out

* every beat ``(mt, kt)`` whose activation chunk ``kt`` is all zero
  (:func:`model.packing.zero_chunks`: the down projection's ReLU^2 zeros, the o projection's
  top-50 % mask, the rare zeros of the INT4 inputs), and
* with ``--row-skip`` (default on) every beat of an up-projection row tile whose gate
  accumulators are all ``<= 0`` (:func:`model.packing.zero_row_tiles`: ``ReLU^2`` of the gate is
  0 there, so the up rows' results are multiplied by 0),

and compares it with the dense stream: weight bytes per token, engine cycles per token
(:func:`model.accel_cycles.tile_cycles`, one command per projection per token, one beat per
cycle) and tokens/s at the clock.

Writes ``build/<out>.json`` and ``build/<out>.md``. Assumptions, stated in the report too: the
skipping engine is a projection (issue 18 item 4: not built yet) that takes the beats it needs
one per cycle with the zero flags known before its beats start, drains as the dense engine does
(a tile of no beats costs its drain only), and spends no cycle on a skipped beat; the counts
cover the BitLinear projections only (not the norms, attention or LM head, nor the host link),
each token's codes are those of the model run over whole windows (causal, so equal to a decode
of the same text).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from model.accel import AccelConfig, tree_depth
from sim.reports import write_report
from sim.runner import ROOT
from sim.skip_bench import (
    ASSUMPTIONS,
    DEFAULT_SHAPES,
    best_per_projection,
    collect_calls,
    markdown,
    measure,
)

__all__ = ["main"]


def _shape(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape {text!r}: want ROWSxCOLS, e.g. 5x8") from None
    return r, c


def main(argv=None) -> int:
    from model.train import CHECKPOINT_A48, TrainConfig, load_corpus, split_corpus

    ap = argparse.ArgumentParser(prog="python -m sim.bench_sparsity",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=CHECKPOINT_A48,
                    help="model checkpoint (default: the shipped a4.8 model)")
    ap.add_argument("--windows", type=int, default=4,
                    help="validation windows to run (default 4)")
    ap.add_argument("--seq-len", type=int, default=128, help="tokens per window (default 128)")
    ap.add_argument("--shapes", default=",".join(f"{r}x{c}" for r, c in DEFAULT_SHAPES),
                    help="array shapes ROWSxCOLS, comma-separated")
    ap.add_argument("--act-bits", type=int, default=8, choices=(4, 8))
    ap.add_argument("--no-row-skip", action="store_true",
                    help="do not skip up-projection row tiles behind a zero gate")
    ap.add_argument("--clock", type=float, default=48.0, help="engine MHz (default 48)")
    ap.add_argument("--out", default="bench_sparsity", help="report name under build/")
    args = ap.parse_args(argv)
    if args.windows < 1 or args.seq_len < 1:
        ap.error("--windows and --seq-len: want at least 1")
    if not (np.isfinite(args.clock) and args.clock > 0):
        ap.error("--clock: want MHz > 0")
    from model.checkpoint import CheckpointError, load

    try:
        shapes = [_shape(s) for s in args.shapes.split(",") if s]
        if not shapes:
            raise ValueError("--shapes: no shape given")
        ck = load(args.checkpoint)
        c = ck.config
        if args.seq_len > c.max_seq:
            raise ValueError(f"--seq-len: the model takes at most {c.max_seq} tokens")
        widest = max(c.d_model, c.d_ff)
        configs = [AccelConfig(rows=r, cols=col, act_bits=args.act_bits, max_k=widest,
                               max_m=max(widest, c.vocab_size),
                               adder_stages=min(1, tree_depth(col)))
                   for r, col in shapes]
    except (ValueError, TypeError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _, val = split_corpus(load_corpus(), TrainConfig().val_fraction)
    n = min(args.windows, (val.size - 1) // args.seq_len)
    windows = val[: n * args.seq_len].reshape(n, args.seq_len)
    calls = collect_calls(ck, windows)
    rep = {"checkpoint": str(args.checkpoint), "quant": c.quant, "windows": n,
           "seq_len": args.seq_len, "tokens": n * args.seq_len, "clock_mhz": args.clock,
           "assumptions": ASSUMPTIONS,
           "shapes": [measure(calls, cfg, row_skip=not args.no_row_skip) for cfg in configs]}
    rep["best_per_projection"] = best_per_projection(rep["shapes"])
    md = markdown(rep)
    write_report(ROOT / "build", args.out, rep, md)
    print(md)
    print(f"wrote build/{args.out}.json, .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
