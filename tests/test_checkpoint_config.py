"""Checkpoint configs: every field that changes the math is read, every bad value is refused by
name (file and field) before anything is allocated, and nothing unsupported loads silently."""

from __future__ import annotations

import json
import time

import gguf
import numpy as np
import pytest

from model import checkpoint as ckpt
from model.checkpoint import CheckpointError
from model.checkpoint.hf import hf_layout
from model.transformer import ModelConfig, init_params, param_shapes

BITNET = {"model_type": "bitnet", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "hidden_act": "relu2",
          "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                  "quantization_mode": "offline"}}


def layout(**changes):
    hf = {**BITNET, **changes}
    for k in [k for k, v in changes.items() if v is ...]:
        del hf[k]
    return hf_layout(hf, "x/config.json")


# ---------------------------------------------------------------------------------------------
# what the fields mean (transformers 5.x: models/bitnet/configuration_bitnet.py,
# modeling_rope_utils.py, integrations/bitnet.py)
# ---------------------------------------------------------------------------------------------
def test_bitnet_fields_and_defaults():
    lay = layout()
    c = lay.config
    assert (c.vocab_size, c.d_model, c.d_ff, c.n_layers, c.n_heads, c.n_kv_heads) == (
        64, 32, 48, 2, 4, 2)
    assert c.ffn == "relu2" and c.subln and not c.tie_embeddings and c.act_bits == 8
    assert c.rope_theta == 500000.0            # BitNetConfig.default_theta
    assert (lay.linear_class, lay.mode, lay.packed) == ("autobitlinear", "offline", True)
    assert layout(num_key_value_heads=...).config.n_kv_heads == 4
    assert layout(hidden_act=...).config.ffn == "relu2"
    assert layout(rms_norm_eps=...).config.norm_eps == 1e-5
    assert layout(max_position_embeddings=...).config.max_seq == 2048


@pytest.mark.parametrize("act, ffn", [("relu2", "relu2"), ("silu", "swiglu"),
                                      ("swish", "swiglu")])
def test_hidden_act(act, ffn):
    assert layout(hidden_act=act).config.ffn == ffn


def test_rope_theta_in_both_layouts():
    assert layout(rope_theta=10000.0).config.rope_theta == 10000.0                 # 4.x
    assert layout(rope_parameters={"rope_type": "default", "rope_theta": 1234.0}
                  ).config.rope_theta == 1234.0                                    # 5.x
    assert layout(rope_theta=7.0, rope_parameters={"rope_theta": 99.0}).config.rope_theta == 99.0
    assert layout(rope_scaling={"type": "default", "rope_theta": 5.0}).config.rope_theta == 5.0
    with pytest.raises(CheckpointError, match="rope_type='linear' is not supported"):
        layout(rope_parameters={"rope_type": "linear", "factor": 2.0})


def test_tied_and_head_dim():
    assert layout(tie_word_embeddings=True).config.tie_embeddings
    assert layout(head_dim=8).config.head_dim == 8
    with pytest.raises(CheckpointError, match="head_dim=16 differs"):
        layout(head_dim=16)


def test_quantization_config_classes():
    assert (layout(quantization_config={"quant_method": "bitnet"}).linear_class,
            layout(quantization_config={"quant_method": "bitnet"}).packed) == ("bitlinear", True)
    online = layout(quantization_config={"quant_method": "bitnet", "linear_class": "autobitlinear",
                                         "quantization_mode": "online"})
    assert not online.packed
    assert not layout(quantization_config=...).packed    # float masters, quantized at load
    llama = hf_layout({**BITNET, "model_type": "llama", "quantization_config": None,
                       "hidden_act": None, "rms_norm_eps": None}, "x/config.json")
    assert llama.config.ffn == "swiglu" and not llama.config.subln
    assert llama.config.rope_theta == 10000.0 and llama.config.norm_eps == 1e-6


# ---------------------------------------------------------------------------------------------
# bad configs: a CheckpointError naming the file and the field
# ---------------------------------------------------------------------------------------------
BAD_FIELDS = [
    ("num_attention_heads", 0, "num_attention_heads must be a positive integer"),
    ("num_attention_heads", 3, "hidden_size=32 is not a multiple of num_attention_heads=3"),
    ("num_attention_heads", 64, "not a multiple of num_attention_heads=64"),
    ("num_key_value_heads", 3, "num_attention_heads=4 is not a multiple of num_key_value_heads"),
    ("num_key_value_heads", -1, "num_key_value_heads must be a positive integer"),
    ("num_hidden_layers", 10 ** 8, "num_hidden_layers=100000000 exceeds the limit"),
    ("num_hidden_layers", 0, "num_hidden_layers must be a positive integer"),
    ("hidden_size", -128, "hidden_size must be a positive integer"),
    ("hidden_size", 2 ** 30, "hidden_size=1073741824 exceeds the limit"),
    ("hidden_size", 32.0, "hidden_size must be a positive integer"),
    ("hidden_size", "32", "hidden_size must be a positive integer"),
    ("hidden_size", True, "hidden_size must be a positive integer"),
    ("hidden_size", ..., "hidden_size is missing"),
    ("vocab_size", 10 ** 9, "vocab_size=1000000000 exceeds the limit"),
    ("vocab_size", ..., "vocab_size is missing"),
    ("intermediate_size", 0, "intermediate_size must be a positive integer"),
    ("max_position_embeddings", 0, "max_position_embeddings must be a positive integer"),
    ("max_position_embeddings", 10 ** 9, "max_seq=1000000000 exceeds the limit"),
    ("rms_norm_eps", -1e-5, "rms_norm_eps must be a finite number > 0"),
    ("rms_norm_eps", float("nan"), "rms_norm_eps must be a finite number > 0"),
    ("rope_theta", 0, "rope_theta must be a finite number > 0"),
    ("rope_theta", "big", "rope_theta must be a finite number > 0"),
    ("rope_parameters", [1], "rope_parameters must be an object"),
    ("hidden_act", "gelu", "hidden_act='gelu' is not supported"),
    ("hidden_act", 3, "hidden_act must be a string"),
    ("tie_word_embeddings", "yes", "tie_word_embeddings must be true or false"),
    ("attention_bias", True, "attention_bias=true is not supported"),
    ("head_dim", 7, "head_dim=7 differs"),
    ("model_type", "gpt2", "model_type 'gpt2' is not supported"),
    ("model_type", ..., "model_type None is not supported"),
    ("quantization_config", {"quant_method": "gptq"}, "quant_method='gptq' is not supported"),
    ("quantization_config", {"quant_method": "bitnet", "linear_class": "int8"},
     "linear_class='int8' is unknown"),
    ("quantization_config", {"quant_method": "bitnet", "quantization_mode": "lazy"},
     "quantization_mode='lazy' is unknown"),
    ("quantization_config", {"quant_method": "bitnet", "use_rms_norm": True},
     "use_rms_norm=true .* is not supported"),
    ("quantization_config", {"quant_method": "bitnet", "modules_to_not_convert": ["q_proj"]},
     "modules_to_not_convert keeps model.layers.0.self_attn.q_proj in float"),
    ("quantization_config", "bitnet", "quantization_config must be an object"),
]


@pytest.mark.parametrize("key, value, message", BAD_FIELDS,
                         ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD_FIELDS])
