"""Hugging Face checkpoints: BitNet (``model_type: bitnet``) and LLaMA-style float reproductions.

Everything here follows the installed transformers source (5.x; the fixtures name the version):

* ``models/bitnet/configuration_bitnet.py``: the fields and their defaults (``hidden_act``
  ``relu2``, ``rms_norm_eps`` 1e-5, ``max_position_embeddings`` 2048, ``tie_word_embeddings``
  false, ``num_key_value_heads`` = heads, RoPE ``default_theta`` 500000).
* ``modeling_rope_utils.py`` ``convert_rope_params_to_dict``: the RoPE base is
  ``rope_parameters.rope_theta`` (transformers 5), else the top-level ``rope_theta``
  (transformers 4 layout), else the class default; ``rope_scaling`` is the 4.x name of
  ``rope_parameters``. Only ``rope_type: default`` is supported.
* ``integrations/bitnet.py``: the projections' math by ``quantization_config``:

  - ``linear_class: bitlinear`` (``BitLinear``): weights packed 4 trits per uint8 (rows
    interleaved, :func:`model.packing.unpack_i2_hf`), ``y = (xq @ W.T) / (s * weight_scale)``,
    so ``gamma = 1 / weight_scale``;
  - ``linear_class: autobitlinear``, ``quantization_mode: offline`` (``AutoBitLinear``, the class
    microsoft/bitnet-b1.58-2B-4T is published with): ``y = (xq / s) @ W.T * weight_scale`` with
    ``W`` packed uint8 (unpacked at load by ``BitNetDeserialize``) or stored as ternary values,
    so ``gamma = weight_scale``;
  - ``quantization_mode: online`` (``WeightQuant``): float master weights, quantized with absmean
    at every forward; here once, at load (:func:`model.quant.absmean_quantize`).

  ``use_rms_norm`` (a norm inside every BitLinear) and projections listed in
  ``modules_to_not_convert`` are refused: the golden model has neither.
* A BitNet config without ``quantization_config``, and ``model_type: llama`` (the older b1.58
  reproductions: LLaMA names, SiLU, no sub-norms), hold float masters that are quantized with
  absmean at load. (transformers itself would run both as plain float linears.)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from model.checkpoint.core import (
    Checkpoint,
    CheckpointError,
    CheckpointReader,
    RowReader,
    TernaryTensor,
    absmean_ternary,
    checked_gamma,
    config_from,
)
from model.checkpoint.safetensors_file import TensorSet, open_safetensors, to_native
from model.packing import pack_i2_hf, unpack_i2_hf
from model.transformer import LIMITS, ModelConfig, param_shapes

__all__ = ["HFLayout", "HFReader", "hf_config", "hf_layout", "load_hf", "open_hf",
           "read_hf_config", "save_hf"]

#: ``hidden_act`` -> the golden model's ``ffn`` (transformers ``ACT2FN``: ``relu2`` is
#: ``ReLUSquaredActivation``, ``silu`` / ``swish`` are ``nn.SiLU``).
HIDDEN_ACT = {"relu2": "relu2", "silu": "swiglu", "swish": "swiglu"}
_FFN_TO_ACT = {"relu2": "relu2", "swiglu": "silu"}

#: Defaults of the config classes (``BitNetConfig``, ``LlamaConfig``) for optional fields.
_DEFAULTS = {
    "bitnet": {"hidden_act": "relu2", "rms_norm_eps": 1e-5, "max_position_embeddings": 2048,
               "rope_theta": 500000.0, "tie_word_embeddings": False},
    "llama": {"hidden_act": "silu", "rms_norm_eps": 1e-6, "max_position_embeddings": 2048,
              "rope_theta": 10000.0, "tie_word_embeddings": False},
}
_FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


class HFLayout:
    """What a ``config.json`` says about the math: the :class:`ModelConfig` and how the
    projections are stored (``linear_class`` ``"bitlinear"`` / ``"autobitlinear"`` with
    ``mode`` ``"offline"`` / ``"online"``, or ``None``: float masters quantized at load)."""

    def __init__(self, model_type: str, config: ModelConfig, linear_class: str | None,
                 mode: str | None):
        self.model_type = model_type
        self.config = config
        self.linear_class = linear_class
        self.mode = mode

    @property
    def packed(self) -> bool:
        """Projections stored as trits with a ``weight_scale`` (offline quantization)."""
        return self.linear_class == "bitlinear" or (
            self.linear_class == "autobitlinear" and self.mode == "offline")


def read_hf_config(path) -> dict:
    """The JSON object of a ``config.json``; :class:`CheckpointError` if unreadable."""
    path = Path(path)
    try:
        hf = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (a Hugging Face checkpoint needs config.json)") \
            from None
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: cannot read config ({type(e).__name__}: {e})") \
            from None
    if not isinstance(hf, dict):
        raise CheckpointError(f"{path}: config must be a JSON object, got "
                              f"{type(hf).__name__}")
    return hf


def _field(hf, key, path, kind, default=None):
    if key not in hf or hf[key] is None:
        if default is None:
            raise CheckpointError(f"{path}: config field {key} is missing")
        return default
    v = hf[key]
    if kind is int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CheckpointError(f"{path}: config field {key} must be a positive integer, got "
                                  f"{v!r}")
    elif kind is float:
        if not _finite_positive(v):
            raise CheckpointError(f"{path}: config field {key} must be a finite number > 0, "
                                  f"got {v!r}")
        v = float(v)
    elif kind is bool:
        if not isinstance(v, bool):
            raise CheckpointError(f"{path}: config field {key} must be true or false, got {v!r}")
    elif kind is str and not isinstance(v, str):
        raise CheckpointError(f"{path}: config field {key} must be a string, got {v!r}")
    return v


def _finite_positive(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v) and v > 0
    except OverflowError:      # an int beyond the range of a float
        return False


def _rope_theta(hf, path, default: float) -> float:
    params = hf.get("rope_parameters")
    if params is None:
        params = hf.get("rope_scaling")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise CheckpointError(f"{path}: config field rope_parameters must be an object, got "
                              f"{params!r}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise CheckpointError(f"{path}: config field rope_parameters.rope_type={rope_type!r} is "
                              "not supported (only 'default' RoPE)")
    if params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
        raise CheckpointError(f"{path}: config field partial_rotary_factor is not supported")
    top = _field(hf, "rope_theta", path, float, default)
    if "rope_theta" in params:
        return _field(params, "rope_theta", f"{path} (rope_parameters)", float)
    return top


def hf_layout(hf: dict, path) -> HFLayout:
    """Validate a ``config.json`` object and translate it into an :class:`HFLayout`.

    Every field that changes the math is read; unsupported values are refused with a
    :class:`CheckpointError` naming ``path`` and the field."""
    model_type = hf.get("model_type")
    if not isinstance(model_type, str) or model_type not in _DEFAULTS:
        raise CheckpointError(f"{path}: model_type {model_type!r} is not supported (want "
                              "'bitnet', or 'llama' for float b1.58 reproductions)")
    dflt = _DEFAULTS[model_type]
    sizes = {key: _field(hf, key, path, int) for key in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads")}
    heads = sizes["num_attention_heads"]
    kv_heads = _field(hf, "num_key_value_heads", path, int, heads)
    d = sizes["hidden_size"]
    limits = {"vocab_size": LIMITS["vocab_size"], "hidden_size": LIMITS["d_model"],
              "intermediate_size": LIMITS["d_ff"], "num_hidden_layers": LIMITS["n_layers"],
              "num_attention_heads": LIMITS["n_heads"]}
    for key, limit in limits.items():
        if sizes[key] > limit:
            raise CheckpointError(f"{path}: config field {key}={sizes[key]} exceeds the limit "
                                  f"{limit}")
    if d % heads:
        raise CheckpointError(f"{path}: config field hidden_size={d} is not a multiple of "
                              f"num_attention_heads={heads}")
    if heads % kv_heads:
        raise CheckpointError(f"{path}: config field num_attention_heads={heads} is not a "
                              f"multiple of num_key_value_heads={kv_heads}")
    head_dim = _field(hf, "head_dim", path, int, d // heads)
    if head_dim != d // heads:
        raise CheckpointError(f"{path}: config field head_dim={head_dim} differs from "
                              f"hidden_size / num_attention_heads = {d // heads}: not supported")
    if head_dim % 2:
        raise CheckpointError(f"{path}: config field head_dim={head_dim} must be even (RoPE)")
    act = _field(hf, "hidden_act", path, str, dflt["hidden_act"])
    if act not in HIDDEN_ACT:
        raise CheckpointError(f"{path}: config field hidden_act={act!r} is not supported (want "
                              f"one of {sorted(HIDDEN_ACT)})")
    for key in ("attention_bias", "mlp_bias"):
        if _field(hf, key, path, bool, False):
            raise CheckpointError(f"{path}: config field {key}=true is not supported (no biases)")
    tied = _field(hf, "tie_word_embeddings", path, bool, dflt["tie_word_embeddings"])
    config = config_from(dict(
        vocab_size=sizes["vocab_size"], d_model=d, n_layers=sizes["num_hidden_layers"],
        n_heads=heads, n_kv_heads=kv_heads, d_ff=sizes["intermediate_size"],
        ffn=HIDDEN_ACT[act], act_bits=8,
        max_seq=_field(hf, "max_position_embeddings", path, int,
                       dflt["max_position_embeddings"]),
        rope_theta=_rope_theta(hf, path, dflt["rope_theta"]),
        norm_eps=_field(hf, "rms_norm_eps", path, float, dflt["rms_norm_eps"]),
        subln=model_type == "bitnet", tie_embeddings=tied), str(path))
    linear_class, mode = _quantization(hf, path, model_type, config)
    return HFLayout(model_type, config, linear_class, mode)


def _quantization(hf, path, model_type, config):
    q = hf.get("quantization_config")
    if q is None:
        return None, None
    if not isinstance(q, dict):
        raise CheckpointError(f"{path}: config field quantization_config must be an object")
    if q.get("quant_method") != "bitnet" or model_type != "bitnet":
        raise CheckpointError(f"{path}: quantization_config.quant_method="
                              f"{q.get('quant_method')!r} is not supported for model_type "
                              f"{model_type!r} (want 'bitnet' with model_type 'bitnet')")
    linear_class = q.get("linear_class") or "bitlinear"
    mode = q.get("quantization_mode") or "offline"
    if linear_class not in ("bitlinear", "autobitlinear"):
        raise CheckpointError(f"{path}: quantization_config.linear_class={linear_class!r} is "
                              "unknown (transformers knows 'bitlinear' and 'autobitlinear')")
    if mode not in ("offline", "online"):
        raise CheckpointError(f"{path}: quantization_config.quantization_mode={mode!r} is "
                              "unknown (transformers knows 'offline' and 'online')")
    if q.get("use_rms_norm"):
        raise CheckpointError(f"{path}: quantization_config.use_rms_norm=true (an RMSNorm inside "
                              "every BitLinear) is not supported")
    skip = q.get("modules_to_not_convert") or []
    if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
        raise CheckpointError(f"{path}: quantization_config.modules_to_not_convert must be a "
                              "list of names")
    boundary = r"(?:(?<=\.)|(?=\.|$))"
    for name, (_, is_bit) in param_shapes(config).items():
        module = "model." + name.removesuffix(".weight")
        for pat in skip:
            try:
                hit = re.match(rf"(?:{pat}){boundary}", module) or module.endswith(pat)
            except re.error:
                hit = module.endswith(pat)
            if is_bit and hit:
                raise CheckpointError(f"{path}: quantization_config.modules_to_not_convert "
                                      f"keeps {module} in float: not supported")
    if linear_class == "bitlinear":
        mode = "offline"     # BitLinear ignores quantization_mode: its weights are always packed
    return linear_class, mode


# ----------------------------------------------------------------------------------------------
# tensors
# ----------------------------------------------------------------------------------------------
def _float_tensor(ts: TensorSet, key: str) -> np.ndarray:
    """A float tensor (dtype and shape checked when the reader opened) as float32."""
    a = ts.get(key).astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise CheckpointError(f"{ts.source(key)}: tensor {key} has non-finite values")
    return a


def _weight_scale(ts: TensorSet, key: str) -> float:
    src = ts.source(key)
    if ts.dtype(key) not in _FLOAT_DTYPES or math.prod(ts.shape(key)) != 1:
        raise CheckpointError(f"{src}: tensor {key} must be one float value, got "
                              f"{ts.dtype(key)} {list(ts.shape(key))}")
    ws = float(ts.get(key).reshape(-1)[0])
    if not (math.isfinite(ws) and ws > 0):
        raise CheckpointError(f"{src}: tensor {key} has invalid value {ws!r}")
    return ws


def _packed_trits(ts: TensorSet, key: str, m: int) -> np.ndarray:
    """The ``m`` trit rows of a packed tensor (shape checked when the reader opened)."""
    try:
        return unpack_i2_hf(ts.get(key), m)
    except ValueError as e:
        raise CheckpointError(f"{ts.source(key)}: tensor {key}: {e}") from None


def _ternary_valued(a: np.ndarray, src, key) -> tuple[np.ndarray, np.float32]:
    """Trits and magnitude of a float tensor whose values are ``{-v, 0, +v}``."""
    mags = np.unique(np.abs(a[a != 0]))
    if mags.size > 1:
        raise CheckpointError(f"{src}: tensor {key} is not ternary-valued ({mags.size} distinct "
                              "magnitudes) although quantization_mode is offline")
    return np.sign(a).astype(np.int8), np.float32(mags[0] if mags.size else 1.0)


def _projection(ts, layout: HFLayout, key: str, m: int) -> TernaryTensor:
    if not layout.packed:
        return absmean_ternary(_float_tensor(ts, key))
    skey = key.removesuffix(".weight") + ".weight_scale"
    ws = _weight_scale(ts, skey)
    src = f"{ts.source(skey)}: tensor {skey}"
    if layout.linear_class == "bitlinear":
        return TernaryTensor(_packed_trits(ts, key, m), checked_gamma(1.0 / ws, src))
    if ts.dtype(key) == "U8":
        trits, mag = _packed_trits(ts, key, m), 1.0
    else:
        trits, mag = _ternary_valued(_float_tensor(ts, key), ts.source(key), key)
    return TernaryTensor(trits, checked_gamma(float(mag) * ws, src))


class HFReader(CheckpointReader):
    """A Hugging Face checkpoint opened for lazy reading (memory-mapped safetensors).

    Parameters
    ----------
    ts : TensorSet
        The tensors (one file or the shards of an index).
    layout : HFLayout
        What ``config.json`` says.
    source : path-like
        Named in errors.
    prefix : str
        Name prefix of the model's tensors (``"model."``; the LM head is ``lm_head.weight``).

    Opening checks that every tensor the layout needs is there with a plausible dtype and
    shape and that nothing else is (names and headers only)."""

    def __init__(self, ts: TensorSet, layout: HFLayout, source, prefix: str = "model."):
        self.ts, self.layout, self.source, self.prefix = ts, layout, str(source), prefix
        self.config = cfg = layout.config
        self.shapes = param_shapes(cfg)
        used = set()
        for name, (shape, is_bit) in self.shapes.items():
            key = self.key(name)
            if key not in ts:
                raise CheckpointError(f"{source}: missing tensor {key}")
            used.add(key)
            dtype, got = ts.dtype(key), ts.shape(key)
            if not is_bit or not layout.packed:
                if dtype not in _FLOAT_DTYPES:
                    raise CheckpointError(f"{ts.source(key)}: tensor {key} has dtype {dtype}, "
                                          "want a float")
                if got != shape:
                    raise CheckpointError(f"{ts.source(key)}: tensor {key} has shape "
                                          f"{list(got)}, want {list(shape)}")
            skey = key.removesuffix(".weight") + ".weight_scale"
            if is_bit and layout.packed:
                if skey not in ts:
                    raise CheckpointError(f"{source}: missing tensor {skey}")
                used.add(skey)
                if layout.linear_class == "bitlinear" and dtype != "U8":
                    raise CheckpointError(f"{ts.source(key)}: tensor {key} has dtype {dtype}, "
                                          "want packed U8 (linear_class bitlinear)")
                if dtype == "U8" and (got != (shape[0] // 4, shape[1]) or shape[0] % 4):
                    raise CheckpointError(f"{ts.source(key)}: tensor {key} has shape "
                                          f"{list(got)}, want {[shape[0] // 4, shape[1]]} "
                                          f"(packed {list(shape)}; rows a multiple of 4)")
                if dtype != "U8" and dtype not in _FLOAT_DTYPES:
                    raise CheckpointError(f"{ts.source(key)}: tensor {key} has dtype {dtype}, "
                                          "want packed U8 or ternary-valued float")
                if dtype != "U8" and got != shape:
                    raise CheckpointError(f"{ts.source(key)}: tensor {key} has shape "
                                          f"{list(got)}, want {list(shape)}")
            elif is_bit and skey in ts:
                raise CheckpointError(f"{ts.source(skey)}: unexpected tensor {skey} (float "
                                      "master weights are quantized at load and carry no "
                                      "weight_scale)")
        if cfg.tie_embeddings and "lm_head.weight" in ts:
            used.add("lm_head.weight")   # transformers ties it to the embedding and ignores it
        extra = sorted(k for k in set(ts.keys()) - used
                       if not k.endswith(".rotary_emb.inv_freq"))
        if extra:
            raise CheckpointError(f"{ts.source(extra[0])}: unexpected tensor(s): "
                                  f"{', '.join(extra[:5])}")

    def key(self, name: str) -> str:
        return name if name == "lm_head.weight" else self.prefix + name

    def float(self, name: str) -> np.ndarray:
        return _float_tensor(self.ts, self.key(name))

    def ternary(self, name: str) -> TernaryTensor:
        return _projection(self.ts, self.layout, self.key(name), self.shapes[name][0][0])

    def rows(self, name: str) -> RowReader:
        key = self.key(name)
        dtype = self.ts.dtype(key)
        return RowReader(self.ts.view(key), lambda raw: to_native(raw, dtype),
                         f"{self.ts.source(key)}: tensor {key}")


def open_hf(directory) -> HFReader:
    """Open a Hugging Face directory for lazy reading (see :func:`load_hf`)."""
    directory = Path(directory)
    cfg_path = directory / "config.json"
    layout = hf_layout(read_hf_config(cfg_path), cfg_path)
    return HFReader(open_safetensors(directory), layout, directory)


def load_hf(directory) -> Checkpoint:
    """Read a Hugging Face directory: ``config.json`` and ``model.safetensors`` or its shards
    (``model.safetensors.index.json``). BitNet packed (either linear class), BitNet float masters
    and LLaMA float reproductions; see the module docstring for the meaning of each."""
    return open_hf(directory).read()


# ----------------------------------------------------------------------------------------------
# writer
# ----------------------------------------------------------------------------------------------
def hf_config(c: ModelConfig) -> dict:
    """The ``config.json`` of :func:`save_hf` for a model of shape ``c``: a transformers
    ``BitNetConfig`` (both RoPE layouts) with ``AutoBitLinear`` offline quantization (the 2B4T
    layout)."""
    return {
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
        "vocab_size": c.vocab_size, "hidden_size": c.d_model, "intermediate_size": c.d_ff,
        "num_hidden_layers": c.n_layers, "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads, "head_dim": c.head_dim,
        "hidden_act": _FFN_TO_ACT[c.ffn], "max_position_embeddings": c.max_seq,
        "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "tie_word_embeddings": c.tie_embeddings, "attention_bias": False,
        "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
        "dtype": "float32",
        "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                "quantization_mode": "offline", "use_rms_norm": False,
                                "modules_to_not_convert": ["lm_head"]},
    }


def save_hf(directory, ck: Checkpoint) -> None:
    """Write a Hugging Face BitNet directory (``config.json``, ``model.safetensors``) that
    transformers' ``BitNetForCausalLM.from_pretrained`` reads: projections packed 4 trits per
    uint8 with a float32 ``weight_scale = gamma`` (``AutoBitLinear`` offline multiplies by it,
    exactly). Refused (:class:`CheckpointError`, nothing written) for what transformers' BitNet
    cannot express: 4-bit activations, the a4.8 scheme, no sub-norms, projections whose rows
    are not a multiple of 4."""
    from safetensors.numpy import save_file

    ck.validate()
    c = ck.config
    if c.act_bits != 8:
        raise CheckpointError(f"{directory}: transformers' BitNet quantizes activations to 8 "
                              f"bits; this model has act_bits={c.act_bits}")
    if c.quant != "b1.58":
        raise CheckpointError(f"{directory}: transformers' BitNet is BitNet b1.58; this model "
                              f"has quant={c.quant!r}")
    if not c.subln:
        raise CheckpointError(f"{directory}: transformers' BitNet always has sub-norms; this "
                              "model has subln=False")
    for name, t in ck.ternary.items():
        if t.trits.shape[0] % 4:
            raise CheckpointError(f"{directory}: tensor {name}: {t.trits.shape[0]} rows; the "
                                  "packed layout needs a multiple of 4")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, a in ck.floats.items():
        tensors[name if name == "lm_head.weight" else "model." + name] = a
    for name, t in ck.ternary.items():
        tensors["model." + name] = np.ascontiguousarray(pack_i2_hf(t.trits))
        tensors["model." + name.removesuffix(".weight") + ".weight_scale"] = np.array(
            [t.gamma], dtype=np.float32)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(hf_config(ck.config), indent=2) + "\n")
