"""``python -m model.train``: train the ternary and fp32 models, export, write metrics."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from model.train import (
    CHECKPOINT,
    CORPUS,
    METRICS,
    TrainConfig,
    eval_golden,
    evaluate_numpy,
    export_params,
    load_corpus,
    split_corpus,
    train,
)

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command line: train the ternary and fp32 models, export, write metrics."""
    p = argparse.ArgumentParser(prog="python -m model.train",
                                description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=CHECKPOINT)
    p.add_argument("--metrics", type=Path, default=METRICS)
    p.add_argument("--skip-fp32", action="store_true", help="train only the ternary model")
    p.add_argument("--eval-golden", action="store_true",
                   help="only evaluate the shipped checkpoint with the numpy golden model and "
                        "update the metrics JSON")
    args = p.parse_args(argv)

    from model import checkpoint

    if args.eval_golden:
        return eval_golden(args.out, args.metrics)
    cfg = TrainConfig(steps=args.steps)
    print(f"config: {json.dumps(dataclasses.asdict(cfg))}")
    print(f"ternary weights: {cfg.ternary_weights} "
          f"({cfg.ternary_weights * 1.6 / 8 / 1024:.1f} KiB at 1.6 bits/weight)")
    tmodel, tmetrics = train(cfg, ternary=True, threads=args.threads)
    params = export_params(tmodel, cfg)
    ck = checkpoint.from_float(params, cfg.model_dict())
    checkpoint.save(args.out, ck)
    print(f"saved {args.out} ({args.out.stat().st_size} bytes)")

    # the exported ternary checkpoint evaluated by the numpy golden model (what ships)
    _, val = split_corpus(load_corpus(), cfg.val_fraction)
    gl = evaluate_numpy(ck.transformer(), val, cfg.seq_len)
    tmetrics["golden_val_loss_nats"] = gl
    tmetrics["golden_val_bits_per_byte"] = gl / math.log(2)
    print(f"golden model on the exported checkpoint: {gl:.4f} nats, {gl / math.log(2):.4f} bpb")

    out = {"config": dataclasses.asdict(cfg), "ternary_weights": cfg.ternary_weights,
           "corpus": CORPUS.name, "ternary": tmetrics}
    if not args.skip_fp32:
        _, fmetrics = train(cfg, ternary=False, threads=args.threads)
        out["fp32"] = fmetrics
    args.metrics.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
