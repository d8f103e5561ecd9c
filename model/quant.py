"""Weight and activation quantizers of BitNet b1.58 and BitNet a4.8 (plain numpy, float32).

References: BitNet b1.58 (arXiv 2402.17764, eq. 1-3), "The Era of 1-bit LLMs: Training Tips,
Code and FAQ" (microsoft/unilm ``bitnet/``) and Hugging Face transformers
``integrations/bitnet.py`` (``weight_quant`` / ``activation_quant``). Those compute in float32 as
``scale = 1 / mean|W|; round(W * scale)`` for weights and ``scale = Qp / max|x|;
round(x * scale)`` for activations; rounding is half to even (``torch.round`` and ``np.round``
agree). The functions below use exactly that order of float32 operations so ties round the same.

BitNet a4.8 (arXiv 2411.04965) adds the absmean INT4 activation quantizer (eq. 6-7,
:func:`absmean_act_quantize`), the top-K sparsified INT8 input of the attention output
projection (eq. 1 and 3, :func:`topk_absmax_quantize`) and a 3-bit KV cache
(:func:`kv_quantize`); :func:`act_quantize` selects an activation quantizer by name. The choices
the paper leaves open are in ``docs/golden-model.md``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ACT_QUANTIZERS", "EPS", "TOPK_KEEP", "absmax_quantize", "absmean_act_quantize",
           "absmean_quantize", "act_quantize", "kv_quantize", "topk_absmax_quantize", "topk_mask"]

#: Clamp of the scale denominators (``clamp(min=1e-5)`` in the reference code).
EPS = np.float32(1e-5)

#: Fraction of the channels BitNet a4.8 keeps at the attention output projection's input (eq. 1).
TOPK_KEEP = 0.5


def _float_array(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating)
                                   or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def _check_bits(bits) -> None:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in 2..8, got {bits!r}")


def _activations(x) -> np.ndarray:
    a = _float_array(x, "x")
    if a.ndim < 1 or a.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last axis, got shape {a.shape}")
    return a


def absmean_quantize(W) -> tuple[np.ndarray, np.float32]:
    """Ternary absmean quantization of a weight tensor (per tensor).

    ``gamma = max(mean(|W|), 1e-5)`` and ``trits = clip(round(W * (1 / gamma)), -1, 1)``, all in
    float32, ``round`` half to even. The multiplication by the float32 reciprocal (not a division)
    is the reference's order of operations (``scale = 1.0 / w.abs().mean().clamp_(min=1e-5)``;
    ``(w * scale).round().clamp_(-1, 1)``), so ties land on the same side. The dequantized weight
    is ``trits * gamma``.

    Parameters
    ----------
    W : array_like
        Float weights (any shape, at least one element).

    Returns
    -------
    trits : numpy.ndarray
        int8 in {-1, 0, 1}, same shape as ``W``.
    gamma : numpy.float32
        The scale.
    """
    w = _float_array(W, "W")
    if w.size == 0:
        raise ValueError("W is empty")
    gamma = np.maximum(np.abs(w).mean(dtype=np.float32), EPS).astype(np.float32)
    scale = np.float32(1.0) / gamma
    trits = np.clip(np.round(w * scale), -1, 1).astype(np.int8)
    return trits, np.float32(gamma)


def absmax_quantize(x, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax quantization of activations (over the last axis).

    ``s = Qp / max(max|x|, 1e-5)`` with ``Qp = 2**(bits-1) - 1`` and
    ``codes = clip(round(x * s), -2**(bits-1), Qp)``, float32, round half to even (reference:
    ``activation_quant``). The dequantized activation is ``codes / s``. Since ``|x * s| <= Qp``
    up to float rounding, the code ``-2**(bits-1)`` only appears through the clip, never in
    practice; the datapath still supports it.

    For ``bits=4`` this is the same absmax rule with ``Qp = 7`` (the ``act_bits=4`` mode of a
    b1.58 model); BitNet a4.8's own 4-bit quantizer is :func:`absmean_act_quantize`.

    Parameters
    ----------
    x : array_like
        Float activations, shape ``(..., K)``.
    bits : int
        Code width, 2..8.

    Returns
    -------
    codes : numpy.ndarray
        int8, same shape as ``x``.
    s : numpy.ndarray
        float32 scales of shape ``(..., 1)`` (one per token).
    """
    _check_bits(bits)
    a = _activations(x)
    qp = np.float32(2 ** (bits - 1) - 1)
    amax = np.maximum(np.abs(a).max(axis=-1, keepdims=True), EPS)
    s = (qp / amax).astype(np.float32)
    return _round_clip(a, s, bits), s


def _round_clip(a: np.ndarray, s: np.ndarray, bits: int) -> np.ndarray:
    """``clip(round(a * s), -2**(bits-1), 2**(bits-1) - 1)`` as int8 (float32, half to even)."""
    qp = np.float32(2 ** (bits - 1) - 1)
    return np.clip(np.round(a * s), -qp - np.float32(1), qp).astype(np.int8)


