"""A layer and its activations exported on their own: ``.npy``, ``.npz``, ``.safetensors``.

Exported layers (:func:`read_weights`):

* ``.npy``: one ``(M, K)`` matrix: float (quantized with absmean) or integers in {-1, 0, 1};
* ``.npz`` / ``.safetensors``: ``weight`` as above, or packed as transformers writes BitNet
  (uint8 ``(M/4, K)`` plus ``weight_scale``), or ``tq1`` bytes with ``shape`` (and ``gamma``);
  a file holding a single array is read as that array.

Activations (:func:`read_acts`, same suffixes, one array or ``acts``): float ``(T, K)``
activations, quantized per token with absmax, or int8 codes. A bad file raises
:class:`sim.layer_run.RunLayerError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.layer_run import RunLayerError

__all__ = ["read_acts", "read_weights"]


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    from model.checkpoint import CheckpointError
    from model.checkpoint.npz import read_npz
    from model.checkpoint.safetensors_file import read_safetensors

    try:
        if path.suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        if path.suffix == ".npz":
            return read_npz(path)
        if path.suffix == ".safetensors":
            return read_safetensors(path)
    except CheckpointError as e:
        raise RunLayerError(str(e)) from None
    except (OSError, ValueError, EOFError) as e:
        raise RunLayerError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    raise RunLayerError(f"{path}: want .npy, .npz or .safetensors")


def _single(arrays: dict, key: str, path: Path) -> np.ndarray:
    if key in arrays:
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise RunLayerError(f"{path}: holds {sorted(arrays)}; name the array {key!r}")


def read_weights(path) -> tuple[np.ndarray, np.float32 | None]:
    """An exported layer -> ``(trits (M, K) int8, gamma or None)`` (see the module docstring)."""
    from model.packing import unpack_i2_hf, unpack_tq1
    from model.quant import absmean_quantize

    path = Path(path)
    arrays = _read_arrays(path)
    if "tq1" in arrays:
        shape = arrays.get("shape")
        if shape is None or np.asarray(shape).shape != (2,):
            raise RunLayerError(f"{path}: tq1 bytes need 'shape' = [M, K]")
        m, k = (int(v) for v in np.asarray(shape))
        try:
            trits = unpack_tq1(arrays["tq1"].astype(np.uint8), m * k).reshape(m, k)
        except (ValueError, TypeError) as e:
            raise RunLayerError(f"{path}: tq1: {e}") from None
        gamma = arrays.get("gamma")
        return trits, None if gamma is None else np.float32(np.asarray(gamma).reshape(-1)[0])
    w = _single(arrays, "weight", path)
    if w.ndim != 2 or w.size == 0:
        raise RunLayerError(f"{path}: weight has shape {w.shape}, want a 2-D (M, K) matrix")
    if w.dtype == np.uint8 and "weight_scale" in arrays:
        try:
            trits = unpack_i2_hf(w, 4 * w.shape[0])
        except ValueError as e:
            raise RunLayerError(f"{path}: packed weight: {e}") from None
        return trits, np.float32(np.asarray(arrays["weight_scale"]).reshape(-1)[0])
    if np.issubdtype(w.dtype, np.floating):
        if not np.all(np.isfinite(w)):
            raise RunLayerError(f"{path}: weight has non-finite values")
        trits, gamma = absmean_quantize(w)
        return trits, gamma
    if np.issubdtype(w.dtype, np.integer) and w.dtype != np.uint8:
        if not np.isin(w, (-1, 0, 1)).all():
            raise RunLayerError(f"{path}: integer weights must be trits in {{-1, 0, 1}}")
        return w.astype(np.int8), None
    raise RunLayerError(f"{path}: weight dtype {w.dtype}: want float, trits, or packed uint8 "
                        "with weight_scale")


def read_acts(path, k: int, act_bits: int) -> np.ndarray:
    """Exported activations -> int8 codes ``(T, K)`` (float rows quantized with absmax)."""
    from model.quant import absmax_quantize

    path = Path(path)
    a = _single(_read_arrays(path), "acts", path)
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim != 2 or a.shape[1] != k or a.shape[0] == 0:
        raise RunLayerError(f"{path}: activations have shape {a.shape}, want (T, K={k})")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise RunLayerError(f"{path}: activations have non-finite values")
        return absmax_quantize(a, act_bits)[0]
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    if not np.issubdtype(a.dtype, np.integer) or a.min() < lo or a.max() > hi:
        raise RunLayerError(f"{path}: integer activations must be codes in [{lo}, {hi}]")
    return a.astype(np.int8)
