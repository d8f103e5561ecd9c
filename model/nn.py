"""Float building blocks of the golden transformer (numpy, float32).

Every reduction here runs along the contiguous last axis of one token's vector, so a token gives
bit-identical results whether it is processed alone (KV-cache decoding) or inside a sequence.
"""

from __future__ import annotations

import numpy as np

__all__ = ["causal_attention", "relu2", "rms_norm", "rope", "rope_tables", "rotate_half",
           "row_matmul", "silu", "softmax"]


def rms_norm(x, weight, eps: float = 1e-5) -> np.ndarray:
    """RMSNorm: ``x * 1/sqrt(mean(x**2, -1) + eps) * weight`` in float32 (LLaMA / BitNet)."""
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(weight, dtype=np.float32)
    if w.shape != x.shape[-1:]:
        raise ValueError(f"norm weight shape {w.shape} != last axis of x {x.shape[-1:]}")
    var = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32)
    return (x * (np.float32(1.0) / np.sqrt(var + np.float32(eps)))) * w


def silu(x) -> np.ndarray:
    """``x * sigmoid(x)`` in float32, as ``x / (1 + exp(-x))``; for ``x < -88`` the exponential
    overflows to infinity and the quotient is its exact limit, 0."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return x / (np.float32(1.0) + np.exp(-x))


def relu2(x) -> np.ndarray:
    """Squared ReLU ``max(x, 0)**2`` (BitNet b1.58 2B4T's FFN activation)."""
    r = np.maximum(np.asarray(x, dtype=np.float32), np.float32(0))
    return r * r


def softmax(x, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def row_matmul(x, w) -> np.ndarray:
    """``x @ w.T`` in float32 with each output a sum along the contiguous last axis.

    Unlike BLAS, the result of a row of ``x`` does not depend on the other rows, which keeps the
    KV-cache path bit-identical to the full-sequence path.
    """
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    out = np.empty((x2.shape[0], w.shape[0]), dtype=np.float32)
    step = max(1, (1 << 22) // max(1, w.size))
    for i in range(0, x2.shape[0], step):
        out[i:i + step] = (x2[i:i + step, None, :] * w[None, :, :]).sum(axis=-1)
    return out.reshape(*lead, w.shape[0])


def rope_tables(positions, head_dim: int, theta: float = 10000.0):
    """``cos, sin`` tables ``(len(positions), head_dim)`` of rotary embeddings.

    ``inv_freq_j = theta ** (-2j / head_dim)`` for ``j < head_dim / 2`` (computed in float64),
    angles ``pos * inv_freq``, and the halves concatenated as in Hugging Face LLaMA; cast to
    float32.
    """
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)
    inv_freq = 1.0 / (float(theta) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    ang = np.outer(pos, inv_freq)
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=-1).astype(np.float32)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=-1).astype(np.float32)
    return cos, sin


def rotate_half(x) -> np.ndarray:
    """``concat(-x2, x1)`` for ``x = concat(x1, x2)`` along the last axis."""
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rope(x, positions, theta: float = 10000.0) -> np.ndarray:
    """Apply rotary position embeddings (Hugging Face LLaMA ``rotate_half`` convention).

    Parameters
    ----------
    x : array_like
        ``(..., T, head_dim)``, float.
    positions : array_like of int
        ``T`` absolute positions.
    theta : float
        RoPE base.

    Returns
    -------
    numpy.ndarray
        float32 ``x * cos + rotate_half(x) * sin``.
    """
    x = np.asarray(x, dtype=np.float32)
    cos, sin = rope_tables(positions, x.shape[-1], theta)
    if cos.shape[0] != x.shape[-2]:
        raise ValueError(f"{cos.shape[0]} positions for {x.shape[-2]} tokens")
    return x * cos + rotate_half(x) * sin


def causal_attention(q, k, v, q_positions=None) -> np.ndarray:
    """Causal scaled dot-product attention with grouped KV heads.

    Parameters
    ----------
    q : numpy.ndarray
        ``(H, Tq, hd)`` queries.
    k, v : numpy.ndarray
        ``(Hkv, Tk, hd)`` keys/values; ``H`` must be a multiple of ``Hkv`` (query head ``h``
        uses KV head ``h // (H // Hkv)``, as ``repeat_kv`` in transformers).
    q_positions : array_like of int, optional
        Absolute position of each query; query ``i`` attends to keys ``0 .. q_positions[i]``.
        Default: the last ``Tq`` positions of the ``Tk`` keys.

    Returns
    -------
    numpy.ndarray
        ``(H, Tq, hd)`` float32. Scores are scaled by ``1/sqrt(hd)``; each query only touches its
        own key prefix, so results do not depend on how many tokens are processed together.
    """
    q = np.asarray(q, dtype=np.float32)
    k = np.asarray(k, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    h, tq, hd = q.shape
    hkv, tk, _ = k.shape
    if h % hkv:
        raise ValueError(f"{h} query heads not a multiple of {hkv} KV heads")
    if q_positions is None:
        q_positions = np.arange(tk - tq, tk)
    rep = h // hkv
    kr = np.repeat(k, rep, axis=0)
    vr = np.repeat(v, rep, axis=0)
    # (H, hd, Tk): the value sums below run along a contiguous axis
    vt = np.ascontiguousarray(vr.transpose(0, 2, 1))
    scale = np.float32(1.0 / np.sqrt(hd))
    out = np.empty((h, tq, hd), dtype=np.float32)
    for i, p in enumerate(np.asarray(q_positions).reshape(-1)):
        n = int(p) + 1
        if not 1 <= n <= tk:
            raise ValueError(f"query position {p} outside the {tk} keys")
        scores = (q[:, i, None, :] * kr[:, :n, :]).sum(axis=-1) * scale  # (H, n)
        probs = softmax(scores, axis=-1)
        out[:, i, :] = (probs[:, None, :] * vt[:, :, :n]).sum(axis=-1)
    return out
