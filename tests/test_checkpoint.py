"""Checkpoint formats: exact round trips, imports into the golden model, clear errors."""

from __future__ import annotations

import json
import struct

import gguf
import numpy as np
import pytest

from model import checkpoint as ckpt
from model.checkpoint import Checkpoint, CheckpointError, TernaryTensor
from model.checkpoint.safetensors_file import read_safetensors
from model.transformer import ModelConfig, param_shapes

SMALL = ModelConfig(vocab_size=256, d_model=32, n_layers=2, n_heads=4, d_ff=48, max_seq=64)
# rows a multiple of 256: every BitLinear can be a TQ1_0 / TQ2_0 tensor
TQ = SMALL.replace(d_model=256, n_layers=1, d_ff=256)


def random_float_params(config, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, _) in param_shapes(config).items():
        if name.endswith("norm.weight"):
            out[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            out[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
    return out


def random_checkpoint(config=SMALL, seed=0) -> Checkpoint:
    ck = ckpt.from_float(random_float_params(config, seed), config)
    # named edge cases: one all-zero, one all +1, one all -1 projection
    names = sorted(ck.ternary)
    for name, value in zip(names[:3], (0, 1, -1), strict=True):
        t = ck.ternary[name]
        ck.ternary[name] = TernaryTensor(np.full_like(t.trits, value), t.gamma)
    ck.validate()
    return ck


@pytest.fixture(scope="module")
def small():
    return random_checkpoint()


@pytest.fixture(scope="module")
def shipped():
    return ckpt.load(ckpt_path())


def ckpt_path():
    from model.train import CHECKPOINT

    return CHECKPOINT


# ---------------------------------------------------------------------------------------------
# absmean
# ---------------------------------------------------------------------------------------------
def test_absmean_definition():
    w = np.array([[0.3, -0.05, 1.0, -2.0], [0.0, 0.15, -0.45, 0.5]], dtype=np.float32)
    t = ckpt.absmean_ternary(w)
    gamma = np.float32(np.abs(w).mean())
    assert t.gamma == gamma
    assert np.array_equal(t.trits, np.clip(np.round(w / gamma), -1, 1).astype(np.int8))
    z = ckpt.absmean_ternary(np.zeros((3, 4), np.float32))
    assert z.gamma == np.float32(1e-5) and not z.trits.any()


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------
def test_npz_round_trip(small, tmp_path):
    path = tmp_path / "m.npz"
    ckpt.save(path, small)
    back = ckpt.load(path)
    assert back == small
    # and the trits went through the project's tq1 packing: 5 per byte
    with np.load(path) as z:
        name = "layers.0.mlp.down_proj.weight"
        assert z[name + ".tq1"].size == -(-small.ternary[name].trits.size // 5)


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0"])
def test_gguf_round_trip_all_tq(qtype, tmp_path):
    ck = random_checkpoint(TQ, seed=3)
    path = tmp_path / "m.gguf"
    types = ckpt.save_gguf(path, ck, qtype=qtype, fallback=None)
    assert {types[n] for n in ck.ternary} == {qtype}
    reader = gguf.GGUFReader(str(path))
    byname = {t.name: t for t in reader.tensors}
    assert byname["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType[qtype]
    # llama.cpp's own dequantizer (gguf-py) gives back exactly the trits
    q = byname["blk.0.ffn_down.weight"]
    deq = gguf.quants.dequantize(q.data, q.tensor_type).reshape(256, 256)
    assert np.array_equal(deq, ck.ternary["layers.0.mlp.down_proj.weight"].trits)
    assert ckpt.load(path) == ck


def test_gguf_fallback_for_short_rows(small, tmp_path):
    path = tmp_path / "m.gguf"
    types = ckpt.save_gguf(path, small, qtype="TQ1_0")
    assert set(types[n] for n in small.ternary) == {"F16"}
    assert ckpt.load(path) == small
    with pytest.raises(CheckpointError, match="q_proj.*multiple of the TQ1_0 block size 256"):
        ckpt.save_gguf(tmp_path / "x.gguf", small, qtype="TQ1_0", fallback=None)


def test_gguf_llama_cpp_style_block_scale(tmp_path):
    """A llama.cpp converter style GGUF: TQ blocks carry gamma, no .scale tensor."""
    ck = random_checkpoint(TQ, seed=5)
    path = tmp_path / "llama.gguf"
    w = gguf.GGUFWriter(str(path), "bitnet")
    w.add_string("bitnet_accel.model_config", ck.config.to_json())
    for name, (_, is_bit) in param_shapes(ck.config).items():
        g = ckpt.gguf_name(name)
        if is_bit:
            t = ck.ternary[name]
            # what convert_hf_to_gguf.py does: dequantized ternary weights, then TQ quantize
            vals = t.trits.astype(np.float32) * np.float32(np.float16(t.gamma))
            w.add_tensor(g, gguf.quants.quantize(vals, gguf.GGMLQuantizationType.TQ2_0),
                         raw_dtype=gguf.GGMLQuantizationType.TQ2_0)
        else:
            w.add_tensor(g, ck.floats[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    back = ckpt.load(path)
    for name, t in ck.ternary.items():
        assert np.array_equal(back.ternary[name].trits, t.trits)
        if t.trits.any():
            assert back.ternary[name].gamma == np.float32(np.float16(t.gamma))


def test_hf_round_trip(small, tmp_path):
    d = tmp_path / "hf"
    ckpt.save(d, small)
    assert ckpt.load(d) == small
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["model_type"] == "bitnet" and cfg["hidden_act"] == "relu2"
    assert cfg["quantization_config"]["linear_class"] == "autobitlinear"
    assert cfg["quantization_config"]["quantization_mode"] == "offline"
    # the file is a valid safetensors file for the reference reader, and the layout is
    # transformers' row-interleaved i2 with weight_scale = gamma (AutoBitLinear multiplies)
    from safetensors.numpy import load_file

    st = load_file(str(d / "model.safetensors"))
    name = "layers.1.mlp.gate_proj.weight"
    packed = st["model." + name]
    trits = small.ternary[name].trits
    rows = packed.shape[0]
    for i in range(4):
        assert np.array_equal(((packed >> (2 * i)) & 3).astype(np.int8) - 1,
                              trits[i * rows:(i + 1) * rows])
    ws = st["model.layers.1.mlp.gate_proj.weight_scale"]
    assert ws.dtype == np.float32 and ws[0] == small.ternary[name].gamma


def test_hf_bf16_scales_and_prefix(small, tmp_path):
    """A bf16 weight_scale (as Microsoft's checkpoints store it) imports too."""
    from safetensors.numpy import save_file

    d = tmp_path / "hf"
    ckpt.save_hf(d, small)
    st = read_safetensors(d / "model.safetensors")
    name = "model.layers.0.self_attn.v_proj.weight_scale"
    # write the file again with that scale as raw bf16 bytes
    header_tensors = {k: v for k, v in st.items() if k != name}
    save_file(header_tensors, str(tmp_path / "tmp.safetensors"))
    bf16 = (np.float32(2.0).view(np.uint32) >> 16).astype(np.uint16)
    _rewrite_with_extra(tmp_path / "tmp.safetensors", d / "model.safetensors", name, "BF16",
                        [1], bf16.tobytes())
    back = ckpt.load_hf(d)
    assert back.ternary["layers.0.self_attn.v_proj.weight"].gamma == np.float32(2.0)


def _rewrite_with_extra(src, dst, name, dtype, shape, payload):
    blob = src.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    header[name] = {"dtype": dtype, "shape": shape,
                    "data_offsets": [len(data), len(data) + len(payload)]}
    h = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(h)) + h + data + payload)


def test_float_import(tmp_path):
    from safetensors.numpy import save_file

    params = random_float_params(SMALL, seed=7)
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bitnet", "vocab_size": 256, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 48, "max_position_embeddings": 64,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-5}))
    save_file({("" if k == "lm_head.weight" else "model.") + k: v for k, v in params.items()},
              str(tmp_path / "model.safetensors"))
    ck = ckpt.load(tmp_path / "model.safetensors")
    assert ck == ckpt.from_float(params, SMALL)
    w = params["layers.0.mlp.up_proj.weight"]
    t = ck.ternary["layers.0.mlp.up_proj.weight"]
    assert t.gamma == np.float32(np.abs(w).mean())
    np.savez(tmp_path / "f.npz", **params,
             __config__=np.frombuffer(SMALL.to_json().encode(), np.uint8))
    assert ckpt.load_float(tmp_path / "f.npz") == ck


# ---------------------------------------------------------------------------------------------
# into the golden model
# ---------------------------------------------------------------------------------------------
def test_all_formats_give_the_same_golden_logits(small, tmp_path):
    ckpt.save(tmp_path / "m.npz", small)
    ckpt.save(tmp_path / "m.gguf", small)
    ckpt.save(tmp_path / "hf", small)
    tokens = np.frombuffer(b"In the beginning", np.uint8).astype(np.int64)
    ref = small.transformer().forward(tokens)
    for p in ("m.npz", "m.gguf", "hf"):
        out = ckpt.load(tmp_path / p).transformer().forward(tokens)
        assert np.array_equal(out, ref), p


def test_shipped_checkpoint_round_trips(shipped, tmp_path):
    assert shipped.ternary_weights <= 600_000
    for p in ("m.npz", "m.gguf", "hf"):
        ckpt.save(tmp_path / p, shipped)
        assert ckpt.load(tmp_path / p) == shipped, p
    types = ckpt.save_gguf(tmp_path / "t2.gguf", shipped, qtype="TQ2_0")
    assert types["layers.0.mlp.down_proj.weight"] == "TQ2_0"  # K = ffn_dim = 256
    assert ckpt.load(tmp_path / "t2.gguf") == shipped


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0, 7, 100, 0.5, -10])
def test_truncated_files(small, tmp_path, cut):
    for p in ("m.npz", "m.gguf", "hf"):
        ckpt.save(tmp_path / p, small)
        f = tmp_path / p
        if p == "hf":
            f = f / "model.safetensors"
        blob = f.read_bytes()
        n = int(len(blob) * cut) if isinstance(cut, float) else (cut if cut >= 0 else
                                                                  len(blob) + cut)
        f.write_bytes(blob[:n])
        with pytest.raises(CheckpointError):
            ckpt.load(tmp_path / p)


def test_npz_errors_name_the_tensor(small, tmp_path):
    path = tmp_path / "m.npz"
    ckpt.save(path, small)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    name = "layers.1.self_attn.o_proj.weight"

    def write(mod):
        a = dict(arrays)
        mod(a)
        np.savez(tmp_path / "bad.npz", **a)
        return tmp_path / "bad.npz"

    with pytest.raises(CheckpointError, match=f"missing tensor {name}.tq1"):
        ckpt.load(write(lambda a: a.pop(name + ".tq1")))
    with pytest.raises(CheckpointError, match=f"{name}.tq1 has 10 bytes"):
        ckpt.load(write(lambda a: a.__setitem__(name + ".tq1", a[name + ".tq1"][:10])))
    with pytest.raises(CheckpointError, match=f"{name}.gamma has dtype float64"):
        ckpt.load(write(lambda a: a.__setitem__(name + ".gamma", np.float64(1.0))))
    bad = arrays[name + ".tq1"].copy()
    bad[3] = 20  # one of the 13 bytes the tq1 encoder never produces
    with pytest.raises(CheckpointError, match=f"{name}.tq1"):
        ckpt.load(write(lambda a: a.__setitem__(name + ".tq1", bad)))
    with pytest.raises(CheckpointError, match="norm.weight has shape"):
        ckpt.load(write(lambda a: a.__setitem__("norm.weight", np.ones(5, np.float32))))
    with pytest.raises(CheckpointError, match="embed_tokens.weight has dtype float64"):
        ckpt.load(write(lambda a: a.__setitem__(
            "embed_tokens.weight", a["embed_tokens.weight"].astype(np.float64))))
    with pytest.raises(CheckpointError, match="unexpected tensor.*stray"):
        ckpt.load(write(lambda a: a.__setitem__("stray", np.zeros(1))))
    with pytest.raises(CheckpointError, match="__header__"):
        ckpt.load(write(lambda a: a.pop("__header__")))


def test_gguf_errors_name_the_tensor(tmp_path):
    ck = random_checkpoint(TQ, seed=9)
    path = tmp_path / "m.gguf"
    ckpt.save_gguf(path, ck, qtype="TQ2_0", fallback=None)
    reader = gguf.GGUFReader(str(path))
    t = {x.name: x for x in reader.tensors}["blk.0.ffn_up.weight"]
    blob = bytearray(path.read_bytes())
    off = int(t.data_offset)
    blob[off] |= 0b11  # code 3 is not a trit
    (tmp_path / "bad.gguf").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="blk.0.ffn_up.weight.*invalid trit code"):
        ckpt.load(tmp_path / "bad.gguf")

    ckpt.save_gguf(path, ck, qtype="TQ1_0", fallback=None)
    reader = gguf.GGUFReader(str(path))
    t = {x.name: x for x in reader.tensors}["blk.0.attn_k.weight"]
    blob = bytearray(path.read_bytes())
    blob[int(t.data_offset) + 5] = 40  # one of the 13 bytes the base-3 encoder never writes
    (tmp_path / "bad1.gguf").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="blk.0.attn_k.weight.*invalid trit code"):
        ckpt.load(tmp_path / "bad1.gguf")


