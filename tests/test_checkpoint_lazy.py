"""Lean loading: checkpoints opened lazily run the golden model bit-identically to fully loaded
ones; the 2B4T-layout generator writes what the Hugging Face loader reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model import checkpoint as ckpt
from model.checkpoint.safetensors_file import SafetensorsFile, bf16_bits, open_safetensors
from model.checkpoint.synthetic import (
    BITNET_2B4T,
    DENSITY,
    main,
    random_trits,
    write_gguf,
    write_hf,
)
from model.transformer import param_shapes

#: 2B4T's layout and ratios at a size the suite can afford
SMALL_2B4T = BITNET_2B4T.replace(vocab_size=320, d_model=64, n_layers=2, n_heads=4,
                                 n_kv_heads=2, d_ff=128, max_seq=64)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_hf(tmp_path_factory.mktemp("syn") / "m", SMALL_2B4T, seed=3)


def test_generator_writes_the_2b4t_layout(synthetic):
    cfg = json.loads((synthetic / "config.json").read_text())
    assert cfg["quantization_config"]["linear_class"] == "autobitlinear"
    assert cfg["quantization_config"]["quantization_mode"] == "offline"
    assert cfg["tie_word_embeddings"] and cfg["hidden_act"] == "relu2"
    assert cfg["num_key_value_heads"] == 2 and cfg["rope_parameters"]["rope_theta"] == 500000.0
    index = json.loads((synthetic / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 1 + SMALL_2B4T.n_layers   # a shard a layer
    ts = open_safetensors(synthetic)
    assert ts.dtype("model.layers.0.mlp.down_proj.weight") == "U8"
    assert ts.shape("model.layers.0.mlp.down_proj.weight") == (64 // 4, 128)
    assert ts.dtype("model.layers.0.mlp.down_proj.weight_scale") == "BF16"
    assert ts.dtype("model.embed_tokens.weight") == "BF16"
    assert "lm_head.weight" not in ts
    ck = ckpt.load(synthetic)
    assert ck.config == SMALL_2B4T
    t = ck.ternary["layers.1.mlp.gate_proj.weight"].trits
    assert abs(np.count_nonzero(t) / t.size - DENSITY) < 0.02
    # seeded: the same seed writes the same bytes
    again = write_hf(synthetic.parent / "again", SMALL_2B4T, seed=3)
    for f in sorted(p.name for p in synthetic.iterdir()):
        assert (again / f).read_bytes() == (synthetic / f).read_bytes(), f


def test_lazy_reader_equals_the_loaded_checkpoint(synthetic):
    reader = ckpt.open_checkpoint(synthetic)
    full = ckpt.load(synthetic)
    for name, (_, is_bit) in param_shapes(reader.config).items():
        if is_bit:
            assert reader.ternary(name) == full.ternary[name], name
        else:
            assert np.array_equal(reader.float(name), full.floats[name]), name
    tokens = np.array([5, 1, 300, 7, 7])
    want = full.transformer().forward(tokens)
    # the lazy model reads each layer when it runs it, and the tied head a block at a time
    assert np.array_equal(reader.transformer().forward(tokens), want)
    model = reader.transformer()
    cache = model.new_cache()
    steps = np.concatenate([model.step(tokens[:3], cache), model.step(tokens[3:], cache)])
    assert np.array_equal(steps, want)


@pytest.mark.parametrize("fmt", ["m.npz", "m.gguf"])
def test_lazy_reader_of_other_formats(synthetic, tmp_path, fmt):
    full = ckpt.load(synthetic)
    ckpt.save(tmp_path / fmt, full)
    reader = ckpt.open_checkpoint(tmp_path / fmt)
    tokens = np.arange(4)
    assert np.array_equal(reader.transformer().forward(tokens), full.transformer().forward(tokens))
    assert reader.read() == full


def test_lazy_reader_reports_bad_tensors_on_open_or_use(synthetic, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in synthetic.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((bad / "config.json").read_text())
    cfg["intermediate_size"] = 96
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ckpt.CheckpointError, match="mlp.gate_proj.weight has shape"):
        ckpt.open_checkpoint(bad)
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint"):
        ckpt.open_checkpoint(tmp_path / "missing.gguf")


def test_safetensors_views_are_lazy_and_bf16_rounds_to_nearest_even(synthetic, tmp_path):
    f = SafetensorsFile(sorted(synthetic.glob("model-*.safetensors"))[0])
    view = f.view("model.embed_tokens.weight")
    assert not view.flags.writeable and not view.flags.owndata   # a view of the read-only map
    assert view.dtype == np.uint16 and view.shape == (320, 64)
    assert np.array_equal(f.get("model.embed_tokens.weight")[3],
                          (view[3].astype(np.uint32) << 16).view(np.float32))
    x = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5], np.float32)
    assert bf16_bits(x).tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020]   # ties to even


def test_random_trits_and_generator_cli(tmp_path):
    t = random_trits(np.random.default_rng(0), (300, 300))
    assert set(np.unique(t).tolist()) == {-1, 0, 1}
    assert abs(np.count_nonzero(t == 1) - np.count_nonzero(t == -1)) < 0.02 * t.size
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "full"), "--layers", "1"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "n"), "--layers", "0"])


def test_generator_gguf_is_the_same_model(tmp_path):
    """write_gguf writes what llama.cpp's converter writes for these weights; it loads (as
    relu2, 2B4T's activation) into the same model as the HF directory of the same seed."""
    import gguf

    config = SMALL_2B4T.replace(d_model=256, d_ff=512)
    hf = ckpt.load(write_hf(tmp_path / "hf", config, seed=4))
    for qtype in ("TQ1_0", "TQ2_0"):
        path = write_gguf(tmp_path / f"m-{qtype}.gguf", config, seed=4, qtype=qtype)
        reader = gguf.GGUFReader(str(path))
        types = {t.name: t.tensor_type.name for t in reader.tensors}
        assert types["token_embd.weight"] == "F16" and types["blk.1.ffn_down.weight"] == qtype
        assert "output.weight" not in types and not any(n.endswith(".scale") for n in types)
        g = ckpt.load_gguf(path, hidden_act="relu2")
        assert g.config == config.replace(norm_eps=float(np.float32(config.norm_eps)))
        for name, t in hf.ternary.items():
            assert np.array_equal(g.ternary[name].trits, t.trits), name
            assert g.ternary[name].gamma == t.gamma, name      # bf16 values are exact in f16
        tokens = np.arange(3)
        assert np.array_equal(g.transformer().forward(tokens), hf.transformer().forward(tokens))
