"""Quantization-aware training of a small byte-level BitNet b1.58 language model.

``python -m model.train`` (:mod:`model.train.__main__`) trains two models of the same shape on
the committed public-domain corpus (``model/data/kjv_genesis_exodus.txt``, see
``model/data/SOURCE.md``):

* the **ternary** model, trained exactly as BitNet b1.58 trains (Ma et al., "The Era of 1-bit
  LLMs", arXiv 2402.17764, and its "Training Tips, Code and FAQ"): every BitLinear keeps a float
  master weight, and the forward pass uses the absmean-ternarized weight
  ``gamma * clip(round(W / gamma), -1, 1)`` and the per-token 8-bit absmax-quantized activation
  ``clip(round(x * s), -128, 127) / s``, both with a straight-through estimator (the gradient
  passes through the rounding unchanged), as in Hugging Face transformers' ``WeightQuant`` /
  ``ActQuant`` (``src/transformers/integrations/bitnet.py``);
* the **fp32** baseline: the same network with ordinary float linear layers;
* with ``--recipe a4.8``, the **BitNet a4.8** model (arXiv 2411.04965, its two-stage
  recipe): phase 1 is the ternary model's 8-bit run above, phase 2 continues it for
  :data:`A48_PHASE2_STEPS` steps at the final learning rate with the a4.8 quantizers
  (:data:`model.transformer.A48_INPUTS`: INT4 absmean inputs of QKV / gate / up, top-50 %
  sparsified INT8 input of ``o_proj``, and the 3/4-bit KV cache), every quantizer and the top-K
  mask with a straight-through estimator (the mask applied in the forward pass, the gradient
  passed through the kept entries).

The architecture is the one of :mod:`model.transformer` (the numpy golden model): LLaMA-like
pre-norm blocks with RMSNorm, SubLN (``attn_sub_norm`` before ``o_proj``, ``ffn_sub_norm`` before
``down_proj``, as in BitNet b1.58 2B4T), RoPE attention and a squared-ReLU gated FFN, no biases.
Embedding, norms and LM head stay float. Training is seeded and deterministic on CPU.

The ternary model is exported with :func:`model.checkpoint.save` to
``model/data/bitnet_kjv.npz``; only the *metrics* of both models go to
``model/data/train_metrics.json`` (the fp32 weights are not shipped). The a4.8 model goes to
``model/data/bitnet_kjv_a48.npz`` and its metrics, with the zero fraction of every projection's
input codes, to ``model/data/train_metrics_a48.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_DIR",
    "CORPUS",
    "TrainConfig",
    "load_corpus",
    "split_corpus",
    "build_torch_model",
    "export_params",
    "train",
    "evaluate_numpy",
    "evaluate_torch",
    "eval_golden",
    "golden_input_sparsity",
    "RECIPES",
    "A48_PHASE2_STEPS",
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CORPUS = DATA_DIR / "kjv_genesis_exodus.txt"
CHECKPOINT = DATA_DIR / "bitnet_kjv.npz"
METRICS = DATA_DIR / "train_metrics.json"
CHECKPOINT_A48 = DATA_DIR / "bitnet_kjv_a48.npz"
METRICS_A48 = DATA_DIR / "train_metrics_a48.json"

#: Training recipes: ``"b1.58"`` (8-bit activations throughout) and ``"a4.8"`` (the b1.58 run,
#: then :data:`A48_PHASE2_STEPS` steps with the a4.8 quantizers).
RECIPES = ("b1.58", "a4.8")
#: Length of the a4.8 recipe's second phase (the paper: 5B tokens after 95B at 8 bits; here 800
#: steps after 2500: enough steps at the final learning rate for the loss to recover, within the
#: time budget of a CPU run).
A48_PHASE2_STEPS = 800


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Shape of the network and the optimisation schedule.

    The model-shape fields mirror :class:`model.transformer.ModelConfig`; the rest only concern
    training. The defaults are the shipped model: 3 layers, ``d_model = 128``, ``ffn = 256``,
    0.49 M ternary weights (96 KiB at 1.6 bits/weight: fits the 128 KiB SPRAM of an iCE40 UP5K).
    """

    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    ffn_dim: int = 256
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # optimisation
    seq_len: int = 128
    batch_size: int = 32
    steps: int = 2500
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    seed: int = 1234

    def model_dict(self) -> dict:
        """The model-shape fields, as :class:`model.transformer.ModelConfig` keyword arguments."""
        keys = ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_dim", "max_seq_len",
                "rope_theta", "norm_eps")
        return {k: getattr(self, k) for k in keys}

    @property
    def ternary_weights(self) -> int:
        """Number of ternary (BitLinear) weights of the network."""
        per_layer = 4 * self.d_model * self.d_model + 3 * self.d_model * self.ffn_dim
        return self.n_layers * per_layer


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def load_corpus(path: Path = CORPUS) -> np.ndarray:
    """The corpus as a uint8 byte array (byte-level tokens, vocabulary 256)."""
    data = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
    if data.size < 1024:
        raise ValueError(f"corpus {path} is too small ({data.size} bytes)")
    return data