def test_gguf_wrong_type_and_shape(tmp_path):
    ck = random_checkpoint(SMALL, seed=2)

    def write(path, override):
        w = gguf.GGUFWriter(str(path), "bitnet")
        w.add_string("bitnet_accel.model_config", ck.config.to_json())
        for name, (_, is_bit) in param_shapes(ck.config).items():
            g = ckpt.gguf_name(name)
            a = ck.ternary[name].trits.astype(np.float32) if is_bit else ck.floats[name]
            if g in override:
                a, kw = override[g]
                w.add_tensor(g, a, **kw)
            else:
                w.add_tensor(g, a)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    q8 = gguf.quants.quantize(np.zeros((32, 32), np.float32), gguf.GGMLQuantizationType.Q8_0)
    write(tmp_path / "a.gguf", {"blk.1.attn_v.weight": (
        q8, {"raw_dtype": gguf.GGMLQuantizationType.Q8_0})})
    with pytest.raises(CheckpointError, match="blk.1.attn_v.weight has type Q8_0"):
        ckpt.load(tmp_path / "a.gguf")
    write(tmp_path / "b.gguf", {"blk.0.ffn_gate.weight": (np.zeros((48, 31), np.float32), {})})
    with pytest.raises(CheckpointError, match=r"blk.0.ffn_gate.weight .* has shape \(48, 31\)"):
        ckpt.load(tmp_path / "b.gguf")


