"""The format-neutral checkpoint: config, float tensors, ternary BitLinear weights.

A :class:`Checkpoint` holds a :class:`model.transformer.ModelConfig`, the float tensors
(embedding, norms, LM head) and, for every BitLinear projection, a trit matrix plus its
per-tensor scale ``gamma`` (the real weight is ``gamma * trits``). The parameter schema (names
and shapes) is :func:`model.transformer.param_shapes`; nothing here repeats it.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from model.quant import absmean_quantize
from model.transformer import ModelConfig, param_shapes

__all__ = ["FLOAT32_RANGE", "Checkpoint", "CheckpointError", "CheckpointReader", "LazyParams",
           "RowReader", "TernaryTensor", "absmean_ternary", "check_float", "check_ternary",
           "checked_gamma", "config_from", "from_float"]


class CheckpointError(ValueError):
    """A checkpoint file, field or tensor is malformed, truncated, unsupported or inconsistent.

    The message names the file and the field or tensor at fault."""


@dataclasses.dataclass(frozen=True)
class TernaryTensor:
    """One BitLinear weight: ``W = gamma * trits``.

    Parameters
    ----------
    trits : numpy.ndarray
        int8 ``(M, K)`` with values in ``{-1, 0, +1}``.
    gamma : numpy.float32
        The per-tensor scale (``> 0``).
    """

    trits: np.ndarray
    gamma: np.float32

    def __eq__(self, other):
        if not isinstance(other, TernaryTensor):
            return NotImplemented
        return (self.trits.shape == other.trits.shape
                and bool(np.array_equal(self.trits, other.trits))
                and np.float32(self.gamma).tobytes() == np.float32(other.gamma).tobytes())

    __hash__ = None


def absmean_ternary(w: np.ndarray) -> TernaryTensor:
    """Quantize a float weight with absmean (:func:`model.quant.absmean_quantize`, the one
    definition of it), wrapped as a :class:`TernaryTensor`."""
    trits, gamma = absmean_quantize(w)
    return TernaryTensor(trits, np.float32(gamma))


#: The range of a positive normal float32: ``norm_eps`` is used in float32 arithmetic, and GGUF
#: stores both ``norm_eps`` and ``rope_theta`` as float32.
FLOAT32_RANGE = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))


def config_from(config, source: str = "checkpoint") -> ModelConfig:
    """A :class:`ModelConfig` from a ``ModelConfig`` or a dict of its fields (aliases such as
    ``ffn_dim`` / ``max_seq_len`` accepted); invalid values raise :class:`CheckpointError`
    naming ``source`` and the field. Every loader builds its config here, so a checkpoint's
    config also has ``rope_theta`` and ``norm_eps`` within :data:`FLOAT32_RANGE`."""
    if not isinstance(config, ModelConfig):
        try:
            config = ModelConfig.from_dict(config)
        except (TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"{source}: invalid model config: {e}") from None
    lo, hi = FLOAT32_RANGE
    for name in ("rope_theta", "norm_eps"):
        v = getattr(config, name)
        if not lo <= v <= hi:
            raise CheckpointError(f"{source}: invalid model config: {name}={v!r} is outside the "
                                  f"float32 range [{lo:.4g}, {hi:.4g}]")
    return config


def checked_gamma(value: float, source: str) -> np.float32:
    """``value`` (a scale computed in float64) as a float32 ``gamma``; :class:`CheckpointError`
    naming ``source`` unless it is within :data:`FLOAT32_RANGE` (a finite, positive float32)."""
    lo, hi = FLOAT32_RANGE
    value = float(value)
    if not lo <= value <= hi:
        raise CheckpointError(f"{source}: gamma {value:.4g} is outside the float32 range "
                              f"[{lo:.4g}, {hi:.4g}]")
    return np.float32(value)


def check_ternary(source: str, name: str, t, shape: tuple[int, ...]) -> None:
    """Raise :class:`CheckpointError` unless ``t`` is a valid BitLinear weight of ``shape``."""
    if not isinstance(t, TernaryTensor):
        raise CheckpointError(f"{source}: tensor {name} is not a TernaryTensor")
    if t.trits.dtype != np.int8:
        raise CheckpointError(f"{source}: tensor {name} trits have dtype {t.trits.dtype}, want "
                              "int8")
    if t.trits.shape != shape:
        raise CheckpointError(f"{source}: tensor {name} has shape {t.trits.shape}, want {shape}")
    if t.trits.size and (t.trits.min() < -1 or t.trits.max() > 1):
        raise CheckpointError(f"{source}: tensor {name} has values outside -1/0/+1")
    g = np.float32(t.gamma)
    if not (np.isfinite(g) and g > 0):
        raise CheckpointError(f"{source}: tensor {name} has invalid gamma {g!r}")


def check_float(source: str, name: str, a, shape: tuple[int, ...]) -> None:
    """Raise :class:`CheckpointError` unless ``a`` is a finite float32 array of ``shape``."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        dt = getattr(a, "dtype", type(a))
        raise CheckpointError(f"{source}: tensor {name} has dtype {dt}, want float32")
    if a.shape != shape:
        raise CheckpointError(f"{source}: tensor {name} has shape {a.shape}, want {shape}")
    if not np.all(np.isfinite(a)):
        raise CheckpointError(f"{source}: tensor {name} has non-finite values")


