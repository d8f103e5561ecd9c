"""Tests of model/accel_cycles.py beyond the engine's own cycle tests (tests/test_hw_engine.py)."""

import numpy as np
import pytest

from model.accel import AccelConfig
from model.accel_cycles import cycles, ideal_cycles, stall_cycles, tile_cycles


def _dense(config, m, k, tokens):
    mt, kt = config.m_tiles(m), config.k_tiles(k)
    rows = [config.rows] * (mt - 1) + [m - (mt - 1) * config.rows]
    return [kt] * (mt * tokens), rows * tokens


@pytest.mark.parametrize("config", [AccelConfig(), AccelConfig(rows=5, cols=8, adder_stages=2),
                                    AccelConfig(rows=40, cols=1, adder_stages=0)])
def test_tile_cycles_with_every_beat_is_the_engines_count(config):
    # cycles() is the count the engine is tested against (tests/test_hw_engine.py)
    rng = np.random.default_rng(18)
    for _ in range(100):
        m, k, t = int(rng.integers(1, 300)), int(rng.integers(1, 300)), int(rng.integers(1, 4))
        assert tile_cycles(config, *_dense(config, m, k, t)) == cycles(config, m, k, t)


def test_tile_cycles_hand_case():
    c = AccelConfig(rows=4, cols=16, adder_stages=1)        # S = 2, L = 1 + 2
    # E0 = 2 + 3 + 3 = 8; E1 = 8 + max(0, 4) = 12; E2 = 12 + max(2, 4) = 16; + 1 result
    assert tile_cycles(c, [3, 0, 2], [4, 4, 1]) == 17
    # beats longer than the drain: E1 = 8 + 9
    assert tile_cycles(c, [3, 9], [4, 2]) == 2 + 3 + 3 + 9 + 2


@pytest.mark.parametrize("beats, rows, match", [
    ([], [], "one beat count per row tile"),
    ([1, 2], [4], "one beat count per row tile"),
    ([-1], [4], "beats per tile"),
    ([1.0], [4], "beats per tile"),
    ([True], [4], "beats per tile"),
    ([1], [0], "results per tile"),
    ([1], [5], "results per tile"),
])
def test_tile_cycles_rejects_bad_tiles(beats, rows, match):
    with pytest.raises(ValueError, match=match):
        tile_cycles(AccelConfig(), beats, rows)
    with pytest.raises(TypeError, match="AccelConfig"):
        tile_cycles("4x16", [1], [4])


# ----------------------------------------------------------------------------------------------
# tokens per weight beat (issue 19 item 4)
# ----------------------------------------------------------------------------------------------
def test_multi_token_hand_case():
    c = AccelConfig(rows=2, cols=4, adder_stages=1, tokens_per_beat=3)   # S = 2, L = 3
    # M = 3, K = 9: MT = 2 tiles of 2 and 1 rows, KT = 3; 5 tokens = groups of 3 and 2.
    # tile results: group 0: 6, 3; group 1: 4, 2.
    # E0 = 2 + 3 + 3 = 8; E1 = 8 + max(3, 6) = 14; E2 = 14 + max(3, 3) = 17;
    # E3 = 17 + max(3, 4) = 21; + 2 results = 23
    assert cycles(c, 3, 9, 5) == 23
    assert stall_cycles(c, 3, 9, 5) == (6 - 3) + 0 + (4 - 3)
    assert ideal_cycles(c, 3, 9, 5) == 2 * 6          # two passes of 6 beats
    # one token: one array's worth of results, as with one token per beat
    assert cycles(c, 3, 9, 1) == cycles(c.replace(tokens_per_beat=1), 3, 9, 1)


def test_multi_token_without_drain_stalls_is_one_beat_per_cycle():
    # KT >= T * R: the array never waits, the command takes S + L + its beats + the last
    # tile's results
    c = AccelConfig(rows=2, cols=4, adder_stages=0, tokens_per_beat=2)   # L = 2
    m, k, t = 5, 40, 3                        # KT = 10 >= 4; groups 2 + 1; last tile 1 row
    assert stall_cycles(c, m, k, t) == 0
    assert cycles(c, m, k, t) == 2 + 2 + ideal_cycles(c, m, k, t) + 1 * 1


@pytest.mark.parametrize("tpb", [1, 2, 3, 5])
def test_multi_token_cycles_are_the_tile_recurrence(tpb):
    c = AccelConfig(rows=3, cols=4, adder_stages=1, tokens_per_beat=tpb)
    rng = np.random.default_rng(19 + tpb)
    for _ in range(100):
        m, k, t = int(rng.integers(1, 40)), int(rng.integers(1, 60)), int(rng.integers(1, 12))
        mt, kt = c.m_tiles(m), c.k_tiles(k)
        rows = [c.rows] * (mt - 1) + [m - (mt - 1) * c.rows]
        groups = [tpb] * (t // tpb) + ([t % tpb] if t % tpb else [])
        res = [g * n for g in groups for n in rows]
        assert cycles(c, m, k, t) == tile_cycles(c, [kt] * len(res), res)
