"""Tests of model/packing.py (docs/architecture.md sections 3-4)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.accel import AccelConfig, tree_depth
from model.packing import (
    TQ1_INVALID_BYTES,
    TQ1_VALID_BYTES,
    TritStreamDecoder,
    act_stream,
    decode_tq1_byte,
    layer_tiles,
    pack_i2,
    pack_i2_hf,
    pack_layer_stream,
    pack_tq1,
    result_order,
    tq1_byte_is_valid,
    unpack_i2,
    unpack_i2_hf,
    unpack_layer_stream,
    unpack_tq1,
    zero_chunks,
    zero_row_tiles,
)
from sim import golden


def test_i2_known_bytes():
    # trit 4j+i in bits [2i+1:2i] as trit+1
    assert pack_i2([-1, 0, 1, 0]).tolist() == [0b01_10_01_00]
    assert pack_i2([1]).tolist() == [0b01_01_01_10]  # padded with zero trits (code 1)
    assert pack_i2([]).tolist() == []


def test_i2_every_byte():
    for b in range(256):
        codes = [(b >> (2 * i)) & 3 for i in range(4)]
        if 3 in codes:
            with pytest.raises(ValueError, match="byte offset 2"):
                unpack_i2(bytes([0x55, 0x55, b]), 12)
        else:
            t = unpack_i2(bytes([b]), 4)
            assert t.tolist() == [c - 1 for c in codes]
            assert pack_i2(t).tolist() == [b]


def test_tq1_tables():
    all_groups = list(itertools.product((-1, 0, 1), repeat=5))
    produced = {int(pack_tq1(g)[0]) for g in all_groups}
    assert len(produced) == 243
    assert produced == set(TQ1_VALID_BYTES)
    assert len(TQ1_INVALID_BYTES) == 13
    assert set(TQ1_INVALID_BYTES) | produced == set(range(256))
    for g in all_groups:
        b = int(pack_tq1(g)[0])
        assert decode_tq1_byte(b) == g
        assert unpack_tq1(bytes([b]), 5).tolist() == list(g)
        assert tq1_byte_is_valid(b)
    for b in TQ1_INVALID_BYTES:
        assert not tq1_byte_is_valid(b)
        with pytest.raises(ValueError, match="byte offset 3"):
            unpack_tq1(bytes([pack_tq1([0] * 5)[0]] * 3 + [b]), 20)


@pytest.mark.parametrize("packing,pack", [("i2", pack_i2), ("tq1", pack_tq1)])
def test_bytes_match_the_reference(packing, pack):
    # every byte against the spec's formula as the test reference reads it (sim.golden):
    # tq1 byte = ceil(q * 256 / 243), q = sum d_i 3^(4-i) (llama.cpp TQ1_0); i2 code = trit + 1
    per = 4 if packing == "i2" else 5
    for g in itertools.product((-1, 0, 1), repeat=per):
        assert pack(g).tolist() == golden.pack_trits(g, packing).tolist()
    t = np.random.default_rng(3).integers(-1, 2, 103).astype(np.int8)   # with a padded tail
    assert pack(t).tolist() == golden.pack_trits(t, packing).tolist()


@pytest.mark.parametrize("pack,unpack,per", [(pack_i2, unpack_i2, 4), (pack_tq1, unpack_tq1, 5)])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 99])
def test_round_trip_lengths(pack, unpack, per, n):
    rng = np.random.default_rng(n)
    t = rng.integers(-1, 2, n).astype(np.int8)
    data = pack(t)
    assert data.dtype == np.uint8 and data.size == -(-n // per)
    assert np.array_equal(unpack(data, n), t)
    if n:
        with pytest.raises(ValueError, match="short stream"):
            unpack(data[:-1], n)


@pytest.mark.parametrize("bad", [[2], [-2], [0.0], [True]])
def test_pack_rejects(bad):
    with pytest.raises((ValueError, TypeError)):
        pack_i2(bad)
    with pytest.raises((ValueError, TypeError)):
        pack_tq1(bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-1, 1), max_size=80), st.sampled_from(["i2", "tq1"]),
       st.lists(st.integers(1, 7), min_size=1, max_size=20))
def test_stream_decoder(trits, packing, chunks):
    data = (pack_i2 if packing == "i2" else pack_tq1)(trits)
    dec = TritStreamDecoder(packing)
    out, pos, i = [], 0, 0
    while pos < data.size:
        n = chunks[i % len(chunks)]
        out.append(dec.feed(data[pos:pos + n]))
        pos, i = pos + n, i + 1
    dec.finish(len(trits))
    got = np.concatenate(out) if out else np.zeros(0, np.int8)
    assert got[:len(trits)].tolist() == trits
    assert not np.any(got[len(trits):])


def test_stream_decoder_errors():
    dec = TritStreamDecoder("tq1")
    dec.feed(pack_tq1([1] * 10))
    with pytest.raises(ValueError, match="byte offset 3"):
        dec.feed(bytes([0, TQ1_INVALID_BYTES[0]]))
    dec = TritStreamDecoder("i2")
    dec.feed(bytes([0x55] * 5))
    with pytest.raises(ValueError, match="byte offset 6"):
        dec.feed(bytes([0x55, 0xFF]))
    dec = TritStreamDecoder("i2")
    dec.feed(pack_i2([1] * 5))
    with pytest.raises(ValueError, match="short"):
        dec.finish(9)
    with pytest.raises(ValueError, match="long"):
        dec.finish(4)
    dec = TritStreamDecoder("i2")
    dec.feed(pack_i2([1] * 6))
    with pytest.raises(ValueError, match="pad"):
        dec.finish(5)
    with pytest.raises(ValueError):
        TritStreamDecoder("i3")


@pytest.mark.parametrize("unpack, data, n, message", [
    (unpack_i2, [0x55, 0xFD], 5, "code 3 at byte offset 1"),       # code 3 in the padding
    (unpack_i2, [0x55, 0x59], 5, "non-zero pad trits"),            # pad trit +1
    (unpack_i2, [0x55, 0x55, 0x55], 5, "long stream"),            # a trailing byte
    (unpack_tq1, [*pack_tq1([0] * 5), 0xFF], 6, "non-zero pad trits"),
    (unpack_tq1, [*pack_tq1([0] * 10)], 5, "long stream"),
    (unpack_tq1, [*pack_tq1([0] * 5)], -1, "n must be an int >= 0"),
])
def test_unpack_is_strict(unpack, data, n, message):
    """What the stream decoder, the checkpoint loaders and the hardware refuse, the unpackers
    refuse too: trailing bytes, non-zero or invalid padding."""
    with pytest.raises(ValueError, match=message):
        unpack(bytes(data), n)


def test_stream_decoder_stays_failed():
    dec = TritStreamDecoder("tq1")
    dec.feed(pack_tq1([1] * 5))
    with pytest.raises(ValueError, match="byte offset 2"):
        dec.feed(bytes([0, TQ1_INVALID_BYTES[0]]))
    # the bad chunk is not skipped: a later chunk cannot be decoded at a wrong offset
    with pytest.raises(ValueError, match="stopped at an earlier error.*byte offset 2"):
        dec.feed(pack_tq1([0] * 5))
    with pytest.raises(ValueError, match="stopped at an earlier error"):
        dec.finish(5)
    with pytest.raises(ValueError, match="n_trits must be an int >= 0"):
        TritStreamDecoder("i2").finish(-1)


@pytest.mark.parametrize("packing", ["i2", "tq1"])
@pytest.mark.parametrize("rows,cols", [(4, 16), (3, 5), (2, 7), (1, 1)])
@pytest.mark.parametrize("m,k", [(1, 1), (5, 17), (8, 32), (7, 33), (13, 3)])
def test_layer_stream(packing, rows, cols, m, k):
    cfg = AccelConfig(rows=rows, cols=cols, packing=packing, adder_stages=0)
    rng = np.random.default_rng(m * 100 + k)
    W = rng.integers(-1, 2, (m, k)).astype(np.int8)
    s = pack_layer_stream(W, cfg)
    assert s.dtype == np.uint8 and s.shape == (cfg.beats(m, k), cfg.bytes_per_beat)
    assert np.array_equal(s, golden.layer_stream(W, cfg))
    unpack = unpack_i2 if packing == "i2" else unpack_tq1
    for beat, ref in zip(s, golden.beats_of_layer(W, rows, cols), strict=True):
        assert unpack(beat, rows * cols).tolist() == ref.tolist()
    assert np.array_equal(unpack_layer_stream(s, cfg, m, k), W)


def test_layer_stream_errors():
    cfg = AccelConfig(rows=4, cols=16, max_k=64, max_m=64)
    with pytest.raises(ValueError, match="2-D"):
        pack_layer_stream(np.zeros(5, np.int8), cfg)
    with pytest.raises(TypeError):
        pack_layer_stream(np.zeros((2, 2)), cfg)
    with pytest.raises(ValueError, match=r"W\[1, 0\] = 2"):
        pack_layer_stream(np.array([[0], [2]]), cfg)
    with pytest.raises(ValueError, match="max_k"):
        pack_layer_stream(np.zeros((2, 65), np.int8), cfg)
    with pytest.raises(ValueError, match="max_m"):
        pack_layer_stream(np.zeros((65, 2), np.int8), cfg)
    with pytest.raises(TypeError):
        pack_layer_stream(np.zeros((2, 2), np.int8), None)
    s = pack_layer_stream(np.ones((5, 17), np.int8), cfg)
    with pytest.raises(ValueError, match="shape"):
        unpack_layer_stream(s[:-1], cfg, 5, 17)
    s = pack_layer_stream(np.ones((5, 16), np.int8), cfg)
    with pytest.raises(ValueError, match="outside the layer"):
        unpack_layer_stream(s, cfg, 5, 15)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 11])
def test_hf_layout(m):
    rng = np.random.default_rng(m)
    W = rng.integers(-1, 2, (m, 6)).astype(np.int8)
    p = pack_i2_hf(W)
    R = -(-m // 4)
    assert p.shape == (R, 6) and p.dtype == np.uint8
    for r in range(m):
        j, i = r % R, r // R
        assert np.array_equal(((p[j] >> (2 * i)) & 3).astype(np.int8) - 1, W[r])
    assert np.array_equal(unpack_i2_hf(p, m), W)


def test_hf_layout_reference_example():
    # the worked example of transformers' unpack_weights docstring (integrations/bitnet.py)
    packed = np.array([[0b10100001, 0b00011000], [0b10010000, 0b00001010]], np.uint8)
    want = [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]]
    assert unpack_i2_hf(packed, 8).tolist() == want
    assert np.array_equal(pack_i2_hf(np.array(want, np.int8)), packed)


def test_hf_errors():
    p = pack_i2_hf(np.zeros((8, 3), np.int8))
    p[1, 2] |= 0b1100
    with pytest.raises(ValueError, match="trit row 3"):
        unpack_i2_hf(p, 8)
    with pytest.raises(ValueError, match="rows"):
        unpack_i2_hf(p, 12)


# ----------------------------------------------------------------------------------------------
# zero chunks and row tiles (issue 18)
# ----------------------------------------------------------------------------------------------
def test_zero_chunks_hand_case():
    c = AccelConfig(rows=2, cols=4)
    xq = np.array([[0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
                   [0, 0, 0, -3, 0, 0, 0, 0, 0, 7],
                   [0] * 10])
    # k = 10: chunks 0..3, 4..7, 8..9 (lanes 10, 11 of the last are not in the layer)
    assert zero_chunks(xq, c).tolist() == [[True, False, True], [False, True, False],
                                           [True, True, True]]


def test_zero_row_tiles_hand_case():
    c = AccelConfig(rows=4, cols=4)
    z = np.array([[True] * 4 + [False] + [True] * 3 + [True, True],
                  [True] * 10])
    # m = 10: tiles 0..3, 4..7, 8..9 (rows 10, 11 are past the layer and count as marked)
    assert zero_row_tiles(z, c).tolist() == [[True, False, True], [True, True, True]]


@pytest.mark.parametrize("bad", [np.zeros(4, dtype=int), np.zeros((2, 4)), [[0.5, 0]]])
def test_zero_chunks_rejects_bad_codes(bad):
    with pytest.raises(ValueError, match="2-D integer"):
        zero_chunks(bad, AccelConfig())
    with pytest.raises(ValueError, match="2-D bool"):
        zero_row_tiles(np.zeros((2, 4), dtype=int), AccelConfig())


@pytest.mark.parametrize("rows, cols", [(5, 8), (10, 4), (40, 1)])
def test_leaving_out_the_beats_of_zero_chunks_keeps_the_product(rows, cols):
    # the product over the kept beats of the section 4 stream equals the whole product, and
    # exactly the beats of the zero chunks (in every row tile) are left out
    c = AccelConfig(rows=rows, cols=cols, adder_stages=min(1, tree_depth(cols)))
    rng = np.random.default_rng(cols)
    m, k, t = 23, 37, 3
    W = rng.integers(-1, 2, (m, k)).astype(np.int8)
    xq = rng.integers(-127, 128, (t, k)) * (rng.random((t, k)) < 0.3)
    xq[1] = 0
    tiles = layer_tiles(W, c).reshape(c.m_tiles(m), c.k_tiles(k), rows, cols)
    zc = zero_chunks(xq, c)
    xpad = np.zeros((t, c.k_tiles(k) * cols), dtype=np.int64)
    xpad[:, :k] = xq
    for token in range(t):
        acc = np.zeros(c.m_tiles(m) * rows, dtype=np.int64)
        kept = 0
        for mt in range(c.m_tiles(m)):
            for kt in range(c.k_tiles(k)):
                if zc[token, kt]:
                    continue
                kept += 1
                acc[mt * rows:(mt + 1) * rows] += tiles[mt, kt] @ xpad[token, kt * cols:
                                                                       (kt + 1) * cols]
        assert acc[:m].tolist() == (W.astype(np.int64) @ xq[token]).tolist()
        assert kept == c.m_tiles(m) * (c.k_tiles(k) - int(zc[token].sum()))
    assert zc[1].all()


# ----------------------------------------------------------------------------------------------
# act stream and result order with tokens per weight beat (issue 19 item 4)
# ----------------------------------------------------------------------------------------------
def test_act_stream_hand_case():
    c = AccelConfig(rows=1, cols=2, tokens_per_beat=2)
    xq = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    # K = 3: chunks (0, 1) and (2, pad); tokens 0, 1 side by side, then token 2 and a pad token
    assert act_stream(xq, c).tolist() == [[1, 2, 4, 5], [3, 0, 6, 0],
                                          [7, 8, 0, 0], [9, 0, 0, 0]]
    one = c.replace(tokens_per_beat=1)
    assert act_stream(xq, one).tolist() == [[1, 2], [3, 0], [4, 5], [6, 0], [7, 8], [9, 0]]
    rng = np.random.default_rng(0)
    padded = act_stream(xq, c, rng)
    assert padded[:, [0, 1, 2, 3]][0].tolist() == [1, 2, 4, 5]      # data lanes as without
    assert padded[1, 0] == 3 and padded[2, :2].tolist() == [7, 8] and padded[3, 0] == 9


def test_result_order_hand_case():
    c = AccelConfig(rows=2, cols=4, tokens_per_beat=2)
    # M = 3: tiles rows (0, 1), (2,); tokens 0, 1 as a group, then token 2 alone
    got = result_order(c, 3, 3).tolist()
    assert got == [[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 2, 0], [1, 2, 1],
                   [2, 0, 0], [2, 1, 0], [2, 2, 1]]
    one = result_order(c.replace(tokens_per_beat=1), 3, 2).tolist()
    assert one == [[0, 0, 0], [0, 1, 0], [0, 2, 1], [1, 0, 0], [1, 1, 0], [1, 2, 1]]
    with pytest.raises(ValueError, match="m >= 1"):
        result_order(c, 0, 1)
