"""Real-size BitNet checkpoints with seeded random weights, in the published 2B4T layout.

No model hub is reachable here, so the shapes and the file layout of microsoft/bitnet-b1.58-2B-4T
are reproduced with random content: 30 layers, width 2560, FFN 6912 (squared-ReLU GLU), 20 query
and 5 KV heads, vocabulary 128,256, RoPE base 500000, 4096 positions, tied embedding, SubLN
(the model card and ``config.json`` of that repository; transformers' ``BitNetConfig``
defaults are the same numbers). The Hugging Face directory is what transformers reads for 2B4T:
``quantization_config`` ``autobitlinear`` / ``offline``, projections packed 4 trits per uint8
with a bf16 ``weight_scale = gamma``, bf16 embedding and norms, one safetensors shard per layer
and ``model.safetensors.index.json``. Everything is written as a stream, a layer at a time, so
the 1.2 GB model is produced within a few hundred MB of memory.

Trits are drawn with the density absmean gives a Gaussian weight (31 % zeros); each
projection's ``gamma = 1 / sqrt(0.69 K)`` keeps the activations' scale through the layer, and
norm weights are ``1 + N(0, 0.05)``. Embedding rows are ``N(0, 1)``.

CLI::

    python -m model.checkpoint.synthetic --out build/2b4t --layers 2 [--seed 0] [--vocab N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from model.checkpoint.core import CheckpointError
from model.checkpoint.hf import hf_config
from model.checkpoint.safetensors_file import bf16_bits, write_safetensors
from model.packing import pack_i2_hf
from model.transformer import ModelConfig, param_shapes

__all__ = ["BITNET_2B4T", "main", "random_trits", "write_hf"]

#: The shape of BitNet b1.58 2B4T.
BITNET_2B4T = ModelConfig(vocab_size=128256, d_model=2560, n_layers=30, n_heads=20,
                          n_kv_heads=5, d_ff=6912, ffn="relu2", max_seq=4096,
                          rope_theta=500000.0, norm_eps=1e-5, subln=True, tie_embeddings=True)
#: Fraction of non-zero trits (absmean of a Gaussian: P(|w| > 0.5 E|w|)).
DENSITY = 0.69
_CHUNK_ROWS = 4096


def random_trits(rng: np.random.Generator, shape) -> np.ndarray:
    """int8 trits, ``P(0) = 1 - DENSITY``, signs equally likely."""
    u = rng.random(shape, dtype=np.float32)
    t = np.zeros(shape, np.int8)
    t[u < DENSITY / 2] = -1
    t[u >= 1 - DENSITY / 2] = 1
    return t


def _normal_rows(rng, shape):
    for r in range(0, shape[0], _CHUNK_ROWS):
        rows = min(_CHUNK_ROWS, shape[0] - r)
        yield bf16_bits(rng.standard_normal((rows, shape[1]), dtype=np.float32))


def write_hf(out, config: ModelConfig = BITNET_2B4T, *, seed: int = 0,
             progress=None) -> Path:
    """Write a Hugging Face BitNet directory of ``config``'s shape with random weights.

    ``progress(done, total)`` is called after each shard. Returns the directory."""
    if config.act_bits != 8 or not config.subln or config.d_ff % 4 or config.d_model % 4 \
            or config.kv_dim % 4:
        raise CheckpointError(f"{out}: the 2B4T layout needs 8-bit activations, sub-norms and "
                              "projection rows that are multiples of 4")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = param_shapes(config)
    shards = [["embed_tokens.weight", "norm.weight"]
              + (["lm_head.weight"] if not config.tie_embeddings else [])]
    for i in range(config.n_layers):
        shards.append([n for n in shapes if n.startswith(f"layers.{i}.")])
    total = len(shards)
    weight_map = {}
    for s, names in enumerate(shards):
        rng = np.random.default_rng([seed, s])
        file = f"model-{s + 1:05d}-of-{total:05d}.safetensors"
        tensors = {}
        for name in names:
            shape, is_bit = shapes[name]
            key = name if name == "lm_head.weight" else "model." + name
            if is_bit:
                trits = random_trits(rng, shape)
                gamma = np.float32(1.0 / np.sqrt(DENSITY * shape[1]))
                tensors[key] = ("U8", (shape[0] // 4, shape[1]), [pack_i2_hf(trits)])
                skey = key.removesuffix(".weight") + ".weight_scale"
                tensors[skey] = ("BF16", (1,), [bf16_bits(np.array([gamma]))])
            elif name.endswith("norm.weight"):
                w = 1 + np.float32(0.05) * rng.standard_normal(shape, dtype=np.float32)
                tensors[key] = ("BF16", shape, [bf16_bits(w)])
            else:   # embedding / head: produced in row chunks while the file is written
                tensors[key] = ("BF16", shape, _normal_rows(rng, shape))
        write_safetensors(out / file, tensors, metadata={"format": "pt"})
        weight_map.update({k: file for k in tensors})
        if progress is not None:
            progress(s + 1, total)
    index = {"metadata": {"generator": "model.checkpoint.synthetic", "seed": seed},
             "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    cfg = hf_config(config)
    cfg.update({"bos_token_id": 128000 if config.vocab_size > 128001 else None,
                "eos_token_id": 128001 if config.vocab_size > 128001 else None,
                "dtype": "bfloat16"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m model.checkpoint.synthetic",
        description="Write a BitNet b1.58 2B4T-shaped Hugging Face checkpoint with seeded random "
                    "ternary weights.")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--layers", type=int, default=BITNET_2B4T.n_layers,
                    help="number of layers (default 30, as 2B4T)")
    ap.add_argument("--vocab", type=int, default=BITNET_2B4T.vocab_size,
                    help="vocabulary size (default 128256, as 2B4T)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        config = BITNET_2B4T.replace(n_layers=args.layers, vocab_size=args.vocab)
    except ValueError as e:
        ap.error(str(e))
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"--out {args.out} exists and is not empty")

    def progress(done, total):
        print(f"\r{args.out}: shard {done}/{total}", end="", file=sys.stderr, flush=True)

    write_hf(args.out, config, seed=args.seed, progress=progress)
    print(file=sys.stderr)
    size = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out}: {config.n_layers} layers, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
