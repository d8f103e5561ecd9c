"""BitLinear: ternary weights x absmax-quantized activations, exact integer accumulation.

``y = (xq @ trits.T) * gamma / s`` where ``xq, s = absmax_quantize(x)`` and
``trits, gamma = absmean_quantize(W)`` (BitNet b1.58, arXiv 2402.17764). The integer product is
what the accelerator computes; :func:`ternary_matmul` is its golden reference.
"""

from __future__ import annotations

import numpy as np

from model.accel import acc_bound, acc_width_for
from model.packing import validate_trits
from model.quant import absmean_quantize, act_quantize

__all__ = ["BitLinear", "acc_bound", "acc_width_for", "bitlinear_forward", "check_codes",
           "ternary_matmul"]


def check_codes(xq, act_bits: int = 8, name: str = "xq") -> np.ndarray:
    """Return ``xq`` as a 2-D int8 array after checking it holds integer codes of ``act_bits``.

    Any integer dtype is accepted (bool and float are not) as long as every value lies in
    ``[-2**(act_bits-1), 2**(act_bits-1) - 1]``.
    """
    a = np.asarray(xq)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be integer activation codes, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (T, K), got shape {a.shape}")
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} outside the {act_bits}-bit code range [{lo}, {hi}]")
    return a.astype(np.int8)


def ternary_matmul(xq, trits, act_bits: int = 8) -> np.ndarray:
    """Exact integer product ``xq @ trits.T``.

    Parameters
    ----------
    xq : numpy.ndarray
        Activation codes, shape ``(T, K)``: int8, or any integer dtype whose values lie in the
        ``act_bits`` code range (checked).
    trits : numpy.ndarray
        Weights in {-1, 0, 1} (any integer dtype, checked), shape ``(M, K)``.
    act_bits : int
        Activation code width (8 or 4), only for the range check.

    Returns
    -------
    numpy.ndarray
        int32 accumulators, shape ``(T, M)``; ``|acc| <= acc_bound(K, act_bits)``.
    """
    a = check_codes(xq, act_bits)
    t = validate_trits(trits, ndim=2)
    if a.shape[1] != t.shape[1]:
        raise ValueError(f"K mismatch: xq is {a.shape}, trits is {t.shape}")
    # BLAS in floating point is exact here: every partial sum is an integer no larger than
    # acc_bound(K, act_bits), and float32 holds every integer up to 2**24 (float64 to 2**53).
    # float32 halves the memory traffic of converting the weights (a 2B4T layer has 17.7 M).
    ftype = np.float32 if acc_bound(a.shape[1], act_bits) <= 1 << 24 else np.float64
    acc = a.astype(ftype) @ t.T.astype(ftype)
    return acc.astype(np.int64).astype(np.int32)


def bitlinear_forward(x, trits, gamma, act_bits: int = 8, matmul=None,
                      quantizer: str = "absmax") -> np.ndarray:
    """BitLinear forward: ``y = acc * gamma / s`` in float32.

    ``xq, s = act_quantize(x, quantizer, act_bits)`` per token (default
    :func:`~model.quant.absmax_quantize`), ``acc = matmul(xq, trits)`` (default
    :func:`ternary_matmul`), then ``y = (float32(acc) * gamma) / s``. This equals the reference's
    ``F.linear(xq / s, trits * gamma)`` up to float rounding (the rescale is applied once to the
    exact integer sum, as an integer kernel does).

    Parameters
    ----------
    x : array_like
        Float input, shape ``(..., K)``.
    trits : numpy.ndarray
        int8 ``(M, K)``.
    gamma : float
        Weight scale.
    act_bits : int
        Activation code width.
    matmul : callable, optional
        ``matmul(xq (T, K) int8, trits (M, K) int8) -> (T, M)`` integers.
    quantizer : str
        The activation quantizer, a key of :data:`model.quant.ACT_QUANTIZERS` (``"absmax"``;
        BitNet a4.8's ``"absmean"`` and ``"topk"``).

    Returns
    -------
    numpy.ndarray
        float32, shape ``(..., M)``.
    """
    xa = np.asarray(x, dtype=np.float32)
    lead = xa.shape[:-1]
    x2 = xa.reshape(-1, xa.shape[-1])
    xq, s = act_quantize(x2, quantizer, act_bits)
    if matmul is None:
        acc = ternary_matmul(xq, trits, act_bits)
    else:
        acc = check_acc(matmul(xq, trits), x2.shape[0], np.asarray(trits).shape[0])
    y = (acc.astype(np.float32) * np.float32(gamma)) / s
    return y.reshape(*lead, -1)


def check_acc(acc, t: int, m: int) -> np.ndarray:
    """Validate a matmul hook's result: integer array of shape ``(t, m)``; return int32."""
    a = np.asarray(acc)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"matmul hook must return integers, got dtype {a.dtype}")
    if a.shape != (t, m):
        raise ValueError(f"matmul hook returned shape {a.shape}, expected {(t, m)}")
    if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
        raise ValueError("matmul hook result outside int32")
    return a.astype(np.int32)


class BitLinear:
    """A ternary linear layer: ``trits`` (M, K) int8 and a float32 ``gamma``.

    Parameters
    ----------
    trits : array_like
        Weights in {-1, 0, 1}, shape ``(M, K)``.
    gamma : float
        Weight scale (``> 0``).
    act_bits : int
        Activation code width (8 or 4).
    """

    def __init__(self, trits, gamma, act_bits: int = 8):
        t = np.asarray(trits)
        self.trits = validate_trits(t, ndim=2)
        g = np.float32(gamma)
        if not np.isfinite(g) or g <= 0:
            raise ValueError(f"gamma must be a positive finite float, got {gamma!r}")
        self.gamma = g
        if act_bits not in (4, 8):
            raise ValueError(f"act_bits must be 4 or 8, got {act_bits!r}")
        self.act_bits = act_bits

    @classmethod
    def from_float(cls, W, act_bits: int = 8) -> BitLinear:
        """Quantize float weights with :func:`absmean_quantize`."""
        trits, gamma = absmean_quantize(W)
        return cls(trits, gamma, act_bits)

    @property
    def shape(self) -> tuple[int, int]:
        return self.trits.shape

    def __call__(self, x, matmul=None) -> np.ndarray:
        return bitlinear_forward(x, self.trits, self.gamma, self.act_bits, matmul)
