"""Float building blocks (model/nn.py)."""

import numpy as np
import pytest

from model.nn import causal_attention, relu2, rms_norm, rope, row_matmul, silu, softmax


def test_rms_norm():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    y = rms_norm(x, w, 1e-5)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-5) * w
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert y.dtype == np.float32
    assert not rms_norm(np.zeros((1, 16)), w).any()  # eps avoids 0/0
    with pytest.raises(ValueError):
        rms_norm(x, w[:5])


def test_activations():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0], np.float32)
    assert relu2(x).tolist() == [0, 0, 0, 0.25, 9]
    np.testing.assert_allclose(silu(x), x / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    # far below -88 exp(-x) overflows float32: the limit 0, no warning (warnings are errors)
    assert silu(np.array([-100.0, -1e30], np.float32)).tolist() == [0.0, 0.0]
    p = softmax(np.array([[1000.0, 1000.0, -1e30]], np.float32))
    assert p.tolist() == [[0.5, 0.5, 0.0]]


def test_row_matmul_rows_independent():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 33)).astype(np.float32)
    w = rng.standard_normal((5, 33)).astype(np.float32)
    full = row_matmul(x, w)
    np.testing.assert_allclose(full, x.astype(np.float64) @ w.T, rtol=1e-4, atol=1e-4)
    for i in range(9):
        assert np.array_equal(row_matmul(x[i:i + 1], w), full[i:i + 1])


def test_rope_identity_at_zero_and_norm():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 1, 8)).astype(np.float32)
    assert np.array_equal(rope(x, [0]), x)
    y = rope(np.repeat(x, 5, axis=1), np.arange(5))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1),
                               np.linalg.norm(np.repeat(x, 5, axis=1), axis=-1), rtol=1e-5)


def test_rope_rotate_half_convention():
    # pair (i, i + hd/2) rotates by pos * theta**(-2i/hd)
    hd, theta, pos = 8, 10000.0, 3
    x = np.zeros((1, hd), np.float32)
    x[0, 1] = 1.0
    y = rope(x, [pos], theta)[0]
    ang = pos * theta ** (-2 / hd)
    np.testing.assert_allclose([y[1], y[1 + hd // 2]], [np.cos(ang), np.sin(ang)], atol=1e-6)
    assert np.count_nonzero(y) == 2


def test_rope_relative_position():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 16)).astype(np.float32)
    k = rng.standard_normal((1, 16)).astype(np.float32)
    for theta in (10000.0, 500.0):
        dots = {}
        for m, n in [(5, 2), (13, 10), (103, 100), (3, 3), (50, 50)]:
            d = float(rope(q, [m], theta)[0] @ rope(k, [n], theta)[0])
            dots.setdefault(m - n, []).append(d)
        for vals in dots.values():
            np.testing.assert_allclose(vals, vals[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        rope(np.zeros((1, 7), np.float32), [0])
    with pytest.raises(ValueError):
        rope(np.zeros((2, 8), np.float32), [0])


def _attention_ref(q, k, v):
    h, t, hd = q.shape
    rep = h // k.shape[0]
    k = np.repeat(k, rep, 0).astype(np.float64)
    v = np.repeat(v, rep, 0).astype(np.float64)
    s = q.astype(np.float64) @ k.transpose(0, 2, 1) / np.sqrt(hd)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def test_attention_reference_and_gqa():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((4, 6, 8)).astype(np.float32)
    k = rng.standard_normal((2, 6, 8)).astype(np.float32)
    v = rng.standard_normal((2, 6, 8)).astype(np.float32)
    out = causal_attention(q, k, v)
    np.testing.assert_allclose(out, _attention_ref(q, k, v), rtol=1e-5, atol=1e-5)
    # GQA equals MHA with the KV heads repeated
    assert np.array_equal(out, causal_attention(q, np.repeat(k, 2, 0), np.repeat(v, 2, 0)))
    # causal: the first query sees only the first key
    np.testing.assert_allclose(out[:, 0], np.repeat(v, 2, 0)[:, 0], rtol=1e-6)
    # future keys do not change earlier outputs
    k2, v2 = k.copy(), v.copy()
    k2[:, 4:] += 5
    v2[:, 4:] -= 3
    assert np.array_equal(causal_attention(q, k2, v2)[:, :4], out[:, :4])
    # one query at a time equals the whole block
    for i in range(6):
        assert np.array_equal(causal_attention(q[:, i:i + 1], k[:, :i + 1], v[:, :i + 1]),
                              out[:, i:i + 1])
    with pytest.raises(ValueError):
        causal_attention(q[:3], k, v)
