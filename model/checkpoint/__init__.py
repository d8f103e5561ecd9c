"""Checkpoints of the golden model: the project's ``.npz``, GGUF, Hugging Face, float.

A :class:`Checkpoint` is the format-neutral content of a BitNet b1.58 model (its
:class:`model.transformer.ModelConfig`, float tensors, ternary BitLinear weights with their
scales). One module per format:

* :mod:`model.checkpoint.npz`: the project's format (tq1-packed trits + gamma).
* :mod:`model.checkpoint.gguf_file`: GGUF of architecture ``bitnet`` (llama.cpp's converter and
  graph; TQ1_0 / TQ2_0 / F16 / F32).
* :mod:`model.checkpoint.hf`: Hugging Face directories: BitNet packed (``bitlinear`` and
  ``autobitlinear`` offline), BitNet float masters (``online``), LLaMA float reproductions;
  sharded or single safetensors (:mod:`model.checkpoint.safetensors_file`).
* :mod:`model.checkpoint.floats`: one float ``.safetensors`` / ``.npz`` file.

Every loader validates names, shapes, dtypes, values and config fields and raises
:class:`CheckpointError` naming the file and the tensor or field at fault.
"""

from __future__ import annotations

from pathlib import Path

from model.checkpoint.core import (
    Checkpoint,
    CheckpointError,
    CheckpointReader,
    TernaryTensor,
    absmean_ternary,
    from_float,
)
from model.checkpoint.floats import load_float
from model.checkpoint.gguf_file import GGUFCheckpointReader, gguf_name, load_gguf, save_gguf
from model.checkpoint.hf import load_hf, open_hf, save_hf
from model.checkpoint.npz import NpzReader, has_header, load_npz, save_npz

__all__ = ["Checkpoint", "CheckpointError", "CheckpointReader", "TernaryTensor",
           "absmean_ternary", "from_float", "gguf_name", "load", "load_float", "load_gguf",
           "load_hf", "load_npz", "open_checkpoint", "save", "save_gguf", "save_hf", "save_npz"]


def save(path, ck: Checkpoint, **kw):
    """Save by suffix: ``.npz`` (project format), ``.gguf``, or no suffix (an HF directory)."""
    path = Path(path)
    if path.suffix == ".npz":
        return save_npz(path, ck)
    if path.suffix == ".gguf":
        return save_gguf(path, ck, **kw)
    if path.suffix == "":
        return save_hf(path, ck)
    raise CheckpointError(f"{path}: unknown checkpoint suffix {path.suffix!r}")


def open_checkpoint(path, *, hidden_act: str | None = None) -> CheckpointReader:
    """Open a checkpoint for reading one tensor at a time (a Hugging Face directory, a
    project-format ``.npz`` or a ``.gguf``; ``hidden_act`` for GGUF as in :func:`load_gguf`):
    the config and every tensor's header are checked now, the data read on use, so a 2B-class
    model runs layer by layer through ``reader.transformer()`` in little memory. Float files
    (``.safetensors``, float ``.npz``) are read whole (:func:`load_float`)."""
    path = Path(path)
    if path.is_dir():
        return open_hf(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.suffix == ".gguf":
        return GGUFCheckpointReader(path, hidden_act)
    if path.suffix == ".npz" and has_header(path):
        return NpzReader(path)
    if path.suffix in (".npz", ".safetensors"):
        return _Loaded(load_float(path))
    raise CheckpointError(f"{path}: unknown checkpoint suffix {path.suffix!r} (want a Hugging "
                          "Face directory, .npz, .gguf or .safetensors)")


class _Loaded(CheckpointReader):
    """A reader over a checkpoint already in memory."""

    def __init__(self, ck: Checkpoint):
        self.ck, self.config, self.source = ck, ck.config, "checkpoint"

    def float(self, name):
        return self.ck.floats[name]

    def ternary(self, name):
        return self.ck.ternary[name]

    def read(self) -> Checkpoint:
        return self.ck


def load(path) -> Checkpoint:
    """Load by kind: a directory (Hugging Face: packed, float masters or LLaMA floats, single or
    sharded), ``.npz`` (the project's format, or float arrays without its header), ``.gguf``,
    ``.safetensors`` (one float file): :func:`open_checkpoint`, every tensor read."""
    return open_checkpoint(path).read()