@dataclasses.dataclass
class Checkpoint:
    """Format-neutral model content.

    Parameters
    ----------
    config : ModelConfig or dict
        The network's shape (a dict is converted with :meth:`ModelConfig.from_dict`).
    floats : dict[str, numpy.ndarray]
        float32 tensors (embedding, norms, LM head unless tied).
    ternary : dict[str, TernaryTensor]
        BitLinear weights.
    """

    config: ModelConfig
    floats: dict[str, np.ndarray]
    ternary: dict[str, TernaryTensor]

    def __post_init__(self):
        self.config = config_from(self.config)
        self.validate()

    @classmethod
    def read_from(cls, source, config, floats: dict, ternary: dict) -> Checkpoint:
        """A validated checkpoint whose errors name ``source`` (the file it was read from)."""
        try:
            return cls(config, floats, ternary)
        except CheckpointError as e:
            raise CheckpointError(f"{source}: {e}") from None

    def validate(self, source: str = "checkpoint") -> None:
        """Check names, shapes, dtypes and values; raise :class:`CheckpointError` on the first
        problem, naming the tensor."""
        shapes = param_shapes(self.config)
        have = set(self.floats) | set(self.ternary)
        missing = [n for n in shapes if n not in have]
        if missing:
            raise CheckpointError(f"{source}: missing tensor(s): {', '.join(missing[:5])}")
        extra = sorted(have - set(shapes))
        if extra:
            raise CheckpointError(f"{source}: unexpected tensor(s): {', '.join(extra[:5])}")
        for name, (shape, is_bit) in shapes.items():
            if is_bit:
                if name not in self.ternary:
                    raise CheckpointError(f"{source}: tensor {name} must be ternary (BitLinear)")
                check_ternary(source, name, self.ternary[name], shape)
            else:
                if name not in self.floats:
                    raise CheckpointError(f"{source}: tensor {name} must be a float tensor")
                check_float(source, name, self.floats[name], shape)

    def __eq__(self, other):
        if not isinstance(other, Checkpoint):
            return NotImplemented
        if self.config != other.config or set(self.floats) != set(other.floats):
            return False
        if set(self.ternary) != set(other.ternary):
            return False
        return (all(np.array_equal(self.floats[n], other.floats[n]) for n in self.floats)
                and all(self.ternary[n] == other.ternary[n] for n in self.ternary))

    __hash__ = None

    # -- golden model -----------------------------------------------------------------------
    def golden_params(self) -> dict:
        """Parameters in the layout of :func:`model.transformer.init_params`."""
        from model.transformer import params_from_ternary

        return params_from_ternary(
            self.config, dict(self.floats),
            {n: (t.trits, t.gamma) for n, t in self.ternary.items()})

    def transformer(self, matmul=None):
        """A golden :class:`model.transformer.Transformer` of this checkpoint."""
        from model.transformer import Transformer

        return Transformer(self.config, self.golden_params(), matmul=matmul)

    @property
    def ternary_weights(self) -> int:
        """Number of ternary weights."""
        return sum(t.trits.size for t in self.ternary.values())


def from_float(params: dict, config, source: str = "float checkpoint") -> Checkpoint:
    """A :class:`Checkpoint` from float parameters: BitLinear weights quantized with absmean,
    the others cast to float32. ``params`` maps the architecture's names to float arrays."""
    cfg = config_from(config, source)
    shapes = param_shapes(cfg)
    floats, ternary = {}, {}
    for name, (shape, is_bit) in shapes.items():
        if name not in params:
            raise CheckpointError(f"{source}: missing tensor {name}")
        a = np.asarray(params[name])
        if not np.issubdtype(a.dtype, np.floating):
            raise CheckpointError(f"{source}: tensor {name} has dtype {a.dtype}, want a float "
                                  "dtype")
        if a.shape != shape:
            raise CheckpointError(f"{source}: tensor {name} has shape {a.shape}, want {shape}")
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"{source}: tensor {name} has non-finite values")
        if is_bit:
            ternary[name] = absmean_ternary(a)
        else:
            floats[name] = a.astype(np.float32)
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise CheckpointError(f"{source}: unexpected tensor(s): {', '.join(extra[:5])}")
    return Checkpoint.read_from(source, cfg, floats, ternary)


