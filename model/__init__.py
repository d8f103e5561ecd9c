"""BitNet b1.58 golden model (numpy) and the shared accelerator configuration.

Public names are loaded lazily so that ``import model.accel`` stays free of numpy:

* :mod:`model.accel`: ``AccelConfig``, ``acc_bound``, ``acc_width_for``
* :mod:`model.packing`: ``pack_i2``, ``unpack_i2``, ``pack_tq1``, ``unpack_tq1``,
  ``TritStreamDecoder``, ``pack_layer_stream``, ``unpack_layer_stream``, ``pack_i2_hf``,
  ``unpack_i2_hf``, ``decode_tq1_byte``, ``tq1_byte_is_valid``, ``TQ1_VALID_BYTES``
* :mod:`model.quant`: ``absmean_quantize``, ``absmax_quantize``
* :mod:`model.bitlinear`: ``ternary_matmul``, ``bitlinear_forward``, ``BitLinear``
* :mod:`model.nn`: ``rms_norm``, ``rope``, ``causal_attention``, ``relu2``, ``silu``
* :mod:`model.transformer`: ``ModelConfig``, ``Transformer``, ``init_params``, ``KVCache``,
  ``params_from_ternary``, ``params_from_float``, ``swiglu_ffn``, ``relu2_ffn``
"""

import importlib

_EXPORTS = {
    "AccelConfig": "accel", "acc_bound": "accel", "acc_width_for": "accel",
    "pack_i2": "packing", "unpack_i2": "packing", "pack_tq1": "packing", "unpack_tq1": "packing",
    "TritStreamDecoder": "packing", "pack_layer_stream": "packing",
    "unpack_layer_stream": "packing", "pack_i2_hf": "packing", "unpack_i2_hf": "packing",
    "decode_tq1_byte": "packing", "tq1_byte_is_valid": "packing", "TQ1_VALID_BYTES": "packing",
    "absmean_quantize": "quant", "absmax_quantize": "quant",
    "ternary_matmul": "bitlinear", "bitlinear_forward": "bitlinear", "BitLinear": "bitlinear",
    "rms_norm": "nn", "rope": "nn", "causal_attention": "nn", "relu2": "nn", "silu": "nn",
    "ModelConfig": "transformer", "Transformer": "transformer", "init_params": "transformer",
    "KVCache": "transformer", "params_from_ternary": "transformer",
    "params_from_float": "transformer", "swiglu_ffn": "transformer", "relu2_ffn": "transformer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"model.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
