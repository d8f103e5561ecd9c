"""Float checkpoints: one file of unpacked float weights, BitLinear weights quantized with absmean.

* ``.safetensors``: Hugging Face names (with or without the ``model.`` prefix); the config is
  the ``config.json`` beside the file (read as :mod:`model.checkpoint.hf` reads it) unless one
  is given.
* ``.npz``: float arrays under the parameter names, the config as a JSON ``__config__`` array
  or given.

A whole Hugging Face directory of float weights (BitNet masters, LLaMA reproductions) is read by
:func:`model.checkpoint.hf.load_hf`.
"""

from __future__ import annotations

from pathlib import Path

from model.checkpoint.core import Checkpoint, CheckpointError, config_from, from_float
from model.checkpoint.hf import HFLayout, HFReader, hf_layout, read_hf_config
from model.checkpoint.npz import json_array, read_npz
from model.checkpoint.safetensors_file import SafetensorsFile, TensorSet

__all__ = ["load_float"]


def load_float(path, config=None) -> Checkpoint:
    """Read float weights (``.safetensors`` or ``.npz``) and quantize BitLinear weights with
    absmean; ``config`` (a :class:`~model.transformer.ModelConfig` or dict) overrides the one
    the file or its directory carries."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        ts = TensorSet([SafetensorsFile(path)])
        if config is None:
            cfg_path = path.parent / "config.json"
            layout = hf_layout(read_hf_config(cfg_path), cfg_path)
            if layout.packed:
                raise CheckpointError(f"{cfg_path}: describes packed weights; load the "
                                      "directory, not one file")
        else:
            layout = HFLayout("float", config_from(config, str(path)), None, None)
        prefixed = any(k.startswith("model.") for k in ts.keys())
        return HFReader(ts, layout, path, prefix="model." if prefixed else "").read()
    if path.suffix == ".npz":
        tensors = read_npz(path)
        stored = json_array(tensors, "__config__", path) if "__config__" in tensors else None
        config = stored if config is None else config
        if config is None:
            raise CheckpointError(f"{path}: no model config: neither the project format's "
                                  "__header__ nor a float checkpoint's __config__")
        params = {k.removeprefix("model."): v for k, v in tensors.items()}
        return from_float(params, config_from(config, str(path)), source=str(path))
    raise CheckpointError(f"{path}: float checkpoints must be .safetensors or .npz")
