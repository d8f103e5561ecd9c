"""Quantizers of the golden model (model/quant.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from model.quant import absmax_quantize, absmean_quantize

finite32 = st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)


def ref_absmean(w):
    # the reference's op order (transformers / Training Tips): scale = 1/mean; round(w * scale)
    w = np.asarray(w, np.float32)
    gamma = np.float32(max(np.float32(np.abs(w).mean(dtype=np.float32)), np.float32(1e-5)))
    scale = np.float32(1) / gamma
    return np.clip(np.round(w * scale), -1, 1).astype(np.int8), gamma


def test_absmean_ties_round_half_to_even():
    # mean |W| = 1, so W * (1 / gamma) = W exactly: 0.5 -> 0, -0.5 -> 0, 1.5 -> 2 -> 1
    w = np.array([0.5, -0.5, 1.5, -1.5, 1.0, -1.0, 0.0, 2.0], np.float32)  # mean |w| = 1
    trits, gamma = absmean_quantize(np.array([0.5, 1.5], np.float32))
    assert gamma == np.float32(1.0)
    assert trits.tolist() == [0, 1]
    trits, gamma = absmean_quantize(np.array([-0.5, -1.5, 0.5, 1.5], np.float32))
    assert gamma == np.float32(1.0) and trits.tolist() == [0, -1, 0, 1]
    t2, g2 = absmean_quantize(w)
    assert g2 == np.float32(1.0) and t2.tolist() == [0, 0, 1, -1, 1, -1, 0, 1]


def test_absmean_uses_reciprocal_multiply():
    # find weights where W * (1/gamma) and W / gamma round differently; we must follow the
    # reference (multiply by the float32 reciprocal)
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(2000):
        g = np.float32(rng.uniform(0.1, 10))
        w = np.array([g * np.float32(0.5), g * np.float32(1.5)], np.float32)
        gamma = np.float32(np.abs(w).mean(dtype=np.float32))
        div = np.round(w / gamma)
        mul = np.round(w * (np.float32(1) / gamma))
        if not np.array_equal(div, mul):
            found += 1
            trits, gam = absmean_quantize(w)
            assert gam == gamma
            assert np.array_equal(trits, np.clip(mul, -1, 1).astype(np.int8))
    assert found > 0


def test_absmean_zero_and_extremes():
    trits, gamma = absmean_quantize(np.zeros((3, 4), np.float32))
    assert gamma == np.float32(1e-5) and not trits.any() and trits.dtype == np.int8
    trits, gamma = absmean_quantize(np.array([1e30, -1e30, 0, 0], np.float32))
    assert trits.tolist() == [1, -1, 0, 0]
    assert absmean_quantize(np.ones(3))[0].tolist() == [1, 1, 1]


@pytest.mark.parametrize("bad,exc", [(np.array([np.nan]), ValueError),
                                     (np.array([np.inf]), ValueError),
                                     (np.zeros(0), ValueError),
                                     (np.array([True]), TypeError),
                                     (np.array(["a"]), TypeError)])
def test_absmean_errors(bad, exc):
    with pytest.raises(exc):
        absmean_quantize(bad)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=12),
                  elements=finite32))
def test_absmean_property(w):
    trits, gamma = absmean_quantize(w)
    rt, rg = ref_absmean(w)
    assert gamma == rg and np.array_equal(trits, rt)
    assert set(np.unique(trits).tolist()) <= {-1, 0, 1}


def test_absmax_ties_and_values():
    codes, s = absmax_quantize(np.array([[1.0, -1.0, 0.5, 0.0]], np.float32))
    assert s.shape == (1, 1) and s[0, 0] == np.float32(127)
    assert codes.tolist() == [[127, -127, 64, 0]]  # 63.5 -> 64 (even)
    codes, s = absmax_quantize(np.array([[254.0, 1.0, 3.0, -3.0]], np.float32))
    assert s[0, 0] == np.float32(0.5)
    assert codes.tolist() == [[127, 0, 2, -2]]  # 0.5 -> 0, 1.5 -> 2
    assert codes.dtype == np.int8 and s.dtype == np.float32


def test_absmax_per_token_and_zero_row():
    x = np.array([[0, 0, 0], [1, 2, 4], [-8, 0, 0]], np.float32)
    codes, s = absmax_quantize(x)
    assert codes[0].tolist() == [0, 0, 0] and s[0, 0] == np.float32(127) / np.float32(1e-5)
    assert codes[1].tolist() == [32, 64, 127]  # 31.75 -> 32, 63.5 -> 64
    assert codes[2].tolist() == [-127, 0, 0]
    c4, s4 = absmax_quantize(x, bits=4)
    assert c4[1].tolist() == [2, 4, 7] and s4[1, 0] == np.float32(7 / 4)  # 1.75->2, 3.5->4
    assert absmax_quantize(x, bits=8)[0].tolist() == codes.tolist()  # bits=8 is the default


def test_absmax_extreme_values():
    x = np.array([[3e38, -3e38, 1.0], [1e-30, -1e-30, 0]], np.float32)
    codes, _ = absmax_quantize(x)
    assert codes[0].tolist() == [127, -127, 0]
    assert codes[1].tolist() == [0, 0, 0]  # below the 1e-5 clamp


def test_absmax_errors():
    with pytest.raises(ValueError):
        absmax_quantize(np.ones(3), bits=9)
    with pytest.raises(ValueError):
        absmax_quantize(np.ones(3), bits=1)
    with pytest.raises(ValueError):
        absmax_quantize(np.zeros((2, 0)))
    with pytest.raises(ValueError):
        absmax_quantize(np.array([np.nan, 1.0]))
    with pytest.raises(TypeError):
        absmax_quantize(np.array([True]))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 20)),
                  elements=finite32), st.sampled_from([4, 8]))
def test_absmax_property(x, bits):
    codes, s = absmax_quantize(x, bits)
    qp = np.float32(2 ** (bits - 1) - 1)
    amax = np.maximum(np.abs(x).max(-1, keepdims=True), np.float32(1e-5))
    ref_s = qp / amax
    ref = np.clip(np.round(x * ref_s), -qp - 1, qp)
    assert np.array_equal(s, ref_s) and np.array_equal(codes, ref.astype(np.int8))
    assert codes.min() >= -qp and codes.max() <= qp
    # the largest magnitude of each token maps to +-Qp
    big = np.abs(x).max(-1) >= 1e-5
    assert np.all(np.abs(codes[big]).max(-1) == qp)


def test_absmean_act_quantize_definition():
    from model.quant import absmean_act_quantize

    x = np.array([[1.0, -1.0, 1.0, -1.0], [0, 0, 0, 0], [100.0, 0, 0, 0]], np.float32)
    codes, s = absmean_act_quantize(x)
    # beta = 1: s = sqrt(7) / (1 + 1e-5) -> codes round(2.6457) = 3
    assert codes[0].tolist() == [3, -3, 3, -3]
    assert codes[1].tolist() == [0, 0, 0, 0]
    assert codes[2].tolist() == [7, 0, 0, 0]  # clipped to Qp
    assert s.dtype == np.float32 and s.shape == (3, 1)
