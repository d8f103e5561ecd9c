"""Checkpoints of the golden model: the project's format, GGUF, Hugging Face, float.

A :class:`Checkpoint` is the format-neutral content of a BitNet b1.58 model: its
:class:`model.transformer.ModelConfig` fields, the float tensors (embedding, norms, LM head) and,
for every BitLinear projection, a trit matrix plus its per-tensor absmean scale ``gamma`` (the
real weight is ``gamma * trits``). Parameter names are those of ``docs/architecture.md`` section 6.

Formats (each with ``save_*`` / ``load_*``; :func:`load` picks by suffix):

* **npz** (the project's own): one ``.npz`` file holding a JSON header (format, version, model
  config), float32 tensors under their names and each BitLinear as ``<name>.tq1`` (row-major trits
  packed 5 per byte with the project's ``tq1`` packing, docs/architecture.md) and ``<name>.gamma``
  (float32).
* **gguf**: via the ``gguf`` package, architecture ``bitnet`` and llama.cpp tensor names
  (``blk.N.attn_q.weight`` ...). BitLinear weights are ``TQ1_0`` or ``TQ2_0`` tensors holding the
  trits with a block scale of 1 and a separate F32 ``blk.N.attn_q.scale`` tensor holding
  ``gamma`` (the layout llama.cpp's BitNet graph multiplies by after the matmul). A GGUF whose
  TQ blocks carry ``gamma`` in the block scale instead (llama.cpp's ``convert_hf_to_gguf.py``
  output) imports too. TQ blocks hold 256 weights along a row, so a tensor whose rows are not a
  multiple of 256 cannot be TQ: like llama.cpp's converter, the writer then falls back to an F16
  tensor of the (exactly representable) trits unless ``fallback=None``.
* **hf**: a Hugging Face BitNet directory (``config.json`` + ``model.safetensors``): BitLinear
  weights packed as uint8, 4 trits per byte, rows interleaved as transformers' BitNet
  integration packs them (``pack_weights`` in ``src/transformers/integrations/bitnet.py``),
  plus ``weight_scale``. That integration's ``BitLinear.forward`` computes
  ``y = (xq @ W.T) / (input_scale * weight_scale)``, so ``weight_scale = 1 / gamma``; it is
  written as float64 so that ``1 / weight_scale`` gives back the float32 ``gamma`` exactly.
* **float**: a float checkpoint (safetensors with unpacked float weights, HF-style names with or
  without the ``model.`` prefix, or a ``.npz`` of float arrays): BitLinear weights are quantized
  with absmean (:func:`absmean_ternary`).

Every loader validates names, shapes, dtypes and values and raises :class:`CheckpointError`
naming the file and the tensor at fault.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "BITLINEAR",
    "Checkpoint",
    "CheckpointError",
    "TernaryTensor",
    "absmean_ternary",
    "pack_i2_hf",
    "pack_tq1",
    "unpack_i2_hf",
    "unpack_tq1",
    "from_float",
    "load",
    "load_float",
    "load_gguf",
    "load_hf",
    "load_npz",
    "param_shapes",
    "save",
    "save_gguf",
    "save_hf",
    "save_npz",
]

FORMAT_NAME = "bitnet-accel-checkpoint"
FORMAT_VERSION = 1

#: BitLinear projections of one layer, by parameter-name suffix.
BITLINEAR = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
)

#: Model-config fields every checkpoint must carry.
CONFIG_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "ffn_dim", "max_seq_len",
                 "rope_theta", "norm_eps")


class CheckpointError(ValueError):
    """A checkpoint file or tensor is malformed, truncated, of the wrong shape or dtype."""


@dataclasses.dataclass(frozen=True)
class TernaryTensor:
    """One BitLinear weight: ``W = gamma * trits``.

    Parameters
    ----------
    trits : numpy.ndarray
        int8 ``(M, K)`` with values in ``{-1, 0, +1}``.
    gamma : numpy.float32
        The per-tensor absmean scale (``> 0``).
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
    """Quantize a float weight with absmean (BitNet b1.58, arXiv 2402.17764 eq. 1-3;
    transformers' ``WeightQuant``): the golden model's :func:`model.quant.absmean_quantize`
    (the one definition of it), wrapped as a :class:`TernaryTensor`."""
    from model.quant import absmean_quantize

    trits, gamma = absmean_quantize(w)
    return TernaryTensor(trits, np.float32(gamma))


