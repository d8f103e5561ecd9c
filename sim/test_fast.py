"""The whole-layer fast path (``sim/fast_top.py``, ``sim/fast.py``) on Verilator."""

from __future__ import annotations

import pytest

from model.accel import AccelConfig
from sim.fast import build_fast_engine
from sim.runner import SimulatorUnavailable

CONFIG = AccelConfig()  # the default engine, as used for the trained model
SHAPES = [[256, 256, 1], [384, 128, 2], [128, 384, 1], [97, 333, 3], [1000, 100, 1]]


def test_fast_engine():
    try:
        build = build_fast_engine(CONFIG)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    n_tests, _ = build.run("sim.tb.fast", params={"config": CONFIG.to_dict(),
                                                      "shapes": SHAPES})
    assert n_tests == 2
