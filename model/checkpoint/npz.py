"""The project's own checkpoint format (``.npz``), and ``.npz`` files of float arrays.

One ``.npz`` file holding a JSON ``__header__`` (format, version, packing, the
:class:`model.transformer.ModelConfig`), float32 tensors under their parameter names and each
BitLinear as ``<name>.tq1`` (row-major trits packed 5 per byte with :func:`model.packing.pack_tq1`)
and ``<name>.gamma`` (a float32 scalar).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from model.checkpoint.core import (
    Checkpoint,
    CheckpointError,
    CheckpointReader,
    TernaryTensor,
    check_float,
    config_from,
)
from model.packing import pack_tq1, unpack_tq1
from model.transformer import param_shapes

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "NpzReader", "has_header", "load_npz", "read_npz",
           "save_npz"]

FORMAT_NAME = "bitnet-accel-checkpoint"
FORMAT_VERSION = 1
#: What a damaged ``.npz`` raises through ``zipfile`` and ``numpy.load``: a bad zip directory or
#: CRC, a corrupt deflate stream (``zlib.error``), an unsupported compression method
#: (``NotImplementedError``), a cut file, a malformed ``.npy`` header or a pickled array.
_UNREADABLE = (zipfile.BadZipFile, zlib.error, NotImplementedError, EOFError, OSError, ValueError,
               KeyError)


def save_npz(path, ck: Checkpoint) -> None:
    """Write ``ck`` in the project's format (see the module docstring)."""
    ck.validate()
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "packing": "tq1",
              "config": ck.config.to_dict()}
    arrays = {"__header__": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)}
    for name, a in ck.floats.items():
        arrays[name] = a
    for name, t in ck.ternary.items():
        arrays[name + ".tq1"] = pack_tq1(t.trits.reshape(-1))
        arrays[name + ".gamma"] = np.asarray(np.float32(t.gamma))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles); :class:`CheckpointError` if unreadable."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except _UNREADABLE as e:
        raise CheckpointError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") \
            from None


def has_header(path) -> bool:
    """True if the ``.npz`` file holds the project format's ``__header__``."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            return "__header__" in z.files
    except _UNREADABLE as e:
        raise CheckpointError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") \
            from None


def json_array(arrays: dict, key: str, path):
    """The JSON value stored as the uint8 array ``arrays[key]`` (popped)."""
    try:
        return json.loads(arrays.pop(key).astype(np.uint8).tobytes().decode())
    except (ValueError, UnicodeDecodeError, TypeError, RecursionError) as e:
        raise CheckpointError(f"{path}: malformed {key} ({type(e).__name__}: {e})") from None


class NpzReader(CheckpointReader):
    """A project-format ``.npz`` opened for reading one tensor at a time (members of the zip
    are decompressed when asked for)."""

    def __init__(self, path):
        path = Path(path)
        self.source = str(path)
        arrays = _LazyNpz(path)
        if "__header__" not in arrays:
            raise CheckpointError(f"{path}: no __header__ (not a {FORMAT_NAME} file)")
        header = json_array({"__header__": arrays["__header__"]}, "__header__", path)
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: malformed __header__ (not an object)")
        if header.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{path}: format {header.get('format')!r}, want "
                                  f"{FORMAT_NAME!r}")
        if header.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: unsupported version {header.get('version')!r}")
        if header.get("packing") != "tq1":
            raise CheckpointError(f"{path}: unsupported packing {header.get('packing')!r}")
        self.config = config_from(header.get("config"), str(path))
        self.shapes = param_shapes(self.config)
        self.arrays = arrays
        names = {"__header__"}
        for name, (_, is_bit) in self.shapes.items():
            for key in ((name + ".tq1", name + ".gamma") if is_bit else (name,)):
                if key not in arrays:
                    raise CheckpointError(f"{path}: missing tensor {key}")
                names.add(key)
        extra = sorted(set(arrays.names) - names)
        if extra:
            raise CheckpointError(f"{path}: unexpected tensor(s): {', '.join(extra[:5])}")

    def float(self, name: str) -> np.ndarray:
        a = self.arrays[name]
        check_float(self.source, name, a, self.shapes[name][0])
        return a

    def ternary(self, name: str) -> TernaryTensor:
        path, shape = self.source, self.shapes[name][0]
        packed, gamma = self.arrays[name + ".tq1"], self.arrays[name + ".gamma"]
        n = shape[0] * shape[1]
        if packed.dtype != np.uint8 or packed.ndim != 1:
            raise CheckpointError(f"{path}: tensor {name}.tq1 has dtype {packed.dtype} and "
                                  f"{packed.ndim} dims, want 1-D uint8")
        if packed.size != -(-n // 5):
            raise CheckpointError(f"{path}: tensor {name}.tq1 has {packed.size} bytes, want "
                                  f"{-(-n // 5)} for shape {shape}")
        if gamma.dtype != np.float32 or gamma.shape != ():
            raise CheckpointError(f"{path}: tensor {name}.gamma has dtype {gamma.dtype} shape "
                                  f"{gamma.shape}, want a float32 scalar")
        try:
            trits = unpack_tq1(packed, n)
        except ValueError as e:
            raise CheckpointError(f"{path}: tensor {name}.tq1: {e}") from None
        return TernaryTensor(trits.reshape(shape), np.float32(gamma))


class _LazyNpz:
    """The members of an ``.npz`` file, each read when indexed (no pickles)."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
                self.names = list(z.files)
        except _UNREADABLE as e:
            raise CheckpointError(f"{path}: not a readable .npz file ({type(e).__name__}: "
                                  f"{e})") from None

    def __contains__(self, name) -> bool:
        return name in self.names

    def __getitem__(self, name) -> np.ndarray:
        try:
            with open(self.path, "rb") as f, np.load(f, allow_pickle=False) as z:
                return z[name]
        except _UNREADABLE as e:
            raise CheckpointError(f"{self.path}: tensor {name} is unreadable "
                                  f"({type(e).__name__}: {e})") from None


def load_npz(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_npz`."""
    return NpzReader(path).read()
