"""The workload of the energy figures: real BitLinear layers of the shipped model.

The shipped model is :data:`model.train.CHECKPOINT` (``model/data/bitnet_kjv.npz``).
:func:`real_layers` gives the trits of the seven projections of its block 0 and the activation
codes that reach each of them when the model reads :data:`DEFAULT_PROMPT` (what
:mod:`hw.build.activity` runs on the gate netlists); :func:`model_layers` the shapes of all its
BitLinear layers (what :func:`hw.build.energy.energy_tables` scales per-MAC energies by).
"""

import numpy as np

from model.train import CHECKPOINT

from .generic import GenericError

__all__ = ["DEFAULT_LAYERS", "DEFAULT_PROMPT", "real_layers", "model_layers"]

#: The projections of block 0 of the shipped model that the activity runs execute.
DEFAULT_LAYERS = tuple(f"layers.0.{p}.weight" for p in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
DEFAULT_PROMPT = b"In the beginning God created the heaven and the earth."


def real_layers(names=DEFAULT_LAYERS, tokens=1, act_bits=8, seed=0):
    """Return ``({name: (xq, trits)}, source)``: real BitLinear products of the shipped model.

    ``xq`` (``tokens x K`` int8 codes) are the activation codes that reach projection ``name``
    for the last ``tokens`` positions of :data:`DEFAULT_PROMPT` (captured through the golden
    transformer's matmul hook); ``trits`` (``M x K``) its weights. For ``act_bits=4`` the 8-bit
    codes are shifted right by 4. If the checkpoint is missing, one seeded random 256 x 128
    layer ``"random"`` is returned and ``source`` says so.
    """
    path = CHECKPOINT
    if not path.exists():
        rng = np.random.default_rng(seed)
        trits = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(256, 128),
                           p=[0.3, 0.4, 0.3])
        lo = -(1 << (act_bits - 1))
        xq = rng.integers(lo, -lo, size=(tokens, 128)).astype(np.int8)
        return {"random": (xq, trits)}, f"seeded random 256x128 layer (seed {seed}; {path} " \
                                         "missing)"
    from model import checkpoint
    from model.bitlinear import ternary_matmul
    ck = checkpoint.load(path)
    missing = [n for n in names if n not in ck.ternary]
    if missing:
        raise GenericError(f"no ternary layer(s) {missing} in {path}")
    seen = {}

    def hook(layer, xq, trits):
        if layer in names and layer not in seen:
            seen[layer] = np.array(xq, dtype=np.int8)
        return ternary_matmul(xq, trits)

    prompt = np.frombuffer(DEFAULT_PROMPT, dtype=np.uint8).astype(np.int64)
    ck.transformer(matmul=hook).forward(prompt)
    out = {}
    for name in names:
        xq = seen[name][-tokens:]
        if act_bits == 4:
            xq = (xq >> 4).astype(np.int8)
        out[name] = (xq, np.asarray(ck.ternary[name].trits, dtype=np.int8))
    return out, (f"{path.name}: projections {', '.join(n.split('.')[-2] for n in names)} of "
                 f"block {names[0].split('.')[1]}, activation codes of the last {tokens} "
                 f"token(s) of {DEFAULT_PROMPT.decode()!r}")


def model_layers():
    """``[(short name, M, K, count)]`` of the shipped model's BitLinear layers, or ``None``
    when the checkpoint is missing."""
    if not CHECKPOINT.exists():
        return None
    from model import checkpoint
    ck = checkpoint.load(CHECKPOINT)
    shapes = {}
    for name, t in ck.ternary.items():
        short = name.split(".")[-2]
        m, k = t.trits.shape
        key = (short, int(m), int(k))
        shapes[key] = shapes.get(key, 0) + 1
    return [(short, m, k, n) for (short, m, k), n in shapes.items()]
