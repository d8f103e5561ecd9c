"""``python -m model.train``: train the ternary and fp32 models, export, write metrics.

``--recipe a4.8`` trains the BitNet a4.8 model instead (the 8-bit phase, then the a4.8 phase),
exports it beside the b1.58 model and writes its metrics with the fp32 and b1.58 figures of
``train_metrics.json`` and the zero fraction of every projection's input, for both models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from model.train import (
    A48_PHASE2_STEPS,
    CHECKPOINT,
    CHECKPOINT_A48,
    CORPUS,
    METRICS,
    METRICS_A48,
    RECIPES,
    TrainConfig,
    eval_golden,
    evaluate_numpy,
    export_params,
    golden_input_sparsity,
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
    p.add_argument("--recipe", choices=RECIPES, default="b1.58",
                   help="b1.58: 8-bit activations (default); a4.8: then a phase with the a4.8 "
                        "quantizers (writes bitnet_kjv_a48.npz, train_metrics_a48.json)")
    p.add_argument("--phase2-steps", type=int, default=A48_PHASE2_STEPS,
                   help="steps of the a4.8 phase (--recipe a4.8)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"checkpoint (default {CHECKPOINT.name}, a4.8: {CHECKPOINT_A48.name})")
    p.add_argument("--metrics", type=Path, default=None,
                   help=f"metrics JSON (default {METRICS.name}, a4.8: {METRICS_A48.name})")
    p.add_argument("--skip-fp32", action="store_true", help="train only the ternary model")
    p.add_argument("--eval-golden", action="store_true",
                   help="only evaluate the shipped checkpoint with the numpy golden model and "
                        "update the metrics JSON")
    args = p.parse_args(argv)
    a48 = args.recipe == "a4.8"
    if args.out is None:
        args.out = CHECKPOINT_A48 if a48 else CHECKPOINT
    if args.metrics is None:
        args.metrics = METRICS_A48 if a48 else METRICS

    from model import checkpoint

    if args.eval_golden:
        if a48:
            p.error("--eval-golden evaluates the b1.58 checkpoint; the a4.8 run evaluates its "
                    "checkpoint itself")
        return eval_golden(args.out, args.metrics)
    cfg = TrainConfig(steps=args.steps)
    if a48:
        return train_a48(cfg, args)
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


def train_a48(cfg: TrainConfig, args) -> int:
    """The a4.8 recipe: train, export, evaluate with the golden model, write the metrics."""
    from model import checkpoint

    print(f"config: {json.dumps(dataclasses.asdict(cfg))}, a4.8 phase: {args.phase2_steps} steps")
    model, metrics = train(cfg, ternary=True, threads=args.threads, recipe="a4.8",
                           phase2_steps=args.phase2_steps)
    ck = checkpoint.from_float(export_params(model, cfg), {**cfg.model_dict(), "quant": "a4.8"})
    checkpoint.save(args.out, ck)
    print(f"saved {args.out} ({args.out.stat().st_size} bytes)")
    _, val = split_corpus(load_corpus(), cfg.val_fraction)
    gl, zeros = golden_input_sparsity(ck, val, cfg.seq_len)
    metrics["golden_val_loss_nats"] = gl
    metrics["golden_val_bits_per_byte"] = gl / math.log(2)
    metrics["input_zero_fraction"] = zeros
    print(f"golden model on the exported checkpoint: {gl:.4f} nats, {gl / math.log(2):.4f} bpb")
    out = {"config": dataclasses.asdict(cfg), "threads": args.threads,
           "ternary_weights": cfg.ternary_weights, "corpus": CORPUS.name, "a4.8": metrics}
    # the shipped b1.58 model's input sparsity, and the fp32 / b1.58 figures, side by side
    bl, bzeros = golden_input_sparsity(checkpoint.load(CHECKPOINT), val, cfg.seq_len)
    shipped = json.loads(METRICS.read_text())
    out["compare"] = {
        "fp32_val_bits_per_byte": shipped["fp32"]["val_bits_per_byte"],
        "b1.58_val_bits_per_byte": shipped["ternary"]["val_bits_per_byte"],
        "b1.58_golden_val_bits_per_byte": bl / math.log(2),
        "b1.58_input_zero_fraction": bzeros,
        "a4.8_val_bits_per_byte": metrics["val_bits_per_byte"],
        "a4.8_golden_val_bits_per_byte": metrics["golden_val_bits_per_byte"],
    }
    args.metrics.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.metrics}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
