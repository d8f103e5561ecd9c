"""The format-neutral checkpoint: config, float tensors, ternary BitLinear weights.

A :class:`Checkpoint` holds a :class:`model.transformer.ModelConfig`, the float tensors
(embedding, norms, LM head) and, for every BitLinear projection, a trit matrix plus its
per-tensor scale ``gamma`` (the real weight is ``gamma * trits``). The parameter schema (names
and shapes) is :func:`model.transformer.param_shapes`; nothing here repeats it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from model.quant import absmean_quantize
from model.transformer import ModelConfig, param_shapes

__all__ = ["Checkpoint", "CheckpointError", "TernaryTensor", "absmean_ternary", "config_from",
           "from_float"]


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


def config_from(config, source: str = "checkpoint") -> ModelConfig:
    """A :class:`ModelConfig` from a ``ModelConfig`` or a dict of its fields (aliases such as
    ``ffn_dim`` / ``max_seq_len`` accepted); invalid values raise :class:`CheckpointError`
    naming ``source`` and the field."""
    if isinstance(config, ModelConfig):
        return config
    try:
        return ModelConfig.from_dict(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid model config: {e}") from None


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
                t = self.ternary[name]
                if not isinstance(t, TernaryTensor):
                    raise CheckpointError(f"{source}: tensor {name} is not a TernaryTensor")
                if t.trits.dtype != np.int8:
                    raise CheckpointError(
                        f"{source}: tensor {name} trits have dtype {t.trits.dtype}, want int8")
                if t.trits.shape != shape:
                    raise CheckpointError(
                        f"{source}: tensor {name} has shape {t.trits.shape}, want {shape}")
                if np.any(np.abs(t.trits.astype(np.int16)) > 1):
                    raise CheckpointError(f"{source}: tensor {name} has values outside -1/0/+1")
                g = np.float32(t.gamma)
                if not (np.isfinite(g) and g > 0):
                    raise CheckpointError(f"{source}: tensor {name} has invalid gamma {g!r}")
            else:
                if name not in self.floats:
                    raise CheckpointError(f"{source}: tensor {name} must be a float tensor")
                a = self.floats[name]
                if not isinstance(a, np.ndarray) or a.dtype != np.float32:
                    dt = getattr(a, "dtype", type(a))
                    raise CheckpointError(f"{source}: tensor {name} has dtype {dt}, want float32")
                if a.shape != shape:
                    raise CheckpointError(
                        f"{source}: tensor {name} has shape {a.shape}, want {shape}")
                if not np.all(np.isfinite(a)):
                    raise CheckpointError(f"{source}: tensor {name} has non-finite values")

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
