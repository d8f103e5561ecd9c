"""Exact ternary products and BitLinear (model/bitlinear.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from model.bitlinear import (
    BitLinear,
    acc_bound,
    acc_width_for,
    bitlinear_forward,
    ternary_matmul,
)
from model.quant import absmax_quantize


def ref_product(xq, trits):
    return xq.astype(np.float64) @ trits.astype(np.float64).T


@pytest.mark.parametrize("k", [1, 3, 16, 17, 1024, 4096])
@pytest.mark.parametrize("bits", [4, 8])
def test_worst_case_reaches_bound(k, bits):
    lo = -(1 << (bits - 1))
    xq = np.full((2, k), lo, np.int8)
    trits = np.stack([np.full(k, -1, np.int8), np.full(k, 1, np.int8)])
    acc = ternary_matmul(xq, trits, bits)
    assert acc.dtype == np.int32
    assert acc[0].tolist() == [acc_bound(k, bits), -acc_bound(k, bits)]
    # the bound needs exactly acc_width_for bits, one bit fewer does not hold it
    w = acc_width_for(k, bits)
    assert -(1 << (w - 1)) <= -acc_bound(k, bits) and acc_bound(k, bits) <= (1 << (w - 1)) - 1
    assert acc_bound(k, bits) > (1 << (w - 2)) - 1


def test_named_edge_cases():
    rng = np.random.default_rng(0)
    for k in (1, 5, 33):
        for x in (np.full(k, 127), np.full(k, -128), np.zeros(k), rng.integers(-128, 128, k)):
            xq = x.astype(np.int8)[None]
            for t in (np.ones(k), -np.ones(k), np.zeros(k), rng.integers(-1, 2, k)):
                trits = t.astype(np.int8)[None]
                assert ternary_matmul(xq, trits)[0, 0] == int(np.dot(x.astype(np.int64),
                                                                     t.astype(np.int64)))


def test_random_equals_float64_reference_and_bound():
    rng = np.random.default_rng(1)
    for t, m, k in [(1, 1, 1), (3, 7, 33), (5, 64, 300), (2, 9, 1000)]:
        xq = rng.integers(-128, 128, (t, k)).astype(np.int8)
        trits = rng.integers(-1, 2, (m, k)).astype(np.int8)
        acc = ternary_matmul(xq, trits)
        assert np.array_equal(acc, ref_product(xq, trits))
        assert np.abs(acc.astype(np.int64)).max() <= acc_bound(k, 8)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 64).flatmap(lambda k: st.tuples(
    hnp.arrays(np.int8, (3, k), elements=st.integers(-128, 127)),
    hnp.arrays(np.int8, (4, k), elements=st.integers(-1, 1)))))
def test_property(data):
    xq, trits = data
    acc = ternary_matmul(xq, trits)
    assert np.array_equal(acc, ref_product(xq, trits))
    assert np.abs(acc.astype(np.int64)).max() <= acc_bound(xq.shape[1], 8)


def test_errors():
    xq = np.zeros((2, 4), np.int8)
    t = np.zeros((3, 4), np.int8)
    # other integer dtypes are accepted when the values fit
    assert np.array_equal(ternary_matmul(np.full((1, 4), -128, np.int64), -np.ones((3, 4), int)),
                          np.full((1, 3), 512, np.int32))
    with pytest.raises(ValueError, match="8-bit code range"):
        ternary_matmul(np.full((1, 4), 128, np.int16), t)
    with pytest.raises(TypeError, match="integer"):
        ternary_matmul(xq.astype(np.float32), t)
    with pytest.raises(TypeError, match="integer"):
        ternary_matmul(xq, t.astype(np.float32))
    with pytest.raises(TypeError, match="integer"):
        ternary_matmul(xq.astype(bool), t)
    with pytest.raises(ValueError, match="K mismatch"):
        ternary_matmul(xq, np.zeros((3, 5), np.int8))
    with pytest.raises(ValueError, match="2-D"):
        ternary_matmul(xq[0], t)
    bad = t.copy()
    bad[1, 2] = 2
    with pytest.raises(ValueError, match=r"trits\[1, 2\] = 2"):
        ternary_matmul(xq, bad)
    with pytest.raises(ValueError, match="4-bit"):
        ternary_matmul(np.full((1, 4), 8, np.int8), t, act_bits=4)


def test_bitlinear_forward_and_hook():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 20)).astype(np.float32)
    w = rng.standard_normal((7, 20)).astype(np.float32)
    layer = BitLinear.from_float(w)
    y = layer(x)
    assert y.shape == (2, 3, 7) and y.dtype == np.float32
    xq, s = absmax_quantize(x.reshape(6, 20))
    acc = ternary_matmul(xq, layer.trits)
    ref = (acc.astype(np.float32) * layer.gamma) / s
    assert np.array_equal(y.reshape(6, 7), ref)
    # close to the float64 dequantized product
    deq = (xq / s.astype(np.float64)) @ (layer.trits * np.float64(layer.gamma)).T
    np.testing.assert_allclose(y.reshape(6, 7), deq, rtol=1e-5, atol=1e-5)
    calls = []

    def hook(xq, trits):
        calls.append((xq.copy(), trits))
        return ternary_matmul(xq, trits)

    assert np.array_equal(layer(x, hook), y) and len(calls) == 1
    assert calls[0][0].dtype == np.int8 and calls[0][0].shape == (6, 20)
    with pytest.raises(ValueError, match="shape"):
        layer(x, lambda xq, t: np.zeros((1, 1), np.int32))
    with pytest.raises(TypeError, match="integers"):
        layer(x, lambda xq, t: np.zeros((6, 7), np.float32))
    # the hook result is really used
    y2 = layer(x, lambda xq, t: ternary_matmul(xq, t) + 1)
    assert not np.array_equal(y2, y)
    assert np.array_equal(bitlinear_forward(x, layer.trits, layer.gamma), y)


def test_bitlinear_errors():
    with pytest.raises(ValueError):
        BitLinear(np.zeros((2, 2), np.int8), 0.0)
    with pytest.raises(ValueError):
        BitLinear(np.zeros((2, 2), np.int8), float("nan"))
    with pytest.raises(ValueError):
        BitLinear(np.zeros(2, np.int8), 1.0)
    with pytest.raises(ValueError):
        BitLinear(np.full((2, 2), 3, np.int8), 1.0)
    with pytest.raises(ValueError):
        BitLinear(np.zeros((2, 2), np.int8), 1.0, act_bits=6)