def test_bad_config_field_is_refused_by_name(tmp_path, key, value, message):
    hf = {**BITNET, key: value}
    if value is ...:
        del hf[key]
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hf))
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match=message) as e:
        ckpt.load(d)
    assert time.perf_counter() - t < 1.0     # refused before anything is read or allocated
    assert str(d / "config.json") in str(e.value)


@pytest.mark.parametrize("text", ["[1, 2]", "", "{", '"bitnet"', "null"])
def test_config_json_not_an_object(tmp_path, text):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="config.json"):
        ckpt.load(tmp_path)


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(BITNET))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        ckpt.load(tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ckpt.load(tmp_path / "nothing.gguf")


def test_project_config_values_are_checked(tmp_path):
    """The project's own formats carry a ModelConfig: its bounds and types apply too."""
    for bad, message in (({"n_heads": 0}, "n_heads must be a positive int"),
                         ({"n_layers": 10 ** 8}, "n_layers=100000000 exceeds the limit"),
                         ({"d_model": -128}, "d_model must be a positive int"),
                         ({"rope_theta": float("inf")}, "rope_theta must be finite"),
                         ({"subln": 1}, "subln must be a bool"),
                         ({"ffn": "gelu"}, "ffn must be"),
                         ({"colour": 1}, "unknown ModelConfig field")):
        with pytest.raises(CheckpointError, match=message):
            ckpt.Checkpoint(bad, {}, {})
    with pytest.raises(CheckpointError, match="needs a dict"):
        ckpt.Checkpoint([1, 2], {}, {})


# ---------------------------------------------------------------------------------------------
# GGUF metadata
# ---------------------------------------------------------------------------------------------
def _write_gguf(path, arch="bitnet", config=None, skip=(), extra=None):
    """A GGUF with llama.cpp converter-style metadata only (no project key)."""
    c = config or ModelConfig(vocab_size=40, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2,
                              d_ff=48, max_seq=32, ffn="swiglu", tie_embeddings=True)
    params = init_params(c, seed=1)
    w = gguf.GGUFWriter(str(path), arch)
    keys = {"context_length": c.max_seq, "embedding_length": c.d_model,
            "block_count": c.n_layers, "feed_forward_length": c.d_ff,
            "attention.head_count": c.n_heads, "attention.head_count_kv": c.n_kv_heads}
    keys.update(extra or {})
    for k, v in keys.items():
        if k not in skip:
            w.add_uint32(f"{arch}.{k}", v)
    if "eps" not in skip:
        w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", c.norm_eps)
    for name, (_, is_bit) in param_shapes(c).items():
        p = params[name]
        a = p.trits.astype(np.float32) * p.gamma if is_bit else p
        w.add_tensor(ckpt.gguf_name(name), a.astype(np.float16) if is_bit else a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return c, params


def test_gguf_converter_metadata(tmp_path):
    c, params = _write_gguf(tmp_path / "m.gguf")
    ck = ckpt.load(tmp_path / "m.gguf")
    # vocabulary from the embedding, tied output, SiLU (llama.cpp's bitnet graph), RoPE base
    # 10000 (llama.cpp's default when the converter wrote none), eps as the file's float32
    assert ck.config == c.replace(rope_theta=10000.0, norm_eps=float(np.float32(c.norm_eps)))
    name = "layers.0.self_attn.k_proj.weight"
    assert np.array_equal(ck.ternary[name].trits, params[name].trits)
    assert ck.ternary[name].gamma == np.float32(np.float16(params[name].gamma))
    assert ckpt.load_gguf(tmp_path / "m.gguf", hidden_act="relu2").config.ffn == "relu2"


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_gguf_other_architecture_refused(tmp_path, arch):
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), arch)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(CheckpointError, match=f"architecture '{arch}' is not supported"):
        ckpt.load(tmp_path / "m.gguf")


