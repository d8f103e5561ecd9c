"""Training (QAT) mirrors the golden model, and the shipped model and metrics are what they say."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model import checkpoint as ckpt
from model import train
from model.quant import absmax_quantize, absmean_quantize
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