def test_hf_errors_name_the_tensor(small, tmp_path):
    d = tmp_path / "hf"
    ckpt.save_hf(d, small)
    st = read_safetensors(d / "model.safetensors")
    from safetensors.numpy import save_file

    key = "model.layers.0.mlp.down_proj.weight"
    bad = dict(st)
    bad[key] = st[key].astype(np.int32)
    save_file(bad, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{key} has dtype I32, want packed U8"):
        ckpt.load(d)
    bad = dict(st)
    bad[key] = st[key].copy()
    bad[key][0, 0] = 0xFF  # code 3
    save_file(bad, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=key):
        ckpt.load(d)
    bad = dict(st)
    bad.pop("model.layers.1.self_attn.q_proj.weight_scale")
    save_file(bad, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing tensor .*q_proj.weight_scale"):
        ckpt.load(d)
    bad = dict(st)
    bad[key] = st[key][:, :-1].copy()
    save_file(bad, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{key} has shape"):
        ckpt.load(d)


def test_checkpoint_validation():
    ck = random_checkpoint()
    name = "layers.0.self_attn.q_proj.weight"
    t = ck.ternary[name]
    with pytest.raises(CheckpointError, match=f"{name} has values outside"):
        Checkpoint(ck.config, ck.floats,
                   {**ck.ternary, name: TernaryTensor((t.trits * 2).astype(np.int8), t.gamma)})
    with pytest.raises(CheckpointError, match=f"{name} has invalid gamma"):
        Checkpoint(ck.config, ck.floats, {**ck.ternary, name: TernaryTensor(t.trits, 0.0)})
    with pytest.raises(CheckpointError, match="missing tensor"):
        Checkpoint(ck.config, {}, ck.ternary)
    with pytest.raises(CheckpointError, match="invalid model config.*d_model=3 not a multiple"):
        Checkpoint({"d_model": 3}, {}, {})


# ---------------------------------------------------------------------------------------------
# the schema is model.transformer.param_shapes: every ModelConfig works
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    {"subln": False, "ffn": "swiglu"},                     # a LLaMA-style reproduction
    {"n_kv_heads": 2, "tie_embeddings": True},              # GQA, tied head (2B4T-like)
    {"act_bits": 4},
    {"quant": "a4.8"},                                      # recorded in the npz and GGUF header
])
def test_every_model_config_round_trips(tmp_path, changes):
    config = SMALL.replace(**changes)
    ck = ckpt.from_float(random_float_params(config, seed=4), config)
    assert ("layers.0.mlp.ffn_sub_norm.weight" in ck.floats) == config.subln
    assert ("lm_head.weight" in ck.floats) == (not config.tie_embeddings)
    tokens = np.arange(6)
    want = ck.transformer().forward(tokens)
    for p in ("m.npz", "m.gguf"):
        ckpt.save(tmp_path / p, ck)
        back = ckpt.load(tmp_path / p)
        assert back == ck, p
        assert np.array_equal(back.transformer().forward(tokens), want), p
    if config.subln and config.act_bits == 8 and config.quant == "b1.58":
        ckpt.save(tmp_path / "hf", ck)
        assert ckpt.load(tmp_path / "hf") == ck
    else:   # transformers' BitNet is b1.58 with 8-bit activations and sub-norms
        with pytest.raises(CheckpointError, match="act_bits=4|subln=False|quant='a4.8'"):
            ckpt.save_hf(tmp_path / "hf", ck)
        assert not (tmp_path / "hf").exists()


def test_tied_head_is_the_embedding():
    config = SMALL.replace(tie_embeddings=True)
    ck = ckpt.from_float(random_float_params(config, seed=5), config)
    untied = Checkpoint(config.replace(tie_embeddings=False),
                        {**ck.floats, "lm_head.weight": ck.floats["embed_tokens.weight"]},
                        ck.ternary)
    tokens = np.arange(5)
    assert np.array_equal(ck.transformer().forward(tokens), untied.transformer().forward(tokens))


def test_gguf_names_and_keys_are_llama_cpps(tmp_path):
    """A tied model's GGUF has exactly the tensors llama.cpp's bitnet loader creates
    (gguf-py's MODEL_TENSORS[BITNET] names, optional <proj>.scale) and its bitnet.* keys."""
    config = TQ.replace(tie_embeddings=True, n_kv_heads=2)
    ck = ckpt.from_float(random_float_params(config, seed=6), config)
    ckpt.save_gguf(tmp_path / "m.gguf", ck)
    reader = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    arch = gguf.MODEL_ARCH.BITNET
    known = set()
    for t in gguf.MODEL_TENSORS[arch]:
        for bid in range(config.n_layers):
            known.add(gguf.TENSOR_NAMES[t].format(bid=bid) + ".weight")
    scales = {n.removesuffix(".weight") + ".scale" for n in known
              if n.split(".")[-2] in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
                                      "ffn_up", "ffn_down")}
    names = {t.name for t in reader.tensors}
    assert names - scales == known and scales <= names
    assert reader.get_field("general.architecture").contents() == gguf.MODEL_ARCH_NAMES[arch]
    keys = {f.name for f in reader.fields.values()}
    llm = gguf.Keys.LLM
    for k in (llm.CONTEXT_LENGTH, llm.EMBEDDING_LENGTH, llm.BLOCK_COUNT,
              llm.FEED_FORWARD_LENGTH, gguf.Keys.Attention.HEAD_COUNT,
              gguf.Keys.Attention.HEAD_COUNT_KV, gguf.Keys.Attention.LAYERNORM_RMS_EPS,
              gguf.Keys.Rope.FREQ_BASE):
        assert k.format(arch="bitnet") in keys, k
    assert reader.get_field("bitnet.attention.head_count_kv").contents() == 2


def test_hf_offline_ternary_floats(small, tmp_path):
    """autobitlinear offline with the projection stored as ternary-valued floats (not packed):
    read as trits * value * weight_scale; a wrong shape or non-ternary values are refused."""
    from safetensors.numpy import save_file

    d = tmp_path / "hf"
    ckpt.save_hf(d, small)
    st = read_safetensors(d / "model.safetensors")
    name = "layers.0.mlp.up_proj.weight"
    t = small.ternary[name]
    st["model." + name] = t.trits.astype(np.float32) * np.float32(0.5)
    save_file(st, str(d / "model.safetensors"))
    back = ckpt.load(d)
    assert np.array_equal(back.ternary[name].trits, t.trits)
    assert back.ternary[name].gamma == np.float32(0.5 * np.float64(t.gamma))
    st["model." + name] = t.trits[:-1].astype(np.float32)
    save_file(st, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{name} has shape"):
        ckpt.load(d)
    st["model." + name] = np.linspace(-1, 1, t.trits.size, dtype=np.float32).reshape(
        t.trits.shape)
    save_file(st, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not ternary-valued"):
        ckpt.load(d)
