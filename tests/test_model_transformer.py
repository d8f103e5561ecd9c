"""The golden transformer (model/transformer.py)."""

import json

import numpy as np
import pytest

from model.bitlinear import BitLinear, ternary_matmul
from model.transformer import (
    BITLINEAR_SUFFIXES,
    KVCache,
    ModelConfig,
    Transformer,
    init_params,
    param_shapes,
    params_from_float,
    params_from_ternary,
    relu2_ffn,
    swiglu_ffn,
)

SMALL = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=48, max_seq=40)
TOKENS = np.array([1, 5, 9, 2, 63, 0, 17, 17, 30, 4, 8, 11], np.int64)


@pytest.fixture(scope="module")
def small():
    return Transformer(SMALL, init_params(SMALL, seed=1))


def test_config_json_round_trip_and_aliases():
    c = ModelConfig(vocab_size=10, d_model=16, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=24,
                    ffn="swiglu", act_bits=4, max_seq=8, rope_theta=500.0, norm_eps=1e-6,
                    subln=False)
    assert ModelConfig.from_json(c.to_json()) == c
    assert json.loads(c.to_json())["d_ff"] == 24
    a = ModelConfig(ffn_dim=24, max_seq_len=8)
    assert a.d_ff == 24 and a.max_seq == 8 and a.n_kv_heads == a.n_heads
    assert ModelConfig.from_dict({"ffn_dim": 24}) == ModelConfig(d_ff=24)
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"bogus": 1})
    with pytest.raises(dataclasses_frozen()):
        c.d_model = 3


def dataclasses_frozen():
    import dataclasses
    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize("bad", [dict(d_model=30, n_heads=4), dict(n_heads=4, n_kv_heads=3),
                                 dict(ffn="gelu"), dict(act_bits=6), dict(vocab_size=0),
                                 dict(d_model=12, n_heads=4), dict(subln=1),
                                 dict(d_ff=4, ffn_dim=5), dict(quant="a8"), dict(quant=1.58),
                                 dict(quant="a4.8", ffn="swiglu"),
                                 dict(quant="a4.8", act_bits=4)])
def test_config_errors(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad)


A48 = SMALL.replace(quant="a4.8")


def test_quant_scheme_is_a_config_field():
    assert SMALL.quant == "b1.58" and SMALL.kv_bits is None
    assert ModelConfig.from_json(A48.to_json()) == A48 and A48.kv_bits == (3, 4)
    # a config recorded before the field existed is b1.58
    old = json.loads(SMALL.to_json())
    del old["quant"]
    assert ModelConfig.from_dict(old) == SMALL
    want = {"q_proj": ("absmean", 4), "k_proj": ("absmean", 4), "v_proj": ("absmean", 4),
            "o_proj": ("topk", 8), "gate_proj": ("absmean", 4), "up_proj": ("absmean", 4),
            "down_proj": ("absmax", 8)}
    for suffix in BITLINEAR_SUFFIXES:
        proj = suffix.split(".")[1]
        assert A48.input_quant(f"layers.1.{suffix}") == want[proj] == A48.input_quant(suffix)
        assert SMALL.input_quant(suffix) == ("absmax", 8)
        assert SMALL.replace(act_bits=4).input_quant(suffix) == ("absmax", 4)
    with pytest.raises(ValueError, match="not a BitLinear"):
        A48.input_quant("layers.0.input_layernorm.weight")


