"""Quantizers of the golden model (model/quant.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from model.quant import (
    absmax_quantize,
    absmean_act_quantize,
    absmean_quantize,
    act_quantize,
    kv_quantize,
    topk_absmax_quantize,
    topk_mask,
)

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


def ref_int4_scale(x):
    # a4.8 eq. 6-7 as written: sqrt(7) / (mean|X| + eps), per token, float32
    beta = np.abs(np.asarray(x, np.float32)).mean(-1, keepdims=True, dtype=np.float32)
    return np.float32(np.sqrt(np.float32(7))) / (beta + np.float32(1e-5))


def test_int4_absmean_hand_cases():
    x = np.array([[1.0, -1.0, 1.0, -1.0],      # beta 1: x * 2.6457 -> 3
                  [2.0, -2.0, 1.0, -1.0],      # beta 1.5: 3.53 -> 4, 1.76 -> 2
                  [0, 0, 0, 0],                # all zero: codes 0, s = sqrt(7) / eps
                  [100.0, 0, 0, 0],            # beta 25: 10.6 clips to 7
                  [-100.0, 0, 0, 0]], np.float32)  # and -10.6 to -8: the code -8 occurs
    codes, s = absmean_act_quantize(x)
    assert codes.dtype == np.int8 and s.dtype == np.float32 and s.shape == (5, 1)
    assert codes.tolist() == [[3, -3, 3, -3], [4, -4, 2, -2], [0, 0, 0, 0], [7, 0, 0, 0],
                              [-8, 0, 0, 0]]
    assert np.array_equal(s, ref_int4_scale(x))
    assert s[2, 0] == np.float32(np.sqrt(np.float32(7))) / np.float32(1e-5)
    # per token: scaling one token changes neither the other's codes nor its scale
    y = x.copy()
    y[1] *= 1000
    c2, s2 = absmean_act_quantize(y)
    assert np.array_equal(np.delete(c2, 1, 0), np.delete(codes, 1, 0))
    assert np.array_equal(np.delete(s2, 1, 0), np.delete(s, 1, 0))
    assert c2[1].tolist() == codes[1].tolist()      # scale-invariant codes


def test_int4_absmean_ties_round_half_to_even():
    # tokens [y, c, c, c] whose product y * s (s depends on y through beta) is exactly k + 0.5
    found = set()
    for half in (0.5, 1.5, 2.5, -2.5, 3.5):
        for c in np.linspace(0.5, 4, 50, dtype=np.float32):
            x = np.array([[0, c, c, c]], np.float32)
            for _ in range(60):             # y = half / s(y): a contraction, |y| is a 1/4 of beta
                x[0, 0] = np.float32(half / ref_int4_scale(x)[0, 0])
            y0 = x[0, 0]
            hit = None
            for step in range(-40, 41):     # ulps around the first guess
                x[0, 0] = y0 + np.float32(step) * np.spacing(y0)
                if np.float32(x[0, 0] * ref_int4_scale(x)[0, 0]) == np.float32(half):
                    hit = x
                    break
            if hit is None:
                continue
            codes, _ = absmean_act_quantize(hit)
            assert codes[0, 0] == np.round(half), (half, c)    # half to even: 0, 2, 2, -2, 4
            found.add(half)
            break
    assert found == {0.5, 1.5, 2.5, -2.5, 3.5}, found


def test_absmean_act_quantize_definition():
    from model.quant import absmean_act_quantize

    x = np.array([[1.0, -1.0, 1.0, -1.0], [0, 0, 0, 0], [100.0, 0, 0, 0]], np.float32)
    codes, s = absmean_act_quantize(x)
    # beta = 1: s = sqrt(7) / (1 + 1e-5) -> codes round(2.6457) = 3
    assert codes[0].tolist() == [3, -3, 3, -3]
    assert codes[1].tolist() == [0, 0, 0, 0]
    assert codes[2].tolist() == [7, 0, 0, 0]  # clipped to Qp
    assert s.dtype == np.float32 and s.shape == (3, 1)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 17)),
                  elements=finite32))
def test_absmean_act_property(x):
    codes, s = absmean_act_quantize(x)
    ref = np.clip(np.round(x * ref_int4_scale(x)), -8, 7)
    assert np.array_equal(codes, ref.astype(np.int8)) and np.array_equal(s, ref_int4_scale(x))


def test_topk_mask_rule():
    x = np.array([[3.0, -1.0, 2.0, -5.0],     # K = 2: |-5| and 3
                  [1.0, -1.0, 1.0, -1.0],     # all tied: the lower channels win
                  [0.0, 2.0, -2.0, 2.0],      # three tied for two places: channels 1 and 2
                  [0.0, 0.0, 0.0, 0.0]], np.float32)   # all zero: channels 0 and 1
    assert topk_mask(x).tolist() == [[True, False, False, True], [True, True, False, False],
                                     [False, True, True, False], [True, True, False, False]]
    # K = ceil(keep * n): 3 of 5, 1 of 3 at keep 0.25, all at keep 1
    odd = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)
    assert topk_mask(odd).tolist() == [[True, True, True, False, False]]
    assert topk_mask(odd[:, :3], keep=0.25).tolist() == [[True, False, False]]
    assert topk_mask(odd, keep=1.0).all()
    for bad in (0, 1.5, -0.5, True, "half"):
        with pytest.raises(ValueError, match="keep"):
            topk_mask(odd, keep=bad)


def test_topk_absmax_hand_case_and_scale_order():
    x = np.array([[3.0, -1.0, 2.0, -5.0], [0, 0, 0, 0]], np.float32)
    codes, s = topk_absmax_quantize(x)
    # s = 127 / 5 from the unmasked token: 3 * 25.4 = 76.2 -> 76, -5 -> -127; 1 and 2 masked
    assert codes.tolist() == [[76, 0, 0, -127], [0, 0, 0, 0]]
    full, s_full = absmax_quantize(x)
    assert np.array_equal(s, s_full)
    # masking first and then taking the scale gives the same codes (the max is always kept)
    masked = np.where(topk_mask(x), x, np.float32(0))
    assert np.array_equal(absmax_quantize(masked)[0], codes)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 17)),
                  elements=st.sampled_from([0.0, 1.0, -1.0, 2.5, -7.0, 0.25])))
def test_topk_property(x):
    mask = topk_mask(x)
    k = -(-x.shape[1] // 2)
    assert np.all(mask.sum(-1) == k)
    for row, m in zip(np.abs(x), mask, strict=True):
        if not m.all():
            assert row[m].min() >= row[~m].max()
            # among the tied at the threshold, the kept ones come first
            thr = row[m].min()
            tied = np.flatnonzero(row == thr)
            assert m[tied].tolist() == sorted(m[tied].tolist(), reverse=True)
    codes, _ = topk_absmax_quantize(x)
    assert np.array_equal(codes, np.where(mask, absmax_quantize(x)[0], 0))


def test_act_quantize_by_name():
    x = np.array([[3.0, -1.0, 2.0, -5.0]], np.float32)
    for kind, fn, bits in (("absmax", absmax_quantize, 8), ("absmean", absmean_act_quantize, 4),
                           ("topk", topk_absmax_quantize, 8)):
        c, s = act_quantize(x, kind, bits)
        c2, s2 = fn(x, bits)
        assert np.array_equal(c, c2) and np.array_equal(s, s2)
    with pytest.raises(ValueError, match="unknown activation quantizer"):
        act_quantize(x, "minmax", 8)


def test_kv_quantize_3_bits_and_4_bit_first_token():
    token = [1.0, -0.5, 0.25, 0.0]
    x = np.array([[token, token, [0, 0, 0, 0]]], np.float32)   # (heads 1, T 3, hd 4)
    codes, s = kv_quantize(x, np.array([0, 1, 2]))
    # position 0 at 4 bits: s = 7, -3.5 -> -4 (half to even), 1.75 -> 2
    # position 1 at 3 bits: s = 3, -1.5 -> -2, 0.75 -> 1; position 2 all zero
    assert codes.tolist() == [[[7, -4, 2, 0], [3, -2, 1, 0], [0, 0, 0, 0]]]
    assert s.shape == (1, 3, 1) and s[0, :2, 0].tolist() == [7.0, 3.0]
    # away from position 0 every token is 3-bit: codes in [-4, 3]
    c2, _ = kv_quantize(x, np.array([5, 6, 7]))
    assert c2[0, 0].tolist() == [3, -2, 1, 0]
    big = np.array([[[-1.0, 0.34, 1.0]]], np.float32)
    assert kv_quantize(big, [3])[0].tolist() == [[[-3, 1, 3]]]
    with pytest.raises(ValueError, match="positions"):
        kv_quantize(x, np.array([0, 1]))
