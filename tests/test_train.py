"""Training (QAT) mirrors the golden model, and the shipped model and metrics are what they say."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model import checkpoint as ckpt
from model import train
from model.quant import (
    absmax_quantize,
    absmean_quantize,
    act_quantize,
    kv_quantize,
    topk_mask,
)
from model.transformer import ModelConfig

TINY = train.TrainConfig(d_model=32, n_layers=2, n_heads=4, ffn_dim=64, max_seq_len=64,
                         seq_len=32, batch_size=8, steps=40, warmup=5)


def test_corpus_is_the_documented_one():
    import hashlib

    data = train.CORPUS.read_bytes()
    assert hashlib.sha256(data).hexdigest() == (
        "3faae4bdcd163d415b11d75992ab625db87570a8fc93632209a0cae3244b7f2a")
    assert (train.DATA_DIR / "SOURCE.md").read_text().count("public domain") >= 1
    tr, va = train.split_corpus(train.load_corpus(), 0.1)
    assert tr.size + va.size == len(data) and abs(va.size - len(data) / 10) <= 1


def test_shipped_model_fits_the_spram():
    cfg = train.TrainConfig()
    ck = ckpt.load(train.CHECKPOINT)
    assert ck.config == ModelConfig(**cfg.model_dict())
    assert ck.ternary_weights == cfg.ternary_weights
    # 1.6 bits per weight (tq1) must fit the UP5K's four 16K x 16 SPRAMs (128 KiB)
    assert ck.ternary_weights * 8 / 5 / 8 <= 128 * 1024


def test_shipped_metrics_are_consistent():
    m = json.loads(train.METRICS.read_text())
    for kind in ("ternary", "fp32"):
        assert math.isclose(m[kind]["val_bits_per_byte"],
                            m[kind]["val_loss_nats"] / math.log(2), rel_tol=1e-12)
    # the exported checkpoint evaluated in numpy matches the torch QAT evaluation closely
    golden = m["ternary"]["golden_val_loss_nats"]
    assert golden is not None, "not evaluated: run `python -m model.train --eval-golden`"
    assert abs(golden - m["ternary"]["val_loss_nats"]) < 0.01
    assert m["config"] == json.loads(json.dumps(train.TrainConfig().__dict__))


def test_shipped_model_golden_loss_matches_metrics():
    """Recompute the golden-model loss on the first validation windows of the shipped model."""
    m = json.loads(train.METRICS.read_text())
    cfg = train.TrainConfig()
    ck = ckpt.load(train.CHECKPOINT)
    _, val = train.split_corpus(train.load_corpus(), cfg.val_fraction)
    loss = train.evaluate_numpy(ck.transformer(), val, cfg.seq_len, max_windows=4)
    # four windows are a noisy sample of the whole split; they must be in the same range
    assert abs(loss - m["ternary"]["val_loss_nats"]) < 0.35
    assert loss < math.log(256) / 3  # far better than uniform bytes: it learned something


def test_shipped_a48_model_and_metrics():
    """The a4.8 model ships beside the b1.58 one; its metrics are what the golden model gives."""
    cfg = train.TrainConfig()
    ck = ckpt.load(train.CHECKPOINT_A48)
    assert ck.config == ModelConfig(**cfg.model_dict(), quant="a4.8")
    m = json.loads(train.METRICS_A48.read_text())
    a = m["a4.8"]
    assert m["config"] == json.loads(json.dumps(train.TrainConfig().__dict__))
    assert a["phase1_steps"] == cfg.steps and a["phase2_steps"] == train.A48_PHASE2_STEPS
    assert math.isclose(a["val_bits_per_byte"], a["val_loss_nats"] / math.log(2), rel_tol=1e-12)
    # the QAT evaluation in torch and the golden a4.8 model agree on the whole validation split
    assert abs(a["golden_val_loss_nats"] - a["val_loss_nats"]) < 0.01
    shipped = json.loads(train.METRICS.read_text())
    assert m["compare"]["b1.58_val_bits_per_byte"] == shipped["ternary"]["val_bits_per_byte"]
    assert m["compare"]["fp32_val_bits_per_byte"] == shipped["fp32"]["val_bits_per_byte"]
    # recompute the loss and the zero fractions on the first validation windows
    _, val = train.split_corpus(train.load_corpus(), cfg.val_fraction)
    loss, zeros = train.golden_input_sparsity(ck, val, cfg.seq_len, max_windows=4)
    assert abs(loss - a["val_loss_nats"]) < 0.35
    assert set(zeros) == set(a["input_zero_fraction"]) == {str(i) for i in range(cfg.n_layers)}
    for layer, fr in zeros.items():
        want = a["input_zero_fraction"][layer]
        assert set(fr) == set(want) and fr["o_proj"] >= 0.5
        assert fr["q_proj"] == fr["k_proj"] == fr["v_proj"] and fr["gate_proj"] == fr["up_proj"]
        for proj, f in fr.items():
            assert abs(f - want[proj]) < 0.1, (layer, proj)


@pytest.fixture
def torch():
    """PyTorch (the optional ``train`` extra); the tests that need it skip without it."""
    return pytest.importorskip("torch", reason="PyTorch not installed (optional 'train' extra: "
                               "pip install torch --index-url "
                               "https://download.pytorch.org/whl/cpu)")


def test_ste_quantizers_match_the_golden_definitions(torch):
    rng = np.random.default_rng(0)
    model = train.build_torch_model(TINY, ternary=True)
    lin = model.layers[0].mlp.up_proj
    w = lin.weight.detach().numpy()
    trits, gamma = absmean_quantize(w)
    x = rng.standard_normal((5, TINY.d_model)).astype(np.float32) * 3
    xq, s = absmax_quantize(x)
    ref = (xq.astype(np.float64) @ trits.T.astype(np.float64)) * np.float64(gamma) / s
    got = lin(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # straight-through: the gradient w.r.t. the float weight is the plain linear gradient
    xt = torch.from_numpy(x)
    lin.weight.grad = None
    lin(xt).sum().backward()
    s_t = 127 / xt.abs().amax(-1, keepdim=True)
    x_deq = (xt * s_t).round().clamp(-128, 127) / s_t
    torch.testing.assert_close(lin.weight.grad, torch.ones(TINY.ffn_dim, 5) @ x_deq)


def test_torch_forward_equals_golden_model(torch):
    """The exported ternary params give the same logits in numpy as the QAT forward in torch."""
    torch.manual_seed(1)
    model = train.build_torch_model(TINY, ternary=True)
    ck = ckpt.from_float(train.export_params(model, TINY), TINY.model_dict())
    tokens = np.frombuffer(b"In the beginning God created", np.uint8).astype(np.int64)
    with torch.no_grad():
        ref = model(torch.from_numpy(tokens)[None])[0].numpy()
    got = np.asarray(ck.transformer().forward(tokens))
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3)
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))


def test_training_is_deterministic_and_learns(torch):
    _, m1 = train.train(TINY, ternary=True, threads=1, log=lambda s: None)
    _, m2 = train.train(TINY, ternary=True, threads=1, log=lambda s: None)
    assert m1["val_loss_nats"] == m2["val_loss_nats"]
    assert m1["history"][0]["train_loss"] == m2["history"][0]["train_loss"]
    assert m1["val_loss_nats"] < m1["history"][0]["val_loss"] - 1.0


def test_a48_fake_quantizers_match_the_golden_ones(torch):
    """Each torch quantizer of the a4.8 phase dequantizes to the golden codes / s."""
    model = train.build_torch_model(TINY, ternary=True, quant="a4.8")
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 33)) * rng.uniform(0.1, 10, (6, 1))).astype(np.float32)
    x[2] = 0                                       # an all-zero token
    x[3, :8] = 2.5                                 # ties for the top-K
    for kind, bits in (("absmax", 8), ("absmean", 4), ("topk", 8)):
        codes, s = act_quantize(x, kind, bits)
        got = model.quantizers[kind](torch.from_numpy(x), bits).numpy()
        np.testing.assert_allclose(got, codes / s, rtol=1e-6, atol=1e-6, err_msg=kind)
    k = (rng.standard_normal((2, 4, 9, 8)) * 3).astype(np.float32)     # (B, H, T, hd)
    codes, s = kv_quantize(k, np.arange(9))
    got = model.kv_quant(torch.from_numpy(k)).numpy()
    np.testing.assert_allclose(got, codes / s, rtol=1e-6, atol=1e-6)
    # top-K straight-through: the gradient reaches the kept entries only
    xt = torch.from_numpy(x).requires_grad_()
    model.quantizers["topk"](xt, 8).sum().backward()
    assert np.array_equal(xt.grad.numpy(), topk_mask(x).astype(np.float32))


def test_a48_linears_equal_the_golden_projections(torch):
    """Every BitLinear of the a4.8 torch model equals the golden projection on the same input."""
    torch.manual_seed(2)
    model = train.build_torch_model(TINY, ternary=True, quant="a4.8")
    ck = ckpt.from_float(train.export_params(model, TINY), {**TINY.model_dict(), "quant": "a4.8"})
    golden = ck.transformer()
    rng = np.random.default_rng(4)
    for name, lin in model.named_modules():
        if not name.endswith("_proj"):
            continue
        k = lin.weight.shape[1]
        x = (rng.standard_normal((5, k)) * 2).astype(np.float32)
        with torch.no_grad():
            got = lin(torch.from_numpy(x)).numpy()
        want = golden._linear(name + ".weight", x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_a48_torch_forward_follows_the_golden_model(torch):
    """The whole a4.8 QAT forward against the golden a4.8 model. 4-bit inputs and a 3-bit KV
    cache make an untrained network chaotic (a 1e-6 change of the input moves logits by ~1), so
    this compares the loss and checks that the golden a4.8 model is much closer than the golden
    b1.58 model of the same weights; the shipped model's metrics check the trained network."""
    torch.manual_seed(1)
    model = train.build_torch_model(TINY, ternary=True, quant="a4.8")
    params = train.export_params(model, TINY)
    a48 = ckpt.from_float(params, {**TINY.model_dict(), "quant": "a4.8"}).transformer()
    b158 = ckpt.from_float(params, TINY.model_dict()).transformer()
    tokens = np.frombuffer(b"In the beginning God created the heaven and the earth. And the",
                           np.uint8).astype(np.int64)
    with torch.no_grad():
        ref = model(torch.from_numpy(tokens)[None])[0].numpy()
    got = a48.forward(tokens)

    def loss(logits):
        z = logits.astype(np.float64)[:-1]
        z = z - z.max(-1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(z.shape[0]), tokens[1:]]))

    assert abs(loss(got) - loss(ref)) < 0.05
    assert np.abs(got - ref).mean() < 0.6 * np.abs(b158.forward(tokens) - ref).mean()


def test_a48_recipe_switches_after_phase_one(torch):
    logs = []
    cfg = dataclasses_replace(TINY, steps=6)
    _, m = train.train(cfg, ternary=True, threads=1, log=logs.append, recipe="a4.8",
                       phase2_steps=3)
    assert m["kind"] == "a4.8" and m["phase1_steps"] == 6 and m["phase2_steps"] == 3
    assert any("phase 2" in line and "step 6" in line for line in logs)
    assert [h["step"] for h in m["history"]] == [0, 5, 8]
    # phase 1 is the b1.58 recipe: the same losses as a b1.58 run of phase 1's length
    _, b = train.train(cfg, ternary=True, threads=1, log=lambda s: None)
    assert m["phase1_val_loss_nats"] == b["val_loss_nats"]
    with pytest.raises(ValueError, match="ternary"):
        train.train(cfg, ternary=False, recipe="a4.8")


def dataclasses_replace(cfg, **changes):
    import dataclasses

    return dataclasses.replace(cfg, **changes)