# ----------------------------------------------------------------------------------------------
# lazy access: one tensor at a time, from memory-mapped files
# ----------------------------------------------------------------------------------------------
class RowReader:
    """Rows of a large float matrix (embedding, LM head) read on demand.

    Parameters
    ----------
    raw : numpy.ndarray
        The stored matrix, typically a view of a memory-mapped file (not read until indexed).
    to_float : callable
        Converts an array of stored rows to float32 (e.g. widens bf16 bit patterns).
    source : str
        Named in errors (non-finite values).
    shape : tuple of int, optional
        The matrix's shape, if not ``raw``'s (a quantized matrix stores bytes per row).
    """

    def __init__(self, raw: np.ndarray, to_float, source: str, shape=None):
        self.raw = raw
        self.to_float = to_float
        self.source = source
        self.shape = tuple(int(n) for n in (raw.shape if shape is None else shape))
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, idx) -> np.ndarray:
        rows = np.asarray(self.to_float(self.raw[idx]), dtype=np.float32)
        if not np.all(np.isfinite(rows)):
            raise CheckpointError(f"{self.source}: non-finite values in rows {idx!r}")
        return rows

    def blocks(self, n: int = 4096):
        """``(first row, float32 block)`` of up to ``n`` rows each, in order."""
        for r in range(0, self.shape[0], n):
            yield r, self[r:r + n]

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)


class CheckpointReader:
    """A checkpoint opened for reading one tensor at a time.

    Opening validates the config and every tensor's name, dtype and shape from the file's
    header (nothing else is read); :meth:`float` / :meth:`ternary` read and validate one tensor.
    Subclasses (one per format) set :attr:`config` and :attr:`source` and implement
    :meth:`float` and :meth:`ternary`; formats with memory-mapped storage also :meth:`rows`.
    """

    config: ModelConfig
    source: str

    def float(self, name: str) -> np.ndarray:
        """The float32 parameter ``name`` (an embedding, norm or the LM head)."""
        raise NotImplementedError

    def ternary(self, name: str) -> TernaryTensor:
        """The BitLinear parameter ``name``."""
        raise NotImplementedError

    def rows(self, name: str):
        """A float matrix as a :class:`RowReader`, or the array itself where the format keeps
        no memory map."""
        return self.float(name)

    def read(self) -> Checkpoint:
        """Every tensor, as a :class:`Checkpoint`."""
        floats, ternary = {}, {}
        for name, (_, is_bit) in param_shapes(self.config).items():
            if is_bit:
                ternary[name] = self.ternary(name)
            else:
                floats[name] = self.float(name)
        return Checkpoint.read_from(self.source, self.config, floats, ternary)

    def params(self, keep_projections: int = 7) -> LazyParams:
        """Golden-model parameters read on use (see :class:`LazyParams`)."""
        return LazyParams(self, keep_projections)

    def transformer(self, matmul=None):
        """A golden :class:`model.transformer.Transformer` that reads each layer's weights when
        it runs it: a layer of a 2B-class model at a time in memory."""
        from model.transformer import Transformer

        return Transformer(self.config, self.params(), matmul=matmul)


class LazyParams(Mapping):
    """The parameters of a :class:`CheckpointReader`, read when the golden model uses them.

    Norms stay cached once read (they are small); the embedding and LM head are
    :class:`RowReader` views; BitLinear weights are read per use, the last
    ``keep_projections`` kept (7: one layer), so running layer after layer holds one layer's
    trits at a time. Every tensor is checked as :meth:`Checkpoint.validate` checks it (a
    :class:`RowReader` by shape, and its values as rows are read) before the golden model
    (``lazy = True``) uses it."""

    lazy = True

    def __init__(self, reader: CheckpointReader, keep_projections: int = 7):
        self.reader = reader
        self.shapes = param_shapes(reader.config)
        self.keep = keep_projections
        self._floats: dict = {}
        self._recent: OrderedDict = OrderedDict()

    def __getitem__(self, name):
        from model.bitlinear import BitLinear

        if name not in self.shapes:
            raise KeyError(name)
        shape, is_bit = self.shapes[name]
        source = self.reader.source
        if is_bit:
            if name in self._recent:
                self._recent.move_to_end(name)
                return self._recent[name]
            t = self.reader.ternary(name)
            check_ternary(source, name, t, shape)
            p = BitLinear(t.trits, t.gamma, self.reader.config.act_bits)
            self._recent[name] = p
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)
            return p
        if name not in self._floats:
            big = name in ("embed_tokens.weight", "lm_head.weight")
            a = self.reader.rows(name) if big else self.reader.float(name)
            if isinstance(a, RowReader):     # values checked as rows are read
                if a.shape != shape:
                    raise CheckpointError(f"{source}: tensor {name} has shape {a.shape}, want "
                                          f"{shape}")
            else:
                check_float(source, name, a, shape)
            self._floats[name] = a
        return self._floats[name]

    def __iter__(self):
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)