def split_corpus(data: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation split: the last ``val_fraction`` of the bytes is validation."""
    n_val = int(round(data.size * val_fraction))
    return data[: data.size - n_val], data[data.size - n_val:]


# ----------------------------------------------------------------------------------------------
# torch model (imported lazily: torch is only needed for training)
# ----------------------------------------------------------------------------------------------
def build_torch_model(cfg: TrainConfig, ternary: bool, quant: str = "b1.58"):
    """Build the torch network; ``ternary`` selects BitLinear QAT or plain float linears.

    ``quant`` is the activation scheme of a ternary network (:data:`model.transformer.
    QUANT_SCHEMES`); ``model.set_quant(quant)`` switches it between training phases.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    from model.quant import TOPK_KEEP
    from model.transformer import A48_INPUTS, A48_KV_BITS, QUANT_SCHEMES

    scheme = {"quant": quant}

    def ste(x, xq):
        # straight-through estimator: forward xq, backward identity
        return x + (xq - x).detach()

    def weight_quant(w):
        gamma = w.abs().mean().clamp(min=1e-5)
        return ste(w, (w / gamma).round().clamp(-1, 1) * gamma)

    def absmax(x, bits=8):
        # model.quant.absmax_quantize per token
        qp = 2 ** (bits - 1) - 1
        s = qp / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        return ste(x, (x * s).round().clamp(-qp - 1, qp) / s)

    def absmean(x, bits=4):
        # model.quant.absmean_act_quantize per token (a4.8 eq. 6-7)
        qp = 2 ** (bits - 1) - 1
        beta = x.abs().mean(dim=-1, keepdim=True)
        s = torch.full_like(beta, math.sqrt(qp)) / (beta + 1e-5)
        return ste(x, (x * s).round().clamp(-qp - 1, qp) / s)

    def topk(x, bits=8):
        # model.quant.topk_absmax_quantize: absmax codes of the unmasked x, then the top-K mask
        # (stable: lower channel first among equal |x|); the gradient passes the kept entries
        k = math.ceil(TOPK_KEEP * x.shape[-1])
        order = torch.argsort(-x.abs(), dim=-1, stable=True)[..., :k]
        mask = torch.zeros_like(x).scatter_(-1, order, 1.0)
        return absmax(x, bits) * mask

    quantizers = {"absmax": absmax, "absmean": absmean, "topk": topk}

    def kv_quant(x):
        # model.quant.kv_quantize on (B, H, T, hd): absmax per head and token, position 0 wider
        bits, bos_bits = A48_KV_BITS
        qp = torch.full((x.shape[-2], 1), float(2 ** (bits - 1) - 1))
        qp[0] = 2 ** (bos_bits - 1) - 1
        s = qp / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
        return ste(x, torch.clamp((x * s).round(), -qp - 1, qp) / s)

    class Linear(nn.Module):
        def __init__(self, k, m, name):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(m, k))
            self.input_name = name
            nn.init.normal_(self.weight, std=k ** -0.5)

        def forward(self, x):
            if not ternary:
                return F.linear(x, self.weight)
            if scheme["quant"] == "a4.8":
                kind, bits = A48_INPUTS[self.input_name]
                xq = quantizers[kind](x, bits)
            else:
                xq = absmax(x)
            return F.linear(xq, weight_quant(self.weight))

    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            var = x.pow(2).mean(dim=-1, keepdim=True)
            return x * torch.rsqrt(var + cfg.norm_eps) * self.weight

    head_dim = cfg.d_model // cfg.n_heads
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64)
                                         / head_dim))
    pos = torch.arange(cfg.max_seq_len, dtype=torch.float64)
    angles = torch.outer(pos, inv_freq)  # (T, hd/2)
    cos_t = torch.cat([angles.cos(), angles.cos()], dim=-1).float()
    sin_t = torch.cat([angles.sin(), angles.sin()], dim=-1).float()

    def rope(x):  # x: (B, H, T, hd), rotate-half convention (HF LLaMA / BitNet)
        t = x.shape[-2]
        x1, x2 = x[..., : head_dim // 2], x[..., head_dim // 2:]
        rot = torch.cat([-x2, x1], dim=-1)
        return x * cos_t[:t] + rot * sin_t[:t]

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg.d_model
            self.q_proj = Linear(d, d, "self_attn.q_proj.weight")
            self.k_proj = Linear(d, d, "self_attn.k_proj.weight")
            self.v_proj = Linear(d, d, "self_attn.v_proj.weight")
            self.o_proj = Linear(d, d, "self_attn.o_proj.weight")
            self.attn_sub_norm = RMSNorm(d)

        def forward(self, x):
            b, t, d = x.shape

            def heads(y):
                return y.view(b, t, cfg.n_heads, head_dim).transpose(1, 2)

            q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
            q, k = rope(q), rope(k)
            if ternary and scheme["quant"] == "a4.8":
                k, v = kv_quant(k), kv_quant(v)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            att = att.transpose(1, 2).reshape(b, t, d)
            return self.o_proj(self.attn_sub_norm(att))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = Linear(cfg.d_model, cfg.ffn_dim, "mlp.gate_proj.weight")
            self.up_proj = Linear(cfg.d_model, cfg.ffn_dim, "mlp.up_proj.weight")
            self.down_proj = Linear(cfg.ffn_dim, cfg.d_model, "mlp.down_proj.weight")
            self.ffn_sub_norm = RMSNorm(cfg.ffn_dim)

        def forward(self, x):
            h = F.relu(self.gate_proj(x)).square() * self.up_proj(x)
            return self.down_proj(self.ffn_sub_norm(h))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = RMSNorm(cfg.d_model)
            self.self_attn = Attention()
            self.post_attention_layernorm = RMSNorm(cfg.d_model)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.self_attn(self.input_layernorm(x))
            return x + self.mlp(self.post_attention_layernorm(x))

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
            nn.init.normal_(self.embed_tokens.weight, std=1.0)
            self.layers = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.norm = RMSNorm(cfg.d_model)
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
            nn.init.normal_(self.lm_head.weight, std=cfg.d_model ** -0.5)

        def forward(self, tokens):
            x = self.embed_tokens(tokens)
            for layer in self.layers:
                x = layer(x)
            return self.lm_head(self.norm(x))

        @staticmethod
        def set_quant(q: str) -> None:
            if q not in QUANT_SCHEMES:
                raise ValueError(f"quant must be one of {QUANT_SCHEMES}, got {q!r}")
            scheme["quant"] = q

    LM.set_quant(quant)
    lm = LM()
    # the fake quantizers, for tests against model.quant (ACT_QUANTIZERS, kv_quantize)
    lm.quantizers, lm.kv_quant = quantizers, kv_quant
    return lm


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def _lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def _val_windows(val: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Fixed, non-overlapping validation windows of ``seq_len + 1`` bytes."""
    n = (val.size - 1) // cfg.seq_len
    starts = np.arange(n) * cfg.seq_len
    return np.stack([val[s: s + cfg.seq_len + 1] for s in starts]).astype(np.int64)


def evaluate_torch(model, windows: np.ndarray, batch: int = 32) -> float:
    """Mean next-byte cross entropy (nats) of a torch model over validation windows."""
    import torch
    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            w = torch.from_numpy(windows[i: i + batch])
            logits = model(w[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                   reduction="sum")
            total += float(loss)
            count += w[:, 1:].numel()
    model.train()
    return total / count


def train(cfg: TrainConfig, ternary: bool, *, log=print, threads: int | None = None,
          recipe: str = "b1.58", phase2_steps: int = A48_PHASE2_STEPS):
    """Train one model; returns ``(torch_model, metrics_dict)``.

    ``recipe="a4.8"`` (ternary only) trains ``cfg.steps`` steps as ``"b1.58"`` does, then
    ``phase2_steps`` more with the a4.8 quantizers at the schedule's final learning rate, with
    the same optimizer state and batch stream. Deterministic for a given ``cfg.seed``, thread
    count and torch build.
    """
    import torch
    import torch.nn.functional as F

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg.seed)

    data = load_corpus()
    train_bytes, val_bytes = split_corpus(data, cfg.val_fraction)
    windows = _val_windows(val_bytes, cfg)
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    if recipe == "a4.8" and not ternary:
        raise ValueError("the a4.8 recipe trains a ternary model")
    total = cfg.steps + (phase2_steps if recipe == "a4.8" else 0)
    model = build_torch_model(cfg, ternary)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if name.endswith("proj.weight") or name == "lm_head.weight" else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    kind = ("ternary" if recipe == "b1.58" else recipe) if ternary else "fp32"
    history = []
    phase1_val = None
    t0 = time.time()
    for step in range(total):
        if step == cfg.steps:
            model.set_quant("a4.8")
            log(f"[{kind}] phase 2: a4.8 quantizers from step {step}")
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        starts = rng.integers(0, train_bytes.size - cfg.seq_len - 1, size=cfg.batch_size)
        batch = np.stack([train_bytes[s: s + cfg.seq_len + 1] for s in starts]).astype(np.int64)
        batch = torch.from_numpy(batch)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ends = (cfg.steps - 1, total - 1)
        if step % 100 == 0 or step in ends:
            msg = {"step": step, "train_loss": round(loss.item(), 4),
                   "elapsed_s": round(time.time() - t0, 1)}
            if step % 500 == 0 or step in ends:
                val = evaluate_torch(model, windows)
                msg["val_loss"] = round(val, 4)
                if step == cfg.steps - 1:
                    phase1_val = val
            history.append(msg)
            log(f"[{kind}] " + json.dumps(msg))
    val_loss = evaluate_torch(model, windows)
    best = min((h for h in history if "val_loss" in h), key=lambda h: h["val_loss"])
    metrics = {
        "kind": kind,
        "val_loss_nats": val_loss,
        "val_bits_per_byte": val_loss / math.log(2),
        "val_bytes": int(windows[:, 1:].size),
        "best_logged_val_loss_nats": best["val_loss"],
        "best_logged_val_step": best["step"],
        "train_seconds": round(time.time() - t0, 1),
        "history": history,
    }
    if recipe == "a4.8":
        metrics.update(phase1_steps=cfg.steps, phase2_steps=phase2_steps,
                       phase1_val_loss_nats=phase1_val)
    return model, metrics


def export_params(model, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """Float32 state dict of a torch model under the architecture's parameter names."""
    return {name: t.detach().cpu().numpy().astype(np.float32)
            for name, t in model.state_dict().items()}


def evaluate_numpy(transformer, data: np.ndarray, seq_len: int, max_windows: int | None = None):
    """Mean next-byte cross entropy (nats) of a golden-model :class:`Transformer`."""
    # the same windows as the torch evaluation (_val_windows)
    windows = [data[s: s + seq_len + 1] for s in np.arange((data.size - 1) // seq_len) * seq_len]
    if max_windows is not None:
        windows = windows[:max_windows]
    total, count = 0.0, 0
    for w in windows:
        logits = np.asarray(transformer.forward(w[:-1].astype(np.int64)), dtype=np.float64)
        logits = logits - logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        total -= float(logp[np.arange(seq_len), w[1:]].sum())
        count += seq_len
    return total / count


def golden_input_sparsity(ck, data: np.ndarray, seq_len: int, max_windows: int | None = None):
    """Golden-model loss of checkpoint ``ck`` and the zero fraction of every projection's input.

    Returns ``(loss_nats, zeros)`` with ``zeros[layer][projection]`` the fraction of zero
    activation codes ``xq`` the projection received over the validation windows of
    :func:`evaluate_numpy` (``projection`` is ``q_proj``, ..., ``down_proj``).
    """
    from model.bitlinear import ternary_matmul

    counts: dict[str, list[int]] = {}

    def counting(name, xq, trits):
        c = counts.setdefault(name, [0, 0])
        c[0] += int(np.count_nonzero(xq == 0))
        c[1] += xq.size
        return ternary_matmul(xq, trits)

    loss = evaluate_numpy(ck.transformer(matmul=counting), data, seq_len, max_windows)
    zeros: dict[str, dict[str, float]] = {}
    for name, (z, n) in counts.items():
        _, layer, _, proj, _ = name.split(".")
        zeros.setdefault(layer, {})[proj] = z / n
    return loss, zeros


def eval_golden(ckpt_path: Path = CHECKPOINT, metrics_path: Path = METRICS) -> int:
    """Evaluate a saved checkpoint with the golden model; record it in the metrics JSON."""
    from model import checkpoint

    ck = checkpoint.load(ckpt_path)
    metrics = json.loads(Path(metrics_path).read_text())
    cfg = TrainConfig(**metrics["config"])
    _, val = split_corpus(load_corpus(), cfg.val_fraction)
    gl = evaluate_numpy(ck.transformer(), val, cfg.seq_len)
    metrics["ternary"]["golden_val_loss_nats"] = gl
    metrics["ternary"]["golden_val_bits_per_byte"] = gl / math.log(2)
    Path(metrics_path).write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"golden model on {ckpt_path}: {gl:.4f} nats, {gl / math.log(2):.4f} bits/byte")
    return 0
