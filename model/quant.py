"""Weight and activation quantizers of BitNet b1.58 (plain numpy, float32 like the reference).

References: BitNet b1.58 (arXiv 2402.17764, eq. 1-3), "The Era of 1-bit LLMs: Training Tips,
Code and FAQ" (microsoft/unilm ``bitnet/``) and Hugging Face transformers
``integrations/bitnet.py`` (``weight_quant`` / ``activation_quant``). Those compute in float32 as
``scale = 1 / mean|W|; round(W * scale)`` for weights and ``scale = Qp / max|x|;
round(x * scale)`` for activations; rounding is half to even (``torch.round`` and ``np.round``
agree). The functions below use exactly that order of float32 operations so ties round the same.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EPS", "absmax_quantize", "absmean_act_quantize", "absmean_quantize"]

#: Clamp of the scale denominators (``clamp(min=1e-5)`` in the reference code).
EPS = np.float32(1e-5)


def _float_array(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating)
                                   or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity")
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

    For ``bits=4`` this is the same absmax rule with ``Qp = 7`` (BitNet a4.8, arXiv 2411.04965,
    uses 4-bit activations for the attention/FFN inputs; see ``docs/golden-model.md`` for the
    caveat on its exact quantizer).

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
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in 2..8, got {bits!r}")
    a = _float_array(x, "x")
    if a.ndim < 1 or a.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last axis, got shape {a.shape}")
    qp = np.float32(2 ** (bits - 1) - 1)
    qn = np.float32(-(2 ** (bits - 1)))
    amax = np.maximum(np.abs(a).max(axis=-1, keepdims=True), EPS)
    s = (qp / amax).astype(np.float32)
    codes = np.clip(np.round(a * s), qn, qp).astype(np.int8)
    return codes, s


def absmean_act_quantize(x, bits: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmean activation quantizer (the INT4 quantizer as recalled from BitNet a4.8).

    ``beta = mean(|x|)`` per token, ``s = sqrt(Qp) / (beta + 1e-5)`` with ``Qp = 2**(bits-1)-1``
    (``sqrt(7)`` for 4 bits) and ``codes = clip(round(x * s), -2**(bits-1), Qp)``, float32,
    round half to even; the dequantized activation is ``codes / s``.

    Notes
    -----
    This follows the INT4 formula of BitNet a4.8 (arXiv 2411.04965, section 2) as remembered by
    the author; the paper text was not available in the stored sources while writing it, so it
    is NOT used by the golden model (``act_bits=4`` uses :func:`absmax_quantize` with
    ``bits=4``). See ``docs/golden-model.md``.
    """
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in 2..8, got {bits!r}")
    a = _float_array(x, "x")
    if a.ndim < 1 or a.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last axis, got shape {a.shape}")
    qp = np.float32(2 ** (bits - 1) - 1)
    beta = np.abs(a).mean(axis=-1, keepdims=True, dtype=np.float32)
    s = (np.sqrt(qp) / (beta + EPS)).astype(np.float32)
    codes = np.clip(np.round(a * s), -qp - 1, qp).astype(np.int8)
    return codes, s