# ----------------------------------------------------------------------------------------------
# tensor packings (docs/architecture.md section 3; must agree with model.packing, tested)
# ----------------------------------------------------------------------------------------------
_TQ1_WEIGHTS = np.array([81, 27, 9, 3, 1], dtype=np.int64)


def pack_tq1(trits: np.ndarray) -> np.ndarray:
    """Flat trits -> ``tq1`` bytes: 5 trits per byte, ``ceil(q * 256 / 243)`` with
    ``q = 81 d0 + 27 d1 + 9 d2 + 3 d3 + d4``, ``d = trit + 1``; the tail padded with 0 trits."""
    t = np.asarray(trits).reshape(-1)
    n = -(-t.size // 5)
    d = np.ones(n * 5, dtype=np.int64)
    d[:t.size] = t.astype(np.int64) + 1
    q = d.reshape(n, 5) @ _TQ1_WEIGHTS
    return ((q * 256 + 242) // 243).astype(np.uint8)


def unpack_tq1(data: np.ndarray, n: int) -> np.ndarray:
    """``tq1`` bytes -> ``n`` flat int8 trits. Digit ``i`` is ``(3 * ((b * 3**i) mod 256)) >> 8``;
    a byte the encoder never produces, or a non-zero padding trit, raises ``ValueError``."""
    b = np.asarray(data, dtype=np.uint8).reshape(-1)
    if b.size != -(-n // 5):
        raise ValueError(f"{b.size} bytes for {n} trits, want {-(-n // 5)}")
    bi = b.astype(np.int64)
    d = np.stack([(3 * ((bi * 3 ** i) & 0xFF)) >> 8 for i in range(5)], axis=1)
    trits = (d - 1).astype(np.int8).reshape(-1)
    bad = np.flatnonzero(pack_tq1(trits) != b)
    if bad.size:
        raise ValueError(f"invalid tq1 byte {int(b[bad[0]])} at offset {int(bad[0])}")
    if np.any(trits[n:]):
        raise ValueError("non-zero padding trits after the last trit")
    return trits[:n]


def pack_i2_hf(trits: np.ndarray) -> np.ndarray:
    """``(M, K)`` trits -> ``(ceil(M/4), K)`` uint8 in transformers' BitNet layout: row ``r`` of
    the packed tensor holds trit rows ``r, r + R, r + 2R, r + 3R`` (``R = ceil(M/4)``) in bits
    ``[1:0], [3:2], [5:4], [7:6]`` as ``trit + 1`` (``pack_weights`` in
    ``src/transformers/integrations/bitnet.py``)."""
    t = np.asarray(trits)
    m = t.shape[0]
    rows = -(-m // 4)
    out = np.zeros((rows, *t.shape[1:]), dtype=np.uint8)
    for i in range(4):
        part = t[i * rows:(i + 1) * rows]
        out[:part.shape[0]] |= (part.astype(np.int16) + 1).astype(np.uint8) << (2 * i)
    return out


def unpack_i2_hf(packed: np.ndarray, m: int) -> np.ndarray:
    """Inverse of :func:`pack_i2_hf` for ``m`` rows; code 3 raises ``ValueError``."""
    p = np.asarray(packed, dtype=np.uint8)
    codes = np.concatenate([(p >> (2 * i)) & 3 for i in range(4)], axis=0)
    bad = np.argwhere(codes == 3)
    if bad.size:
        r, c = bad[0][0], bad[0][1] if bad.shape[1] > 1 else 0
        raise ValueError(f"invalid 2-bit code 3 for trit row {int(r)}, column {int(c)}")
    trits = codes.astype(np.int8) - 1
    if np.any(trits[m:]):
        raise ValueError("non-zero padding rows")
    return trits[:m]


# ----------------------------------------------------------------------------------------------
# the checkpoint
# ----------------------------------------------------------------------------------------------
def _norm_config(config) -> dict:
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise CheckpointError(f"model config must be a dict or dataclass, got {type(config)}")
    missing = [k for k in CONFIG_FIELDS if k not in config]
    if missing:
        raise CheckpointError(f"model config lacks field(s): {', '.join(missing)}")
    return dict(config)


def param_shapes(config) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Every parameter of a model: ``name -> (shape, is_bitlinear)``, in a fixed order."""
    c = _norm_config(config)
    d, f, v = int(c["d_model"]), int(c["ffn_dim"]), int(c["vocab_size"])
    n_heads = int(c["n_heads"])
    n_kv = int(c.get("n_kv_heads") or n_heads)
    kv = d // n_heads * n_kv
    shapes: dict[str, tuple[tuple[int, ...], bool]] = {"embed_tokens.weight": ((v, d), False)}
    for i in range(int(c["n_layers"])):
        p = f"layers.{i}."
        shapes[p + "input_layernorm.weight"] = ((d,), False)
        shapes[p + "self_attn.q_proj.weight"] = ((d, d), True)
        shapes[p + "self_attn.k_proj.weight"] = ((kv, d), True)
        shapes[p + "self_attn.v_proj.weight"] = ((kv, d), True)
        shapes[p + "self_attn.o_proj.weight"] = ((d, d), True)
        shapes[p + "self_attn.attn_sub_norm.weight"] = ((d,), False)
        shapes[p + "post_attention_layernorm.weight"] = ((d,), False)
        shapes[p + "mlp.gate_proj.weight"] = ((f, d), True)
        shapes[p + "mlp.up_proj.weight"] = ((f, d), True)
        shapes[p + "mlp.down_proj.weight"] = ((d, f), True)
        shapes[p + "mlp.ffn_sub_norm.weight"] = ((f,), False)
    shapes["norm.weight"] = ((d,), False)
    shapes["lm_head.weight"] = ((v, d), False)
    return shapes


@dataclasses.dataclass
class Checkpoint:
    """Format-neutral model content.

    Parameters
    ----------
    config : dict
        :class:`model.transformer.ModelConfig` fields.
    floats : dict[str, numpy.ndarray]
        float32 tensors (embedding, norms, LM head).
    ternary : dict[str, TernaryTensor]
        BitLinear weights.
    """

    config: dict
    floats: dict[str, np.ndarray]
    ternary: dict[str, TernaryTensor]

    def __post_init__(self):
        self.config = _norm_config(self.config)
        self.validate()

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
    def model_config(self):
        """The :class:`model.transformer.ModelConfig` of this checkpoint."""
        from model.transformer import ModelConfig

        return ModelConfig(**self.config)

    def golden_params(self) -> dict:
        """Parameters in the layout of :func:`model.transformer.init_params`."""
        from model.transformer import params_from_ternary

        return params_from_ternary(
            self.model_config(),
            {n: a for n, a in self.floats.items()},
            {n: (t.trits, t.gamma) for n, t in self.ternary.items()})

    def transformer(self, matmul=None):
        """A golden :class:`model.transformer.Transformer` of this checkpoint."""
        from model.transformer import Transformer

        if matmul is None:
            return Transformer(self.model_config(), self.golden_params())
        return Transformer(self.model_config(), self.golden_params(), matmul=matmul)

    @property
    def ternary_weights(self) -> int:
        """Number of ternary weights."""
        return sum(t.trits.size for t in self.ternary.values())


def from_float(params: dict, config) -> Checkpoint:
    """A :class:`Checkpoint` from float parameters: BitLinear weights quantized with absmean,
    the others cast to float32. ``params`` maps the architecture's names to float arrays."""
    cfg = _norm_config(config)
    shapes = param_shapes(cfg)
    floats, ternary = {}, {}
    for name, (_, is_bit) in shapes.items():
        if name not in params:
            raise CheckpointError(f"float checkpoint: missing tensor {name}")
        a = np.asarray(params[name])
        if not np.issubdtype(a.dtype, np.floating):
            raise CheckpointError(f"float checkpoint: tensor {name} has dtype {a.dtype}, "
                                  "want a float dtype")
        if is_bit:
            if a.shape != shapes[name][0]:
                raise CheckpointError(f"float checkpoint: tensor {name} has shape {a.shape}, "
                                      f"want {shapes[name][0]}")
            ternary[name] = absmean_ternary(a)
        else:
            floats[name] = a.astype(np.float32)
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise CheckpointError(f"float checkpoint: unexpected tensor(s): {', '.join(extra[:5])}")
    return Checkpoint(cfg, floats, ternary)


# ----------------------------------------------------------------------------------------------
# the project's format (.npz)
# ----------------------------------------------------------------------------------------------
def save_npz(path, ck: Checkpoint) -> None:
    """Write ``ck`` in the project's format (see the module docstring)."""
    ck.validate()
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "packing": "tq1",
              "config": ck.config}
    arrays = {"__header__": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)}
    for name, a in ck.floats.items():
        arrays[name] = a
    for name, t in ck.ternary.items():
        arrays[name + ".tq1"] = pack_tq1(t.trits.reshape(-1))
        arrays[name + ".gamma"] = np.asarray(np.float32(t.gamma))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _read_npz(path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") \
            from e


def load_npz(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_npz`."""
    path = Path(path)
    arrays = _read_npz(path)
    if "__header__" not in arrays:
        raise CheckpointError(f"{path}: no __header__ (not a {FORMAT_NAME} file)")
    try:
        header = json.loads(arrays.pop("__header__").astype(np.uint8).tobytes().decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: malformed __header__ ({e})") from e
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: format {header.get('format')!r}, want {FORMAT_NAME!r}")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported version {header.get('version')!r}")
    if header.get("packing") != "tq1":
        raise CheckpointError(f"{path}: unsupported packing {header.get('packing')!r}")
    config = _norm_config(header.get("config"))
    floats, ternary = {}, {}
    for name, (shape, is_bit) in param_shapes(config).items():
        if not is_bit:
            if name not in arrays:
                raise CheckpointError(f"{path}: missing tensor {name}")
            floats[name] = arrays.pop(name)
            continue
        for suffix in (".tq1", ".gamma"):
            if name + suffix not in arrays:
                raise CheckpointError(f"{path}: missing tensor {name}{suffix}")
        packed, gamma = arrays.pop(name + ".tq1"), arrays.pop(name + ".gamma")
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
            raise CheckpointError(f"{path}: tensor {name}.tq1: {e}") from e
        ternary[name] = TernaryTensor(trits.astype(np.int8).reshape(shape), np.float32(gamma))
    if arrays:
        raise CheckpointError(f"{path}: unexpected tensor(s): {', '.join(sorted(arrays)[:5])}")
    return Checkpoint(config, floats, ternary)


# ----------------------------------------------------------------------------------------------
# GGUF
# ----------------------------------------------------------------------------------------------
_GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.attn_sub_norm.weight": "attn_sub_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "mlp.ffn_sub_norm.weight": "ffn_sub_norm.weight",
}
_GGUF_TOP = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
_GGUF_ARCH = "bitnet"
_GGUF_CONFIG_KEY = "bitnet_accel.model_config"


def gguf_name(name: str) -> str:
    """The llama.cpp (GGUF) tensor name of an architecture parameter name."""
    if name in _GGUF_TOP:
        return _GGUF_TOP[name]
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
    if not m or m.group(2) not in _GGUF_LAYER:
        raise KeyError(f"no GGUF name for parameter {name}")
    return f"blk.{m.group(1)}.{_GGUF_LAYER[m.group(2)]}"


def save_gguf(path, ck: Checkpoint, qtype: str = "TQ1_0", fallback: str | None = "F16") -> dict:
    """Write ``ck`` as GGUF with ternary tensors of type ``qtype`` (``"TQ1_0"``/``"TQ2_0"``).

    Tensors whose row length (``K``) is not a multiple of the 256-weight TQ block are written as
    ``fallback`` (``"F16"`` or ``"F32"``: the trits as exact floats) or, with ``fallback=None``,
    refused with a :class:`CheckpointError`. Returns ``{parameter name: GGUF type name}``.
    """
    import gguf

    qtypes = {"TQ1_0": gguf.GGMLQuantizationType.TQ1_0,
              "TQ2_0": gguf.GGMLQuantizationType.TQ2_0}
    if qtype not in qtypes:
        raise ValueError(f"qtype must be one of {sorted(qtypes)}, got {qtype!r}")
    if fallback not in (None, "F16", "F32"):
        raise ValueError(f"fallback must be None, 'F16' or 'F32', got {fallback!r}")
    ck.validate()
    qt = qtypes[qtype]
    block, _ = gguf.GGML_QUANT_SIZES[qt]
    c = ck.config
    w = gguf.GGUFWriter(str(path), _GGUF_ARCH)
    w.add_name("bitnet-accel")
    w.add_context_length(int(c["max_seq_len"]))
    w.add_embedding_length(int(c["d_model"]))
    w.add_block_count(int(c["n_layers"]))
    w.add_feed_forward_length(int(c["ffn_dim"]))
    w.add_head_count(int(c["n_heads"]))
    w.add_head_count_kv(int(c.get("n_kv_heads") or c["n_heads"]))
    w.add_rope_freq_base(float(c["rope_theta"]))
    w.add_layer_norm_rms_eps(float(c["norm_eps"]))
    w.add_vocab_size(int(c["vocab_size"]))
    w.add_string(_GGUF_CONFIG_KEY, json.dumps(c, sort_keys=True))
    types = {}
    for name, (_, is_bit) in param_shapes(c).items():
        gname = gguf_name(name)
        if not is_bit:
            w.add_tensor(gname, ck.floats[name])
            types[name] = "F32"
            continue
        t = ck.ternary[name]
        k = t.trits.shape[1]
        if k % block == 0:
            data = gguf.quants.quantize(t.trits.astype(np.float32), qt)
            w.add_tensor(gname, data, raw_dtype=qt)
            types[name] = qtype
        elif fallback is None:
            raise CheckpointError(f"tensor {name}: row length {k} is not a multiple of the "
                                  f"{qtype} block size {block}")
        else:
            dt = np.float16 if fallback == "F16" else np.float32
            w.add_tensor(gname, t.trits.astype(dt))
            types[name] = fallback
        w.add_tensor(gname.removesuffix(".weight") + ".scale",
                     np.array([np.float32(t.gamma)], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


def _gguf_ternary(gname: str, rt, scale: np.float32 | None, path) -> TernaryTensor:
    """Trits and gamma of one GGUF tensor (TQ1_0, TQ2_0 or a ternary-valued float tensor)."""
    import gguf

    qt = rt.tensor_type
    shape = tuple(int(s) for s in reversed(rt.shape.tolist()))
    if len(shape) != 2:
        raise CheckpointError(f"{path}: tensor {gname} has {len(shape)} dims, want 2")
    m, k = shape
    if qt in (gguf.GGMLQuantizationType.TQ1_0, gguf.GGMLQuantizationType.TQ2_0):
        block, type_size = gguf.GGML_QUANT_SIZES[qt]
        raw = np.asarray(rt.data, dtype=np.uint8)
        if k % block or raw.size != m * (k // block) * type_size:
            raise CheckpointError(f"{path}: tensor {gname} ({qt.name}) has {raw.size} bytes, "
                                  f"want {m * (k // block) * type_size} for shape {shape}")
        blocks = raw.reshape(-1, type_size)
        d = blocks[:, -2:].copy().view(np.float16).astype(np.float32).reshape(-1)
        values = gguf.quants.dequantize(blocks, qt).reshape(-1, block)
        trits = np.sign(values).astype(np.int8)
        # validate: every stored byte must be what the encoder writes for these trits (catches
        # invalid base-3 bytes in TQ1_0 and the unused code 3 in TQ2_0)
        qs = gguf.quants.quantize(trits.astype(np.float32).reshape(-1, block), qt)
        if not np.array_equal(qs[:, :-2], blocks[:, :-2]):
            bad = int(np.flatnonzero(np.any(qs[:, :-2] != blocks[:, :-2], axis=1))[0])
            raise CheckpointError(f"{path}: tensor {gname} ({qt.name}) block {bad} holds an "
                                  "invalid trit code")
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise CheckpointError(f"{path}: tensor {gname} has invalid block scales")
        nz = d[np.any(trits != 0, axis=1)]
        if nz.size and np.any(nz != nz[0]):
            raise CheckpointError(f"{path}: tensor {gname} has differing block scales; only "
                                  "per-tensor ternary weights are supported")
        block_scale = np.float32(nz[0]) if nz.size else np.float32(1.0)
        trits = trits.reshape(m, k)
    elif qt in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32,
                gguf.GGMLQuantizationType.BF16):
        vals = gguf.quants.dequantize(np.asarray(rt.data), qt).astype(np.float32)
        if vals.size != m * k:
            raise CheckpointError(f"{path}: tensor {gname} has {vals.size} values, want {m * k}")
        vals = vals.reshape(m, k)
        mags = np.unique(np.abs(vals[vals != 0]))
        if mags.size > 1:
            # dense float weights: quantize with absmean, as a float checkpoint
            if scale is not None:
                raise CheckpointError(f"{path}: tensor {gname} is not ternary-valued but has "
                                      "a .scale tensor")
            return absmean_ternary(vals)
        trits = np.sign(vals).astype(np.int8)
        block_scale = np.float32(mags[0]) if mags.size else np.float32(1.0)
    else:
        raise CheckpointError(f"{path}: tensor {gname} has type {qt.name}; BitLinear weights "
                              "must be TQ1_0, TQ2_0, F16, BF16 or F32")
    gamma = block_scale if scale is None else np.float32(block_scale * scale)
    return TernaryTensor(trits, np.float32(gamma))


def load_gguf(path) -> Checkpoint:
    """Read a GGUF written by :func:`save_gguf` (or a llama.cpp BitNet-style GGUF of the same
    architecture with TQ1_0/TQ2_0 tensors whose block scale is ``gamma``)."""
    import gguf

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
        tensors = {t.name: t for t in reader.tensors}
        field = reader.get_field(_GGUF_CONFIG_KEY)
    except (ValueError, IndexError, KeyError, OSError, struct.error, TypeError) as e:
        raise CheckpointError(f"{path}: malformed or truncated GGUF ({type(e).__name__}: {e})") \
            from e
    if field is None:
        config = _gguf_config_from_metadata(reader, path)
    else:
        try:
            config = json.loads(bytes(field.parts[field.data[0]]).decode())
        except (ValueError, IndexError) as e:
            raise CheckpointError(f"{path}: malformed {_GGUF_CONFIG_KEY} ({e})") from e
    config = _norm_config(config)
    floats, ternary = {}, {}
    used = set()
    for name, (shape, is_bit) in param_shapes(config).items():
        gname = gguf_name(name)
        if gname not in tensors:
            raise CheckpointError(f"{path}: missing tensor {gname} ({name})")
        rt = tensors[gname]
        used.add(gname)
        got = tuple(int(s) for s in reversed(rt.shape.tolist()))
        # GGUF drops trailing 1-sized dims of 1-D tensors; compare element shapes
        if got != shape:
            raise CheckpointError(f"{path}: tensor {gname} ({name}) has shape {got}, "
                                  f"want {shape}")
        if is_bit:
            sname = gname.removesuffix(".weight") + ".scale"
            scale = None
            if sname in tensors:
                used.add(sname)
                st = tensors[sname]
                if st.tensor_type != gguf.GGMLQuantizationType.F32 or int(st.n_elements) != 1:
                    raise CheckpointError(f"{path}: tensor {sname} must be one F32 value, got "
                                          f"{st.tensor_type.name} x {int(st.n_elements)}")
                scale = np.float32(np.asarray(st.data).reshape(-1)[0])
            ternary[name] = _gguf_ternary(gname, rt, scale, path)
        else:
            if rt.tensor_type not in (gguf.GGMLQuantizationType.F32,
                                      gguf.GGMLQuantizationType.F16):
                raise CheckpointError(f"{path}: tensor {gname} ({name}) has type "
                                      f"{rt.tensor_type.name}, want F32 or F16")
            a = gguf.quants.dequantize(np.asarray(rt.data), rt.tensor_type)
            floats[name] = np.asarray(a, dtype=np.float32).reshape(shape)
    extra = sorted(set(tensors) - used)
    if extra:
        raise CheckpointError(f"{path}: unexpected tensor(s): {', '.join(extra[:5])}")
    try:
        return Checkpoint(config, floats, ternary)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from e


def _gguf_config_from_metadata(reader, path) -> dict:
    """Model config from the standard ``bitnet.*`` GGUF keys (files not written here)."""
    def get(key, cast):
        f = reader.get_field(f"{_GGUF_ARCH}.{key}")
        if f is None:
            raise CheckpointError(f"{path}: GGUF lacks {_GGUF_ARCH}.{key}")
        return cast(f.parts[f.data[0]][0])

    cfg = {"vocab_size": get("vocab_size", int), "d_model": get("embedding_length", int),
           "n_layers": get("block_count", int), "n_heads": get("attention.head_count", int),
           "ffn_dim": get("feed_forward_length", int), "max_seq_len": get("context_length", int),
           "rope_theta": get("rope.freq_base", float),
           "norm_eps": get("attention.layer_norm_rms_epsilon", float)}
    return cfg


# ----------------------------------------------------------------------------------------------
# Hugging Face BitNet (safetensors)
# ----------------------------------------------------------------------------------------------
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "U8": np.uint8,
              "I8": np.int8, "I32": np.int32, "I64": np.int64, "BF16": None}


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file with full validation (BF16 is widened to float32).

    The format is an 8-byte little-endian header length, a JSON header mapping names to
    ``{dtype, shape, data_offsets}`` and the raw little-endian data.
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from e
    if len(blob) < 8:
        raise CheckpointError(f"{path}: truncated safetensors file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise CheckpointError(f"{path}: truncated safetensors header ({n} bytes announced)")
    try:
        header = json.loads(blob[8: 8 + n].decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: malformed safetensors header ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: malformed safetensors header")
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (lo, hi) = info["dtype"], list(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: tensor {name} has a malformed header entry") from e
        if dtype not in _ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        item = 2 if dtype == "BF16" else np.dtype(_ST_DTYPES[dtype]).itemsize
        count = math.prod(shape)
        if not (0 <= lo <= hi <= len(data)) or hi - lo != count * item:
            raise CheckpointError(f"{path}: tensor {name} data [{lo}, {hi}) is truncated or does "
                                  f"not match {dtype} {shape}")
        raw = np.frombuffer(data[lo:hi], dtype=np.uint16 if dtype == "BF16" else
                            np.dtype(_ST_DTYPES[dtype]).newbyteorder("<"))
        if dtype == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = raw.reshape(shape).copy()
    return out


def _hf_config(c: dict) -> dict:
    return {
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
        "vocab_size": int(c["vocab_size"]), "hidden_size": int(c["d_model"]),
        "intermediate_size": int(c["ffn_dim"]), "num_hidden_layers": int(c["n_layers"]),
        "num_attention_heads": int(c["n_heads"]),
        "num_key_value_heads": int(c.get("n_kv_heads") or c["n_heads"]),
        "max_position_embeddings": int(c["max_seq_len"]), "rms_norm_eps": float(c["norm_eps"]),
        "rope_theta": float(c["rope_theta"]), "hidden_act": "relu2",
        "tie_word_embeddings": False, "torch_dtype": "float32",
        "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear",
                                "quantization_mode": "offline",
                                "modules_to_not_convert": ["lm_head"]},
        "bitnet_accel_model_config": c,
    }


def save_hf(directory, ck: Checkpoint) -> None:
    """Write a Hugging Face BitNet directory: ``config.json`` and ``model.safetensors``."""
    from safetensors.numpy import save_file

    ck.validate()
    for name, t in ck.ternary.items():
        if t.trits.shape[0] % 4:
            raise CheckpointError(f"tensor {name}: {t.trits.shape[0]} rows; the HF i2 layout "
                                  "needs a multiple of 4")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, a in ck.floats.items():
        tensors[name if name == "lm_head.weight" else "model." + name] = a
    for name, t in ck.ternary.items():
        tensors["model." + name] = np.ascontiguousarray(pack_i2_hf(t.trits))
        tensors["model." + name.removesuffix(".weight") + ".weight_scale"] = np.array(
            [1.0 / np.float64(t.gamma)], dtype=np.float64)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(_hf_config(ck.config), indent=1) + "\n")


def _config_from_hf(hf: dict, path) -> dict:
    if isinstance(hf.get("bitnet_accel_model_config"), dict):
        return hf["bitnet_accel_model_config"]
    try:
        return {"vocab_size": hf["vocab_size"], "d_model": hf["hidden_size"],
                "n_layers": hf["num_hidden_layers"], "n_heads": hf["num_attention_heads"],
                "ffn_dim": hf["intermediate_size"],
                "max_seq_len": hf["max_position_embeddings"],
                "rope_theta": float(hf.get("rope_theta", 10000.0)),
                "norm_eps": float(hf.get("rms_norm_eps", 1e-5))}
    except KeyError as e:
        raise CheckpointError(f"{path}: config.json lacks {e}") from e


def load_hf(directory) -> Checkpoint:
    """Read a Hugging Face BitNet directory (packed uint8 weights + ``weight_scale``)."""
    directory = Path(directory)
    cfg_path, st_path = directory / "config.json", directory / "model.safetensors"
    try:
        hf = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: cannot read config ({e})") from e
    config = _norm_config(_config_from_hf(hf, cfg_path))
    tensors = read_safetensors(st_path)
    floats, ternary = {}, {}
    for name, (shape, is_bit) in param_shapes(config).items():
        key = name if name == "lm_head.weight" else "model." + name
        if key not in tensors:
            raise CheckpointError(f"{st_path}: missing tensor {key}")
        a = tensors.pop(key)
        if not is_bit:
            if not np.issubdtype(a.dtype, np.floating):
                raise CheckpointError(f"{st_path}: tensor {key} has dtype {a.dtype}, want float")
            floats[name] = a.astype(np.float32)
            continue
        skey = "model." + name.removesuffix(".weight") + ".weight_scale"
        if skey not in tensors:
            raise CheckpointError(f"{st_path}: missing tensor {skey}")
        ws = tensors.pop(skey)
        if not np.issubdtype(ws.dtype, np.floating) or ws.size != 1:
            raise CheckpointError(f"{st_path}: tensor {skey} must be one float value, got "
                                  f"{ws.dtype} {ws.shape}")
        ws = np.float64(ws.reshape(-1)[0])
        if not (np.isfinite(ws) and ws > 0):
            raise CheckpointError(f"{st_path}: tensor {skey} has invalid value {ws!r}")
        if a.dtype != np.uint8:
            raise CheckpointError(f"{st_path}: tensor {key} has dtype {a.dtype}, want packed "
                                  "uint8")
        want = (-(-shape[0] // 4), shape[1])
        if a.shape != want:
            raise CheckpointError(f"{st_path}: tensor {key} has shape {a.shape}, want {want} "
                                  f"(packed {shape})")
        try:
            trits = unpack_i2_hf(a, shape[0])
        except ValueError as e:
            raise CheckpointError(f"{st_path}: tensor {key}: {e}") from e
        ternary[name] = TernaryTensor(np.asarray(trits, dtype=np.int8),
                                      np.float32(1.0 / ws))
    if tensors:
        raise CheckpointError(f"{st_path}: unexpected tensor(s): "
                              f"{', '.join(sorted(tensors)[:5])}")
    try:
        return Checkpoint(config, floats, ternary)
    except CheckpointError as e:
        raise CheckpointError(f"{st_path}: {e}") from e


# ----------------------------------------------------------------------------------------------
# float checkpoints
# ----------------------------------------------------------------------------------------------
def load_float(path, config=None) -> Checkpoint:
    """Read float weights (``.safetensors`` or ``.npz``) and quantize BitLinear weights with
    absmean. Names may carry the HF ``model.`` prefix. ``config`` defaults to the
    ``config.json`` beside a safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors = read_safetensors(path)
        if config is None:
            cfg_path = path.parent / "config.json"
            try:
                config = _config_from_hf(json.loads(cfg_path.read_text()), cfg_path)
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{cfg_path}: cannot read config ({e})") from e
    elif path.suffix == ".npz":
        tensors = _read_npz(path)
        if config is None and "__config__" in tensors:
            config = json.loads(tensors.pop("__config__").astype(np.uint8).tobytes().decode())
    else:
        raise CheckpointError(f"{path}: float checkpoints must be .safetensors or .npz")
    if config is None:
        raise CheckpointError(f"{path}: no model config given or found")
    tensors.pop("__config__", None)
    params = {k.removeprefix("model."): v for k, v in tensors.items()}
    try:
        return from_float(params, config)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from e


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------
def save(path, ck: Checkpoint, **kw):
    """Save by suffix: ``.npz`` (project format), ``.gguf``, or a directory (HF)."""
    path = Path(path)
    if path.suffix == ".npz":
        return save_npz(path, ck)
    if path.suffix == ".gguf":
        return save_gguf(path, ck, **kw)
    if path.suffix == "":
        return save_hf(path, ck)
    raise CheckpointError(f"{path}: unknown checkpoint suffix {path.suffix!r}")


def load(path) -> Checkpoint:
    """Load by suffix: ``.npz`` (project format, or float arrays if it has no header),
    ``.gguf``, ``.safetensors`` (float), or an HF directory (packed)."""
    path = Path(path)
    if path.is_dir():
        return load_hf(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".gguf":
        return load_gguf(path)
    if path.suffix == ".safetensors":
        return load_float(path)
    raise CheckpointError(f"{path}: unknown checkpoint suffix {path.suffix!r}")
