"""Reading ``.safetensors`` files (one file, or the shards of a ``*.safetensors.index.json``).

The format is an 8-byte little-endian header length, a JSON header mapping tensor names to
``{dtype, shape, data_offsets}`` (``__metadata__`` aside) and the raw little-endian data
(huggingface/safetensors ``README``). The whole header is validated when a file is opened;
tensor data is read from a memory map only when a tensor is asked for, so opening a
multi-gigabyte checkpoint costs its header alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from model.checkpoint.core import CheckpointError

__all__ = ["SafetensorsFile", "TensorSet", "bf16_bits", "open_safetensors", "read_safetensors",
           "to_native", "write_safetensors"]

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "U8": "u1", "I8": "i1",
           "I16": "<i2", "I32": "<i4", "I64": "<i8", "BOOL": "?"}
#: Header size bound (the format's own reference implementation refuses above 100 MB).
MAX_HEADER = 100_000_000


class SafetensorsFile:
    """One ``.safetensors`` file: validated header, lazily read tensors.

    Parameters
    ----------
    path : path-like
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise CheckpointError(f"{self.path}: truncated safetensors file "
                                          f"({size} bytes)")
                n = int.from_bytes(head, "little")
                if n > MAX_HEADER or 8 + n > size:
                    raise CheckpointError(f"{self.path}: truncated or oversized safetensors "
                                          f"header ({n} bytes announced, file has {size})")
                raw = f.read(n)
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot read ({e})") from None
        try:
            header = json.loads(raw.decode())
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            raise CheckpointError(f"{self.path}: malformed safetensors header "
                                  f"({type(e).__name__}: {e})") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path}: malformed safetensors header (not an object)")
        self._base = 8 + n
        data_len = size - self._base
        self.entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype, shape, (lo, hi) = info["dtype"], info["shape"], info["data_offsets"]
                shape = tuple(shape)
                if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                           for s in shape) or not (isinstance(lo, int) and isinstance(hi, int)):
                    raise TypeError
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(f"{self.path}: tensor {name} has a malformed header "
                                      "entry") from None
            if not isinstance(dtype, str) or dtype not in _DTYPES:
                raise CheckpointError(f"{self.path}: tensor {name} has unsupported dtype "
                                      f"{dtype!r}")
            nbytes = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
            if not (0 <= lo <= hi <= data_len) or hi - lo != nbytes:
                raise CheckpointError(f"{self.path}: tensor {name} data [{lo}, {hi}) is "
                                      f"truncated or does not match {dtype} {list(shape)}")
            self.entries[name] = (dtype, shape, lo, hi)
        self._map = None

    def __contains__(self, name) -> bool:
        return name in self.entries

    def keys(self):
        return self.entries.keys()

    def dtype(self, name: str) -> str:
        """The safetensors dtype name (``"U8"``, ``"BF16"`` ...) of ``name``."""
        return self.entries[name][0]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][1]

    def view(self, name: str) -> np.ndarray:
        """Tensor ``name`` as stored (BF16 as its uint16 bit patterns), a read-only view of the
        memory-mapped file: nothing is read until it is used."""
        dtype, shape, lo, hi = self.entries[name]
        if hi == lo:
            return np.zeros(shape, _DTYPES[dtype])
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self._base)
        return np.frombuffer(self._map[lo:hi], dtype=_DTYPES[dtype]).reshape(shape)

    def get(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a numpy array in native byte order (BF16 widened exactly to
        float32; a copy)."""
        return to_native(self.view(name), self.dtype(name))


def to_native(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values -> a native numpy array (BF16 bit patterns widened to float32; a copy)."""
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(raw.dtype.newbyteorder("="))


class TensorSet:
    """The tensors of one or more safetensors files under one name space."""

    def __init__(self, files: list[SafetensorsFile]):
        self.files = files
        self.where: dict[str, SafetensorsFile] = {}
        for f in files:
            for name in f.keys():
                if name in self.where:
                    raise CheckpointError(f"{f.path}: tensor {name} is also in "
                                          f"{self.where[name].path}")
                self.where[name] = f

    def __contains__(self, name) -> bool:
        return name in self.where

    def keys(self):
        return self.where.keys()

    def dtype(self, name: str) -> str:
        return self.where[name].dtype(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.where[name].shape(name)

    def get(self, name: str) -> np.ndarray:
        return self.where[name].get(name)

    def view(self, name: str) -> np.ndarray:
        return self.where[name].view(name)

    def source(self, name: str) -> Path:
        return self.where[name].path


def open_safetensors(directory) -> TensorSet:
    """The tensors of a Hugging Face directory: ``model.safetensors``, or the shards named by
    ``model.safetensors.index.json`` (every shard must exist and hold exactly the tensors the
    index assigns to it)."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    single = directory / "model.safetensors"
    if not index.exists():
        if not single.exists():
            raise CheckpointError(f"{directory}: no model.safetensors or "
                                  "model.safetensors.index.json")
        return TensorSet([SafetensorsFile(single)])
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise TypeError
    except OSError as e:
        raise CheckpointError(f"{index}: cannot read ({e})") from None
    except (ValueError, KeyError, TypeError, RecursionError):
        raise CheckpointError(f"{index}: malformed index (want {{\"weight_map\": "
                              "{tensor: shard file}}})") from None
    shards = {}
    for shard in sorted(set(weight_map.values())):
        p = directory / shard
        if Path(shard).name != shard or not p.is_file():
            raise CheckpointError(f"{index}: shard {shard!r} is missing or not a file name")
        shards[shard] = SafetensorsFile(p)
    for name, shard in weight_map.items():
        if name not in shards[shard]:
            raise CheckpointError(f"{index}: tensor {name} is not in its shard {shard}")
    ts = TensorSet(list(shards.values()))
    extra = sorted(set(ts.keys()) - set(weight_map))
    if extra:
        raise CheckpointError(f"{ts.source(extra[0])}: tensor {extra[0]} is not in {index.name}")
    return ts


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Every tensor of one ``.safetensors`` file (BF16 widened to float32)."""
    f = SafetensorsFile(path)
    return {name: f.get(name) for name in f.keys()}


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> the uint16 bit patterns of bfloat16, rounded to nearest even (finite input)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write a ``.safetensors`` file, streaming: ``tensors`` maps a name to ``(dtype, shape,
    chunks)`` with ``dtype`` a safetensors name (``"BF16"``, ``"U8"`` ...) and ``chunks`` an
    iterable of arrays whose bytes, in order, are the tensor's little-endian data (so a tensor
    larger than memory can be produced piece by piece). Sizes are checked while writing."""
    layout, offset = {}, 0
    for name, (dtype, shape, _) in tensors.items():
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
        n = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
        layout[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        layout["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    head = json.dumps(layout, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for name, (_, _, chunks) in tensors.items():
            want = layout[name]["data_offsets"][1] - layout[name]["data_offsets"][0]
            got = 0
            for chunk in chunks:
                data = np.ascontiguousarray(chunk).tobytes()
                f.write(data)
                got += len(data)
            if got != want:
                raise ValueError(f"tensor {name}: {got} bytes written, header says {want}")