def absmean_act_quantize(x, bits: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmean activation quantizer: BitNet a4.8's INT4 (arXiv 2411.04965, eq. 6-7).

    ``Q_INT4(X) = beta / sqrt(7) * RoundClip(sqrt(7) / (beta + eps) * X, -8, 7)`` with
    ``beta = mean|X|``: here per token (over the last axis), in float32,
    ``s = sqrt(Qp) / (beta + 1e-5)`` with ``Qp = 2**(bits-1) - 1`` (``sqrt(7)`` for 4 bits),
    ``codes = clip(round(x * s), -2**(bits-1), Qp)``, round half to even. The dequantized
    activation is ``codes / s`` (the paper's ``beta / sqrt(7)`` up to its ``eps``). Unlike absmax,
    the scale follows the mean, so the largest entries of a token clip at ``Qp`` (and at
    ``-2**(bits-1)``: the code -8 does occur); an all-zero token gives all-zero codes.
    Arguments and results as :func:`absmax_quantize` (a4.8 uses ``bits=4``).
    """
    _check_bits(bits)
    a = _activations(x)
    qp = np.float32(2 ** (bits - 1) - 1)
    beta = np.abs(a).mean(axis=-1, keepdims=True, dtype=np.float32)
    s = (np.sqrt(qp) / (beta + EPS)).astype(np.float32)
    return _round_clip(a, s, bits), s


def topk_mask(x, keep: float = TOPK_KEEP) -> np.ndarray:
    """Per-token top-K mask of ``|x|`` (over the last axis): BitNet a4.8's ``M = TopK(|X|)``.

    ``K = ceil(keep * n)`` of the ``n`` channels are kept: those of largest ``|x|``; among equal
    magnitudes the lower channel index wins (a stable sort of ``-|x|``), so exactly ``K`` entries
    are kept in every token, also an all-zero one (its first ``K`` channels). The largest
    magnitude of a token is always kept.

    Returns
    -------
    numpy.ndarray
        bool, same shape as ``x``.
    """
    a = _activations(x)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep!r}")
    k = math.ceil(keep * a.shape[-1])
    order = np.argsort(-np.abs(a), axis=-1, kind="stable")
    mask = np.zeros(a.shape, dtype=bool)
    np.put_along_axis(mask, order[..., :k], True, axis=-1)
    return mask


def topk_absmax_quantize(x, bits: int = 8,
                         keep: float = TOPK_KEEP) -> tuple[np.ndarray, np.ndarray]:
    """Sparsify then quantize: ``Q_INT8(X) (.) TopK(|X|)`` (BitNet a4.8, arXiv 2411.04965, eq. 1).

    ``codes = absmax_quantize(x, bits) codes`` with the entries outside :func:`topk_mask` set to
    0; the scale ``s`` is the one of the unmasked ``x`` (eq. 1 quantizes, then masks). It equals the
    scale of the masked ``x``, since the mask always keeps a token's largest ``|x|``, so the order
    of mask and scale does not change a code.

    Returns
    -------
    codes : numpy.ndarray
        int8, same shape as ``x``, at least ``n - ceil(keep * n)`` zeros per token.
    s : numpy.ndarray
        float32 scales of shape ``(..., 1)``.
    """
    codes, s = absmax_quantize(x, bits)
    codes[~topk_mask(x, keep)] = 0
    return codes, s


#: The activation quantizers by name (:func:`act_quantize`); the training code mirrors each.
ACT_QUANTIZERS = {"absmax": absmax_quantize, "absmean": absmean_act_quantize,
                  "topk": topk_absmax_quantize}


def act_quantize(x, kind: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, s)`` of the activation quantizer ``kind`` (a key of :data:`ACT_QUANTIZERS`)."""
    if kind not in ACT_QUANTIZERS:
        raise ValueError(f"unknown activation quantizer {kind!r}; known: "
                         f"{', '.join(ACT_QUANTIZERS)}")
    return ACT_QUANTIZERS[kind](x, bits)


def kv_quantize(x, positions, bits: int = 3, bos_bits: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """BitNet a4.8's low-bit KV cache: absmax per head and token, the first token wider.

    ``x`` is post-RoPE keys or values of shape ``(..., T, head_dim)`` at sequence ``positions``
    (``T`` ints). Each ``head_dim`` vector is quantized with :func:`absmax_quantize` to ``bits``
    (3: codes in [-4, 3], ``s = 3 / max|x|``), the vectors at position 0 (the BOS token, or
    the first byte of a byte-level sequence) to ``bos_bits`` (4). The cached value is
    ``codes / s``.

    Returns
    -------
    codes : numpy.ndarray
        int8, same shape as ``x``.
    s : numpy.ndarray
        float32 scales of shape ``(..., T, 1)``.
    """
    a = _activations(x)
    pos = np.asarray(positions)
    if a.ndim < 2 or pos.shape != a.shape[-2:-1]:
        raise ValueError(f"positions of shape {pos.shape} do not fit x of shape {a.shape}")
    codes, s = absmax_quantize(a, bits)
    first = pos == 0
    if first.any():
        codes[..., first, :], s[..., first, :] = absmax_quantize(a[..., first, :], bos_bits)
    return codes, s