@pytest.mark.parametrize("skip, extra, message", [
    (("block_count",), None, "lacks metadata key bitnet.block_count"),
    (("eps",), None, "lacks metadata key bitnet.attention.layer_norm_rms_epsilon"),
    ((), {"attention.head_count": 0}, "head_count must be a positive integer"),
    ((), {"attention.head_count": 5}, "not a multiple of bitnet.attention.head_count=5"),
    ((), {"attention.head_count_kv": 3}, "n_heads=4 not a multiple of n_kv_heads=3"),
    ((), {"block_count": 10 ** 8}, "block_count=100000000 exceeds the limit"),
    ((), {"rope.dimension_count": 4}, "rope.dimension_count=4 differs"),
    ((), {"block_count": 2}, "missing tensor blk.1.attn_norm.weight"),
])
def test_gguf_bad_metadata(tmp_path, skip, extra, message):
    _write_gguf(tmp_path / "m.gguf", skip=skip, extra=extra)
    with pytest.raises(CheckpointError, match=message):
        ckpt.load(tmp_path / "m.gguf")


def test_gguf_dense_float_projection_refused(tmp_path):
    c = ModelConfig(vocab_size=40, d_model=32, n_layers=1, n_heads=4, d_ff=48, max_seq=32,
                    tie_embeddings=True)
    w = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "bitnet")
    w.add_string("bitnet_accel.model_config", c.to_json())
    rng = np.random.default_rng(0)
    for name, (shape, _) in param_shapes(c).items():
        w.add_tensor(ckpt.gguf_name(name), rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(CheckpointError, match="blk.0.attn_q.weight .F32. is not ternary-valued"):
        ckpt.load(tmp_path / "m.gguf")
