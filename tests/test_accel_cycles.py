"""Tests of model/accel_cycles.py beyond the engine's own cycle tests (tests/test_hw_engine.py)."""

import numpy as np
import pytest

from model.accel import AccelConfig
from model.accel_cycles import cycles, tile_cycles


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
    ([1], [0], "rows per tile"),
    ([1], [5], "rows per tile"),
])
def test_tile_cycles_rejects_bad_tiles(beats, rows, match):
    with pytest.raises(ValueError, match=match):
        tile_cycles(AccelConfig(), beats, rows)
    with pytest.raises(TypeError, match="AccelConfig"):
        tile_cycles("4x16", [1], [4])
