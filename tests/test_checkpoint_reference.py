"""Checkpoints written by the reference tools load with the reference's numerics.

``tests/data/checkpoints/`` holds small checkpoints that Hugging Face transformers
(``BitNetForCausalLM``, ``LlamaForCausalLM``), gguf-py and llama.cpp's own
``convert_hf_to_gguf.py`` wrote, with the reference's logits, and, for every BitLinear, the
trits and scale the reference applies and the activation codes and integer products it computed
(``generate.py`` there makes them; ``manifest.json`` names the tool versions). Nothing here needs
torch: the files are read with the project's loaders only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model import checkpoint as ckpt
from model.bitlinear import ternary_matmul
from model.checkpoint.safetensors_file import open_safetensors

DATA = Path(__file__).parent / "data" / "checkpoints"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
VARIANTS = sorted(MANIFEST["variants"])

#: Logits agree within this fraction of the reference's largest |logit| (per sequence).
LOGIT_RTOL = 1e-4


def reference(name):
    with np.load(DATA / MANIFEST["variants"][name]["reference"]) as z:
        return {k: z[k] for k in z.files}


def load(name):
    v = MANIFEST["variants"][name]
    path = DATA / v["checkpoint"]
    if v["format"] == "gguf":
        return ckpt.load_gguf(path, hidden_act=v.get("hidden_act"))
    return ckpt.load(path)


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    return request.param, load(request.param), reference(request.param)


def test_every_layout_is_covered():
    formats = {v["format"] for v in MANIFEST["variants"].values()}
    assert {"hf", "gguf"} <= formats
    hf = [v for v in MANIFEST["variants"].values() if v["format"] == "hf"]
    assert {(v.get("linear_class"), v.get("quantization_mode")) for v in hf} >= {
        ("bitlinear", "offline"), ("autobitlinear", "offline"), ("autobitlinear", "online")}
    assert {v["hidden_act"] for v in MANIFEST["variants"].values()} >= {"relu2", "silu"}
    assert any(v["tied"] for v in MANIFEST["variants"].values())
    assert any(v["n_kv_heads"] < v["n_heads"] for v in MANIFEST["variants"].values())
    assert {v.get("gguf_outtype") for v in MANIFEST["variants"].values()} >= {"tq1_0", "tq2_0"}


def test_config_matches_the_reference(variant):
    name, ck, _ = variant
    v = MANIFEST["variants"][name]
    c = ck.config
    assert c.ffn == {"relu2": "relu2", "silu": "swiglu"}[v["hidden_act"]]
    assert c.tie_embeddings == v["tied"]
    assert (c.n_heads, c.n_kv_heads) == (v["n_heads"], v["n_kv_heads"])
    assert c.rope_theta == pytest.approx(v["rope_theta"], rel=1e-6)


def test_trits_and_scales_equal_the_reference(variant):
    name, ck, ref = variant
    projections = sorted(k.removesuffix(":trits") for k in ref if k.endswith(":trits"))
    assert projections == sorted(ck.ternary)
    for p in projections:
        t = ck.ternary[p]
        assert np.array_equal(t.trits, ref[p + ":trits"]), p
        # the scale the reference applies, to float32 rounding of the reference's own math
        assert float(t.gamma) == pytest.approx(float(ref[p + ":gamma"]), rel=2 ** -22), p


def test_accumulators_exact_on_the_reference_codes(variant):
    _, ck, ref = variant
    for p, t in ck.ternary.items():
        acc = ternary_matmul(ref[p + ":xq"], t.trits)
        assert np.array_equal(acc, ref[p + ":acc"]), p


def test_logits_match_the_reference(variant):
    name, ck, ref = variant
    model = ck.transformer()
    for seq, want in zip(ref["tokens"], ref["logits"], strict=True):
        got = model.forward(seq)
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= LOGIT_RTOL * scale, name
        # the same next token wherever the reference's top-2 margin is not a near-tie
        top2 = np.sort(want, axis=-1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 10 * LOGIT_RTOL * scale
        assert np.array_equal(got.argmax(-1)[clear], want.argmax(-1)[clear]), name


def test_golden_activation_codes_follow_the_reference(variant):
    """The golden model's own codes for sequence 0 (through the matmul hook) equal the
    reference's wherever the float inputs are not at a rounding tie (at most one in 10^4 codes
    may differ, by one)."""
    name, ck, ref = variant
    seen = {}

    def hook(p, xq, trits):
        seen.setdefault(p, xq.copy())
        return ternary_matmul(xq, trits)

    ck.transformer(matmul=hook).forward(ref["tokens"][0])
    total = differ = 0
    for p, xq in seen.items():
        d = np.abs(xq.astype(np.int16) - ref[p + ":xq"])
        assert d.max() <= 1, (name, p)
        total, differ = total + d.size, differ + int(np.count_nonzero(d))
    assert differ <= total // 10_000, (name, differ, total)


def test_sharded_variant_is_sharded():
    sharded = [n for n, v in MANIFEST["variants"].items()
               if (DATA / v["checkpoint"] / "model.safetensors.index.json").exists()]
    assert sharded
    for n in sharded:
        ts = open_safetensors(DATA / MANIFEST["variants"][n]["checkpoint"])
        assert len(ts.files) >= 2


def test_save_hf_fixture_is_the_current_writers_output(tmp_path):
    """``save-hf-roundtrip`` is what transformers computed from a file of ``save_hf``: the
    writer must still write that file byte for byte (else regenerate the fixture)."""
    v = MANIFEST["variants"]["save-hf-roundtrip"]
    ckpt.save_hf(tmp_path, ckpt.load(Path(__file__).parents[1] / "model/data/bitnet_kjv.npz"))
    for f in ("config.json", "model.safetensors"):
        assert (tmp_path / f).read_bytes() == (DATA / v["checkpoint"] / f).read_bytes(), f


def test_lazy_reader_gives_the_loaded_logits(variant):
    """Every reference layout opened lazily (memory-mapped, a layer at a time, the head in row
    blocks) runs bit-identically to the loaded checkpoint."""
    name, ck, ref = variant
    v = MANIFEST["variants"][name]
    reader = ckpt.open_checkpoint(DATA / v["checkpoint"], hidden_act=v.get("hidden_act")
                                  if v["format"] == "gguf" else None)
    tokens = ref["tokens"][0]
    assert np.array_equal(reader.transformer().forward(tokens), ck.transformer().forward(tokens))
