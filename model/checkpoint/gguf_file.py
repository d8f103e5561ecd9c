"""GGUF checkpoints of architecture ``bitnet``, as llama.cpp writes and reads them.

Read through gguf-py (the ``gguf`` package). The reference for names, keys and math is
llama.cpp itself: the converter (``convert_hf_to_gguf.py``, ``conversion/bitnet.py``:
``BitnetModel`` quantizes each projection with absmean and writes ``trits * gamma``) and the
loader and graph (``src/models/bitnet.cpp``):

* tensors ``token_embd``, ``output_norm``, per block ``attn_norm``, ``attn_q/k/v``,
  ``attn_output``, ``attn_sub_norm``, ``ffn_norm``, ``ffn_gate/up/down``, ``ffn_sub_norm``
  (all required), optional one-value ``<proj>.scale`` tensors that multiply the product;
* no ``output`` tensor: llama.cpp's BitNet graph uses ``token_embd`` as the LM head (tied). A
  file with ``output.weight`` (the project's writer, for untied models) loads as untied;
* the FFN is SiLU-gated (``LLM_FFN_SILU``, ``LLM_FFN_PAR``): the file records no activation.
  Pass ``hidden_act="relu2"`` to :func:`load_gguf` for a conversion of a squared-ReLU model
  (2B4T) whose math should follow the source rather than llama.cpp's graph;
* metadata ``bitnet.block_count``, ``.embedding_length``, ``.feed_forward_length``,
  ``.context_length``, ``.attention.head_count``, ``.attention.head_count_kv`` (default:
  head_count), ``.attention.layer_norm_rms_epsilon``, ``.rope.freq_base`` (default 10000, as
  llama.cpp), optional ``.vocab_size`` (else the embedding's rows), ``.attention.key_length``
  and ``.rope.dimension_count`` (must be the whole head), ``.rope.scaling.type`` none or linear
  with factor 1 (what the converter writes);
* a BitLinear tensor is TQ1_0 / TQ2_0 (256-weight blocks, an f16 block scale ``d``: the
  converter's blocks all carry ``d = gamma``; blocks of zeros may carry 0) or F32/F16/BF16
  holding ``{-gamma, 0, +gamma}``. Dense float or other quantized types are refused.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import numpy as np

from model.checkpoint.core import (
    Checkpoint,
    CheckpointError,
    CheckpointReader,
    RowReader,
    TernaryTensor,
    checked_gamma,
    config_from,
)
from model.checkpoint.hf import HIDDEN_ACT
from model.transformer import LIMITS, ModelConfig, param_shapes

__all__ = ["GGUFCheckpointReader", "bitnet_writer", "gguf_name", "load_gguf", "save_gguf"]

ARCH = "bitnet"
#: The project's own key: the full ModelConfig as JSON (act_bits, ffn, subln have no GGUF key).
CONFIG_KEY = "bitnet_accel.model_config"

_LAYER = {
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
_TOP = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight"}


def gguf_name(name: str) -> str:
    """The llama.cpp (GGUF) tensor name of an architecture parameter name."""
    if name in _TOP:
        return _TOP[name]
    head, _, rest = name.partition(".")
    layer, _, suffix = rest.partition(".")
    if head != "layers" or not layer.isdigit() or suffix not in _LAYER:
        raise KeyError(f"no GGUF name for parameter {name}")
    return f"blk.{layer}.{_LAYER[suffix]}"


# ----------------------------------------------------------------------------------------------
# writer
# ----------------------------------------------------------------------------------------------
def bitnet_writer(path, c: ModelConfig, qtype: str, name: str):
    """A ``gguf.GGUFWriter`` of architecture ``bitnet`` holding the metadata keys llama.cpp's
    converter writes for a model of shape ``c`` (``BitnetModel.set_gguf_parameters``)."""
    import gguf

    w = gguf.GGUFWriter(str(path), ARCH)
    w.add_name(name)
    w.add_block_count(c.n_layers)
    w.add_context_length(c.max_seq)
    w.add_embedding_length(c.d_model)
    w.add_feed_forward_length(c.d_ff)
    w.add_head_count(c.n_heads)
    w.add_head_count_kv(c.n_kv_heads)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.norm_eps)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(1.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_TQ1_0 if qtype == "TQ1_0"
                    else gguf.LlamaFileType.MOSTLY_TQ2_0)
    return w


def save_gguf(path, ck: Checkpoint, qtype: str = "TQ1_0", fallback: str | None = "F16") -> dict:
    """Write ``ck`` as a GGUF of architecture ``bitnet``; return ``{parameter: GGUF type}``.

    BitLinear weights are ``qtype`` (``"TQ1_0"``/``"TQ2_0"``) blocks of the trits with block
    scale 1 plus a one-value F32 ``<proj>.scale`` tensor holding ``gamma`` (llama.cpp's graph
    multiplies by it, and ``gamma`` stays exact instead of rounding to the f16 block scale).
    Rows whose length is not a multiple of the 256-weight block are written as ``fallback``
    (``"F16"``/``"F32"``: the trits as exact floats) or, with ``fallback=None``, refused. The
    metadata are the keys llama.cpp's converter writes plus :data:`CONFIG_KEY`. A tied model
    has no ``output.weight`` (llama.cpp's layout); an untied one gets ``output.weight``, which
    llama.cpp's BitNet loader does not know."""
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
    for name, (_, is_bit) in param_shapes(c).items():
        if is_bit and fallback is None and ck.ternary[name].trits.shape[1] % block:
            raise CheckpointError(f"{path}: tensor {name}: row length "
                                  f"{ck.ternary[name].trits.shape[1]} is not a multiple of the "
                                  f"{qtype} block size {block}")
    w = bitnet_writer(path, c, qtype, "bitnet-accel")
    w.add_vocab_size(c.vocab_size)
    w.add_string(CONFIG_KEY, c.to_json())
    types = {}
    for name, (_, is_bit) in param_shapes(c).items():
        gname = gguf_name(name)
        if not is_bit:
            w.add_tensor(gname, ck.floats[name])
            types[name] = "F32"
            continue
        t = ck.ternary[name]
        if t.trits.shape[1] % block == 0:
            w.add_tensor(gname, gguf.quants.quantize(t.trits.astype(np.float32), qt),
                         raw_dtype=qt)
            types[name] = qtype
        else:
            w.add_tensor(gname, t.trits.astype(np.float16 if fallback == "F16" else np.float32))
            types[name] = fallback
        w.add_tensor(gname.removesuffix(".weight") + ".scale",
                     np.array([np.float32(t.gamma)], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


# ----------------------------------------------------------------------------------------------
# reader
# ----------------------------------------------------------------------------------------------
def _value(reader, key: str, path, kind, default=None):
    f = reader.get_field(key)
    if f is None:
        if default is None:
            raise CheckpointError(f"{path}: GGUF lacks metadata key {key}")
        return default
    try:
        v = f.contents()
    except (ValueError, IndexError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: GGUF metadata key {key} is malformed ({e})") from None
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise CheckpointError(f"{path}: GGUF metadata key {key} must be a positive "
                                  f"integer, got {v!r}")
        return int(v)
    if kind is float:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not (
                np.isfinite(v) and v > 0):
            raise CheckpointError(f"{path}: GGUF metadata key {key} must be a finite number > 0,"
                                  f" got {v!r}")
        return float(v)
    if not isinstance(v, str):
        raise CheckpointError(f"{path}: GGUF metadata key {key} must be a string, got {v!r}")
    return v


def _config(reader, tensors, path, hidden_act) -> ModelConfig:
    """The model config from the project's key, else from llama.cpp's ``bitnet.*`` keys."""
    own = reader.get_field(CONFIG_KEY)
    if own is not None:
        try:
            data = json.loads(_value(reader, CONFIG_KEY, path, str))
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"{path}: GGUF metadata key {CONFIG_KEY} is malformed ({e})") \
                from None
        config = config_from(data, f"{path} ({CONFIG_KEY})")
        if hidden_act is not None:
            config = config.replace(ffn=HIDDEN_ACT[hidden_act])
        return config

    def key(k):
        return f"{ARCH}.{k}"

    d = _value(reader, key("embedding_length"), path, int)
    n_layers = _value(reader, key("block_count"), path, int)
    heads = _value(reader, key("attention.head_count"), path, int)
    kv_heads = _value(reader, key("attention.head_count_kv"), path, int, heads)
    if "token_embd.weight" not in tensors:
        raise CheckpointError(f"{path}: missing tensor token_embd.weight")
    emb_rows = int(tensors["token_embd.weight"].shape.tolist()[-1]) if len(
        tensors["token_embd.weight"].shape) == 2 else -1
    vocab = _value(reader, key("vocab_size"), path, int, emb_rows if emb_rows > 0 else None)
    for k, v, limit in ((key("embedding_length"), d, LIMITS["d_model"]),
                        (key("block_count"), n_layers, LIMITS["n_layers"]),
                        (key("attention.head_count"), heads, LIMITS["n_heads"]),
                        (key("vocab_size"), vocab, LIMITS["vocab_size"])):
        if v > limit:
            raise CheckpointError(f"{path}: GGUF metadata key {k}={v} exceeds the limit {limit}")
    if d % heads:
        raise CheckpointError(f"{path}: GGUF metadata {key('embedding_length')}={d} is not a "
                              f"multiple of {key('attention.head_count')}={heads}")
    for k in ("attention.key_length", "attention.value_length", "rope.dimension_count"):
        v = _value(reader, key(k), path, int, d // heads)
        if v != d // heads:
            raise CheckpointError(f"{path}: GGUF metadata key {key(k)}={v} differs from the head "
                                  f"size {d // heads}: not supported")
    scaling = _value(reader, key("rope.scaling.type"), path, str, "none")
    factor = reader.get_field(key("rope.scaling.factor"))
    if scaling not in ("none", "linear") or (
            factor is not None and _value(reader, key("rope.scaling.factor"), path, float) != 1):
        raise CheckpointError(f"{path}: GGUF RoPE scaling {scaling!r} is not supported (only "
                              "none, or linear with factor 1)")
    act = hidden_act if hidden_act is not None else "silu"   # llama.cpp: LLM_FFN_SILU
    return config_from(dict(
        vocab_size=vocab, d_model=d, n_layers=n_layers, n_heads=heads, n_kv_heads=kv_heads,
        d_ff=_value(reader, key("feed_forward_length"), path, int),
        ffn=HIDDEN_ACT[act], act_bits=8,
        max_seq=_value(reader, key("context_length"), path, int),
        rope_theta=_value(reader, key("rope.freq_base"), path, float, 10000.0),
        norm_eps=_value(reader, key("attention.layer_norm_rms_epsilon"), path, float),
        subln=True, tie_embeddings="output.weight" not in tensors), str(path))


def _shape(rt) -> tuple[int, ...]:
    """A GGUF tensor's shape in row-major (numpy) order."""
    return tuple(int(s) for s in reversed(rt.shape.tolist()))


def _ternary(gname: str, rt, scale: np.float32 | None, path) -> TernaryTensor:
    """Trits and gamma of one GGUF BitLinear tensor."""
    import gguf

    qt = rt.tensor_type
    m, k = _shape(rt)
    if qt in (gguf.GGMLQuantizationType.TQ1_0, gguf.GGMLQuantizationType.TQ2_0):
        block, type_size = gguf.GGML_QUANT_SIZES[qt]
        raw = np.asarray(rt.data, dtype=np.uint8)
        if k % block or raw.size != m * (k // block) * type_size:
            raise CheckpointError(f"{path}: tensor {gname} ({qt.name}) has {raw.size} bytes, "
                                  f"want {m * (k // block) * type_size} for shape {(m, k)}")
        blocks = raw.reshape(-1, type_size)
        d = blocks[:, -2:].copy().view(np.float16).astype(np.float32).reshape(-1)
        if not np.all(np.isfinite(d)) or np.any(d < 0):
            raise CheckpointError(f"{path}: tensor {gname} has invalid block scales")
        unit = blocks.copy()
        unit[:, -2:] = np.frombuffer(np.float16(1).tobytes(), np.uint8)
        trits = gguf.quants.dequantize(unit, qt).reshape(-1, block).astype(np.int8)
        # every stored byte must be what the encoder writes for these trits: catches invalid
        # base-3 bytes in TQ1_0 and the unused code 3 in TQ2_0
        again = gguf.quants.quantize(trits.astype(np.float32), qt)
        bad = np.flatnonzero(np.any(again[:, :-2] != blocks[:, :-2], axis=1))
        if bad.size:
            raise CheckpointError(f"{path}: tensor {gname} ({qt.name}) block {int(bad[0])} "
                                  "holds an invalid trit code")
        nz = d[np.any(trits != 0, axis=1)]
        if nz.size and np.any(nz != nz[0]):
            raise CheckpointError(f"{path}: tensor {gname} has differing block scales; only "
                                  "per-tensor ternary weights are supported")
        if nz.size and nz[0] == 0:
            raise CheckpointError(f"{path}: tensor {gname} has non-zero trits under a zero "
                                  "block scale")
        mag = np.float32(nz[0]) if nz.size else np.float32(1.0)
        trits = trits.reshape(m, k)
    elif qt in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32,
                gguf.GGMLQuantizationType.BF16):
        vals = gguf.quants.dequantize(np.asarray(rt.data), qt).astype(np.float32)
        if vals.size != m * k:
            raise CheckpointError(f"{path}: tensor {gname} has {vals.size} values, want {m * k}")
        vals = vals.reshape(m, k)
        if not np.all(np.isfinite(vals)):
            raise CheckpointError(f"{path}: tensor {gname} has non-finite values")
        mags = np.unique(np.abs(vals[vals != 0]))
        if mags.size > 1:
            raise CheckpointError(f"{path}: tensor {gname} ({qt.name}) is not ternary-valued "
                                  f"({mags.size} distinct magnitudes); llama.cpp's converter "
                                  "writes trits * gamma")
        trits = np.sign(vals).astype(np.int8)
        mag = np.float32(mags[0]) if mags.size else np.float32(1.0)
    else:
        raise CheckpointError(f"{path}: tensor {gname} has type {qt.name}; BitLinear weights "
                              "must be TQ1_0, TQ2_0, F16, BF16 or F32")
    gamma = mag if scale is None else checked_gamma(float(mag) * float(scale),
                                                    f"{path}: tensor {gname}")
    return TernaryTensor(trits, np.float32(gamma))


def _check_dequantizes(gname: str, rt, path) -> None:
    """Refuse a float tensor of a type gguf-py cannot dequantize (e.g. I8, F64), at open:
    the embedding and LM head are otherwise read a block of rows at a time, on use."""
    import gguf

    raw = np.asarray(rt.data)
    try:
        gguf.quants.dequantize(raw.reshape(-1, raw.shape[-1])[:1], rt.tensor_type)
    except NotImplementedError:
        raise CheckpointError(f"{path}: tensor {gname} has type {rt.tensor_type.name}, which "
                              "gguf-py cannot dequantize") from None


def _float(gname: str, rt, shape, path) -> np.ndarray:
    import gguf

    try:
        a = gguf.quants.dequantize(np.asarray(rt.data), rt.tensor_type)
    except NotImplementedError:
        raise CheckpointError(f"{path}: tensor {gname} has type {rt.tensor_type.name}, which "
                              "gguf-py cannot dequantize") from None
    a = np.asarray(a, dtype=np.float32)
    if a.size != int(np.prod(shape)):
        raise CheckpointError(f"{path}: tensor {gname} has {a.size} values, want {shape}")
    a = a.reshape(shape)
    if not np.all(np.isfinite(a)):
        raise CheckpointError(f"{path}: tensor {gname} has non-finite values")
    return a


#: Byte sizes of GGUF's scalar value types (``gguf.GGUFValueType`` numbering); 8 is a string
#: (u64 length + bytes), 9 an array (u32 item type, u64 count, items).
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
#: Array nesting deeper than any GGUF writer uses (gguf-py's parser recurses per level).
_MAX_NESTING = 8
#: ``GGML_MAX_DIMS``: a ggml tensor has at most 4 dimensions.
_MAX_DIMS = 4


class _Cursor:
    """Reads a GGUF header's fields in order; a field past the end is a CheckpointError."""

    def __init__(self, buf, path):
        self.buf, self.path, self.pos, self.order = buf, path, 0, "<"

    def take(self, fmt: str, what: str) -> int:
        n = struct.calcsize(fmt)
        if self.pos + n > len(self.buf):
            raise CheckpointError(f"{self.path}: GGUF header cut in {what} at byte {self.pos}")
        (v,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += n
        return v

    def skip(self, n: int, what: str) -> None:
        if n > len(self.buf) - self.pos:
            raise CheckpointError(f"{self.path}: GGUF {what} of {n} bytes at byte {self.pos} "
                                  f"runs past the end of the file ({len(self.buf)} bytes)")
        self.pos += n

    def value(self, vtype: int, what: str, depth: int = 0) -> None:
        if vtype in _SCALAR_BYTES:
            self.skip(_SCALAR_BYTES[vtype], what)
        elif vtype == _STRING:
            self.skip(self.take("Q", what), what)
        elif vtype == _ARRAY:
            if depth >= _MAX_NESTING:
                raise CheckpointError(f"{self.path}: GGUF {what} nests arrays more than "
                                      f"{_MAX_NESTING} deep")
            itype, n = self.take("I", what), self.take("Q", what)
            if itype in _SCALAR_BYTES:
                self.skip(n * _SCALAR_BYTES[itype], f"{what} ({n} items of type {itype})")
            elif itype in (_STRING, _ARRAY):
                item = f"{what} (an item)"
                for _ in range(n):       # each item takes >= 8 bytes: ends at the file's end
                    self.value(itype, item, depth + 1)
            else:
                raise CheckpointError(f"{self.path}: GGUF {what} has unknown item type {itype}")
        else:
            raise CheckpointError(f"{self.path}: GGUF {what} has unknown value type {vtype}")


def _check_layout(path: Path) -> None:
    """Walk a GGUF's header (counts, every key/value and tensor record) and check that every
    length, count and tensor offset fits in the file, before gguf-py parses it: gguf-py trusts
    them (an array longer than the file loops over empty reads for as long as it claims, nested
    arrays recurse, an offset near 2**64 overflows)."""
    try:
        with open(path, "rb") as f:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:           # ValueError: an empty file
        raise CheckpointError(f"{path}: cannot read GGUF ({type(e).__name__}: {e})") from None
    with buf:
        c = _Cursor(buf, path)
        if buf[:4] != b"GGUF":
            raise CheckpointError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r})")
        c.pos = 4
        version = c.take("I", "the version")
        if version & 0xFFFF == 0:                 # written on a big-endian machine
            c.order, c.pos = ">", 4
            version = c.take("I", "the version")
        if version not in (2, 3):
            raise CheckpointError(f"{path}: GGUF version {version} is not supported (2 or 3)")
        n_tensors, n_kv = c.take("Q", "the tensor count"), c.take("Q", "the key count")
        for i in range(n_kv):          # every record takes >= 13 bytes: ends at the file's end
            c.value(_STRING, f"key #{i}")
            c.value(c.take("I", f"key #{i}'s type"), f"value of key #{i}")
        for i in range(n_tensors):
            what = f"tensor record #{i}"
            c.value(_STRING, what)
            n_dims = c.take("I", what)
            if n_dims > _MAX_DIMS:
                raise CheckpointError(f"{path}: GGUF {what} has {n_dims} dimensions (at most "
                                      f"{_MAX_DIMS})")
            c.skip(8 * n_dims, what)
            c.take("I", what)
            offset = c.take("Q", what)
            if offset > len(buf):
                raise CheckpointError(f"{path}: GGUF {what} has data offset {offset}, past the "
                                      f"end of the file ({len(buf)} bytes)")


class GGUFCheckpointReader(CheckpointReader):
    """A ``bitnet`` GGUF opened for lazy reading (gguf-py memory-maps the file).

    Opening reads the metadata and checks every tensor's name and shape and the ``.scale``
    tensors; :meth:`ternary` / :meth:`float` decode one tensor. ``hidden_act`` as in
    :func:`load_gguf`."""

    def __init__(self, path, hidden_act: str | None = None):
        import gguf

        path = Path(path)
        self.source = str(path)
        if hidden_act is not None and hidden_act not in HIDDEN_ACT:
            raise ValueError(f"hidden_act must be one of {sorted(HIDDEN_ACT)}, got "
                             f"{hidden_act!r}")
        _check_layout(path)
        try:
            reader = gguf.GGUFReader(str(path))
            tensors = {t.name: t for t in reader.tensors}
        except (ValueError, IndexError, KeyError, OSError, struct.error, TypeError,
                UnicodeDecodeError, OverflowError) as e:
            raise CheckpointError(f"{path}: malformed or truncated GGUF ({type(e).__name__}: "
                                  f"{e})") from None
        arch = _value(reader, "general.architecture", path, str)
        if arch != ARCH:
            raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported (want "
                                  f"{ARCH!r})")
        self.config = config = _config(reader, tensors, path, hidden_act)
        self.shapes = param_shapes(config)
        self.tensors = tensors
        self.scales: dict[str, np.float32] = {}
        used = set()
        for name, (shape, is_bit) in self.shapes.items():
            gname = gguf_name(name)
            if gname not in tensors:
                raise CheckpointError(f"{path}: missing tensor {gname} ({name})")
            used.add(gname)
            if _shape(tensors[gname]) != shape:
                raise CheckpointError(f"{path}: tensor {gname} ({name}) has shape "
                                      f"{_shape(tensors[gname])}, want {shape}")
            if not is_bit:
                _check_dequantizes(gname, tensors[gname], path)
            sname = gname.removesuffix(".weight") + ".scale"
            if is_bit and sname in tensors:
                used.add(sname)
                st = tensors[sname]
                if st.tensor_type != gguf.GGMLQuantizationType.F32 or int(st.n_elements) != 1:
                    raise CheckpointError(f"{path}: tensor {sname} must be one F32 value, got "
                                          f"{st.tensor_type.name} x {int(st.n_elements)}")
                scale = np.float32(np.asarray(st.data).reshape(-1)[0])
                if not (np.isfinite(scale) and scale > 0):
                    raise CheckpointError(f"{path}: tensor {sname} has invalid value "
                                          f"{scale!r}")
                self.scales[name] = scale
        extra = sorted(set(tensors) - used)
        if extra:
            raise CheckpointError(f"{path}: unexpected tensor(s): {', '.join(extra[:5])}")

    def ternary(self, name: str) -> TernaryTensor:
        gname = gguf_name(name)
        return _ternary(gname, self.tensors[gname], self.scales.get(name), self.source)

    def float(self, name: str) -> np.ndarray:
        gname = gguf_name(name)
        return _float(gname, self.tensors[gname], self.shapes[name][0], self.source)

    def rows(self, name: str) -> RowReader:
        import gguf

        gname = gguf_name(name)
        rt = self.tensors[gname]
        qt = rt.tensor_type
        raw = np.asarray(rt.data)
        if qt in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            def to_float(rows):
                return rows.astype(np.float32)
        else:
            def to_float(rows):
                return gguf.quants.dequantize(np.ascontiguousarray(rows), qt)
        return RowReader(raw.reshape(_shape(rt)[0], -1), to_float,
                         f"{self.source}: tensor {gname}", shape=_shape(rt))


def load_gguf(path, hidden_act: str | None = None) -> Checkpoint:
    """Read a GGUF of architecture ``bitnet`` (llama.cpp's converter, or :func:`save_gguf`).

    ``hidden_act`` (``"silu"`` or ``"relu2"``) overrides the FFN activation; by default it is
    the one the file's writer recorded (:data:`CONFIG_KEY`), else SiLU, as llama.cpp runs
    every ``bitnet`` GGUF."""
    return GGUFCheckpointReader(path, hidden_act).read()