def test_a48_codes_reach_the_hook():
    """Every projection gets the codes of its a4.8 quantizer, computed from its float input."""
    params = init_params(A48, seed=2)
    seen = {}

    def hook(name, xq, trits):
        seen[name] = xq
        return ternary_matmul(xq, trits)

    a48 = Transformer(A48, params, matmul=hook)
    out = a48.forward(TOKENS)
    assert np.array_equal(out, Transformer(A48, params).forward(TOKENS))
    assert not np.array_equal(out, Transformer(SMALL, params).forward(TOKENS))
    for i in range(A48.n_layers):
        p = f"layers.{i}."
        for proj in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj",
                     "mlp.up_proj"):
            xq = seen[p + proj + ".weight"]
            assert xq.min() >= -8 and xq.max() <= 7
        assert np.array_equal(seen[p + "self_attn.q_proj.weight"],
                              seen[p + "self_attn.v_proj.weight"])
        o = seen[p + "self_attn.o_proj.weight"]
        assert np.all((o == 0).sum(-1) >= A48.d_model // 2)     # top-50 %
        assert np.abs(o).max() == 127
        down = seen[p + "mlp.down_proj.weight"]
        assert np.abs(down).max() == 127 and (down == 0).mean() > 0.3   # ReLU^2 zeros


def test_a48_kv_cache_is_quantized():
    """The keys and values the a4.8 cache holds are 3-bit codes (4-bit at position 0)."""
    model = Transformer(A48, init_params(A48, seed=2))
    cache = model.new_cache()
    model.step(TOKENS, cache)
    for k in (cache.k[0], cache.v[1]):
        s = 3 / np.abs(k).max(-1, keepdims=True)
        s[:, 0] = 7 / np.abs(k[:, 0]).max(-1, keepdims=True)
        codes = k * s
        np.testing.assert_allclose(codes, np.round(codes), atol=1e-4)
        assert np.abs(np.round(codes[:, 1:])).max() <= 4
        assert len(np.unique(np.round(codes[:, 1:]))) <= 8
    float_cache = Transformer(SMALL, model.params).new_cache()
    Transformer(SMALL, model.params).step(TOKENS, float_cache)
    assert not np.array_equal(float_cache.k[0], cache.k[0])


def test_param_names_follow_architecture():
    params = init_params(SMALL, seed=0)
    names = set(params)
    assert names == set(param_shapes(SMALL))
    assert {"embed_tokens.weight", "norm.weight", "lm_head.weight",
            "layers.1.self_attn.attn_sub_norm.weight", "layers.0.mlp.ffn_sub_norm.weight",
            "layers.1.post_attention_layernorm.weight", "layers.0.input_layernorm.weight"} <= names
    bits = [n for n, p in params.items() if isinstance(p, BitLinear)]
    assert len(bits) == 7 * SMALL.n_layers
    assert params["layers.0.mlp.down_proj.weight"].shape == (32, 48)
    assert params["layers.0.self_attn.k_proj.weight"].shape == (32, 32)
    assert all(isinstance(p, BitLinear) == n.endswith("proj.weight") for n, p in params.items())
    nosub = SMALL.replace(subln=False)
    assert not any("sub_norm" in n for n in param_shapes(nosub))
    # deterministic in the seed
    again = init_params(SMALL, seed=0)
    assert all(np.array_equal(params[n].trits, again[n].trits) for n in bits)


def test_forward_shape_and_determinism(small):
    logits = small.forward(TOKENS)
    assert logits.shape == (TOKENS.size, 64) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    assert np.array_equal(small.forward(TOKENS), logits)
    # causal: the prefix logits do not depend on later tokens
    assert np.array_equal(small.forward(TOKENS[:5]), logits[:5])


@pytest.mark.parametrize("cfg", [SMALL, SMALL.replace(n_kv_heads=2, ffn="swiglu"),
                                 SMALL.replace(subln=False, act_bits=4, n_kv_heads=1),
                                 SMALL.replace(quant="a4.8", n_kv_heads=2)])
def test_kv_cache_equals_forward(cfg):
    model = Transformer(cfg, init_params(cfg, seed=3))
    full = model.forward(TOKENS)
    cache = model.new_cache()
    rows = [model.step(int(t), cache) for t in TOKENS]
    assert all(r.shape == (1, 64) for r in rows)
    assert np.array_equal(np.concatenate(rows), full)
    assert len(cache) == TOKENS.size
    # prefill then single steps
    cache = KVCache(cfg)
    a = model.step(TOKENS[:7], cache)
    b = [model.step(TOKENS[i:i + 1], cache) for i in range(7, TOKENS.size)]
    assert np.array_equal(np.concatenate([a, *b]), full)
    # the model's own cache
    model.reset()
    assert np.array_equal(model.step(TOKENS[:3]), full[:3])
    assert np.array_equal(model.step(TOKENS[3:]), full[3:])


def test_hook_sees_every_bitlinear(small):
    calls = []

    def hook(name, xq, trits):
        assert xq.dtype == np.int8 and trits.dtype == np.int8 and xq.ndim == 2
        calls.append((name, xq.shape, trits.shape))
        return ternary_matmul(xq, trits)

    model = Transformer(SMALL, small.params, matmul=hook)
    assert np.array_equal(model.forward(TOKENS), small.forward(TOKENS))
    order = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    want = [f"layers.{i}.{n}.weight" for i in range(2) for n in order]
    assert [c[0] for c in calls] == want
    assert all(c[1][0] == TOKENS.size for c in calls)
    assert calls[-1][1:] == ((TOKENS.size, 48), (32, 48))
    # the hook's result is used: one wrong accumulator changes the logits
    def wrong(name, xq, trits):
        acc = ternary_matmul(xq, trits)
        if name == "layers.1.mlp.down_proj.weight":
            acc[-1, 0] += 1000
        return acc
    out = Transformer(SMALL, small.params, matmul=wrong).forward(TOKENS)
    ref = small.forward(TOKENS)
    assert np.array_equal(out[:-1], ref[:-1]) and not np.array_equal(out[-1], ref[-1])
    with pytest.raises(ValueError, match="shape"):
        Transformer(SMALL, small.params, matmul=lambda n, x, t: np.zeros((1, 1), np.int32)
                    ).forward(TOKENS)


def test_gqa_equals_mha_with_repeated_heads():
    gqa = SMALL.replace(n_kv_heads=2)
    params = init_params(gqa, seed=5)
    mha_params = dict(params)
    hd = gqa.head_dim
    for i in range(gqa.n_layers):
        for p in ("k_proj", "v_proj"):
            name = f"layers.{i}.self_attn.{p}.weight"
            t = params[name].trits.reshape(2, hd, -1)
            mha_params[name] = BitLinear(np.repeat(t, 2, axis=0).reshape(4 * hd, -1),
                                         params[name].gamma)
    a = Transformer(gqa, params).forward(TOKENS)
    b = Transformer(SMALL, mha_params).forward(TOKENS)
    assert np.array_equal(a, b)


def test_ffn_functions():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    g = BitLinear.from_float(rng.standard_normal((12, 8)))
    u = BitLinear.from_float(rng.standard_normal((12, 8)))
    d = BitLinear.from_float(rng.standard_normal((8, 12)))
    gx, ux = g(x), u(x)
    assert np.array_equal(relu2_ffn(x, g, u, d), d(np.maximum(gx, 0) ** 2 * ux))
    assert np.array_equal(swiglu_ffn(x, g, u, d), d(gx / (1 + np.exp(-gx)) * ux))
    names = []
    relu2_ffn(x, g, u, d, np.ones(12, np.float32),
              matmul=lambda n, a, t: names.append(n) or ternary_matmul(a, t))
    assert names == ["mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]


def test_generate(small):
    prompt = TOKENS[:4]
    out = small.generate(prompt, 6)
    seq = list(prompt)
    for _ in range(6):
        seq.append(int(np.argmax(small.forward(np.array(seq))[-1])))
    assert out == seq[4:]
    s1 = small.generate(prompt, 6, greedy=False, temperature=1.5, seed=7)
    s2 = small.generate(prompt, 6, greedy=False, temperature=1.5, seed=7)
    assert s1 == s2 and all(0 <= t < 64 for t in s1)
    assert small.generate(prompt, 0) == []


def test_errors(small):
    with pytest.raises(ValueError, match="max_seq"):
        small.forward(np.zeros(41, np.int64))
    with pytest.raises(ValueError, match="token ids"):
        small.forward([0, 64])
    with pytest.raises(TypeError):
        small.forward([0.5])
    with pytest.raises(ValueError):
        small.forward([])
    cache = small.new_cache()
    small.step(np.zeros(40, np.int64), cache)
    with pytest.raises(ValueError, match="max_seq"):
        small.step(0, cache)
    params = dict(small.params)
    del params["norm.weight"]
    with pytest.raises(ValueError, match="missing parameter norm.weight"):
        Transformer(SMALL, params)
    params = dict(small.params, extra=np.zeros(1))
    with pytest.raises(ValueError, match="unexpected"):
        Transformer(SMALL, params)
    params = dict(small.params)
    params["layers.0.mlp.up_proj.weight"] = np.zeros((48, 32), np.float32)
    with pytest.raises(TypeError, match="BitLinear"):
        Transformer(SMALL, params)
    with pytest.raises(ValueError, match="temperature"):
        small.generate([1], 2, greedy=False, temperature=0)


def test_params_from_float_and_ternary(small):
    floats = {n: p for n, p in small.params.items() if not isinstance(p, BitLinear)}
    tern = {n: (p.trits, p.gamma) for n, p in small.params.items() if isinstance(p, BitLinear)}
    again = Transformer(SMALL, params_from_ternary(SMALL, floats, tern))
    assert np.array_equal(again.forward(TOKENS), small.forward(TOKENS))
    # float weights equal to trits * gamma quantize back to the same trits
    fl = dict(floats)
    fl.update({n: t.astype(np.float32) * g for n, (t, g) in tern.items()})
    p2 = params_from_float(SMALL, fl)
    assert all(np.array_equal(p2[n].trits, tern[n][0]) for n in tern)
