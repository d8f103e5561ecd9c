"""The shared AccelConfig: validation, derived sizes, JSON round trip, accumulator bound."""

import json

import pytest

from model.accel import AccelConfig, acc_bound, acc_width_for


def test_defaults_are_valid_and_round_trip():
    config = AccelConfig()
    assert AccelConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["packing"] == config.packing


@pytest.mark.parametrize("rows,cols,packing,expected", [
    (1, 8, "i2", 2), (4, 16, "i2", 16), (8, 32, "i2", 64),
    (1, 8, "tq1", 2), (4, 16, "tq1", 13), (8, 32, "tq1", 52), (3, 5, "tq1", 3), (3, 5, "i2", 4),
])
def test_bytes_per_beat(rows, cols, packing, expected):
    config = AccelConfig(rows=rows, cols=cols, packing=packing, adder_stages=0)
    assert config.bytes_per_beat == expected
    # every trit has a slot, and no whole byte is wasted
    assert config.bytes_per_beat * config.trits_per_byte >= rows * cols
    assert (config.bytes_per_beat - 1) * config.trits_per_byte < rows * cols


def test_tiles_and_beats():
    config = AccelConfig(rows=4, cols=16)
    assert config.m_tiles(1) == 1 and config.m_tiles(4) == 1 and config.m_tiles(5) == 2
    assert config.k_tiles(16) == 1 and config.k_tiles(17) == 2
    assert config.beats(300, 301) == 75 * 19


@pytest.mark.parametrize("kwargs", [
    {"rows": 0}, {"cols": -1}, {"act_bits": 6}, {"packing": "q4"}, {"max_k": 0},
    {"adder_stages": -1}, {"adder_stages": 9}, {"max_k": 70000}, {"rows": True},
    {"tokens_per_beat": 0}, {"tokens_per_beat": 65}, {"tokens_per_beat": 2.0},
    {"tokens_per_beat": True},
])
def test_invalid_configs_are_rejected(kwargs):
    with pytest.raises(ValueError):
        AccelConfig(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown AccelConfig field"):
        AccelConfig.from_dict({"rows": 2, "colz": 3})
    with pytest.raises(TypeError):
        AccelConfig.from_dict([1, 2])


def test_check_layer():
    config = AccelConfig(max_k=64, max_m=32)
    config.check_layer(32, 64)
    for m, k in [(0, 8), (8, 0), (33, 8), (8, 65)]:
        with pytest.raises(ValueError):
            config.check_layer(m, k)


@pytest.mark.parametrize("act_bits", [4, 8])
@pytest.mark.parametrize("k", [1, 2, 3, 255, 256, 1000, 1024, 4096, 65535])
def test_acc_width_is_tight(k, act_bits):
    bound = acc_bound(k, act_bits)
    assert bound == k * 2 ** (act_bits - 1)
    width = acc_width_for(k, act_bits)
    # the bound fits in `width` bits of two's complement ...
    assert -(2 ** (width - 1)) <= -bound and bound <= 2 ** (width - 1) - 1
    # ... and not in one bit less
    assert not (bound <= 2 ** (width - 2) - 1)


def test_acc_width_rejects_nonsense():
    with pytest.raises(ValueError):
        acc_bound(0, 8)
    with pytest.raises(ValueError):
        acc_bound(4, 1)


def test_slug_distinguishes_configs():
    a = AccelConfig(rows=4, cols=16)
    b = AccelConfig(rows=4, cols=16, packing="i2")
    assert a.slug != b.slug


def test_tokens_per_beat():
    a = AccelConfig(rows=5, cols=8)
    b = a.replace(tokens_per_beat=3)
    assert a.tokens_per_beat == 1 and a.macs_per_cycle == 40 and a.act_lanes == 8
    assert b.macs_per_cycle == 120 and b.act_lanes == 24
    # one weight beat for all T tokens: the beat and its bytes do not change
    assert (b.trits_per_beat, b.bytes_per_beat) == (40, 8)
    assert b.token_groups(7) == [3, 3, 1] and b.token_groups(3) == [3]
    assert b.token_groups(2) == [2] and a.token_groups(2) == [1, 1]
    assert a.slug.endswith("s1") and b.slug == a.slug + "t3"
    assert AccelConfig.from_json(b.to_json()) == b
    # configs written before the field existed read as one token per beat
    old = {k: v for k, v in a.to_dict().items() if k != "tokens_per_beat"}
    assert AccelConfig.from_dict(old) == a
