"""Verilator co-simulation of ``hw.engine.BitLinearEngine`` (``sim/tb/engine.py``).

Three builds in the default run cover both packings, both activation widths, two array
shapes (one with a purely combinational adder tree, odd R and C) and three tokens per weight
beat (``tokens_per_beat``); the slow sweep adds more.
"""

from __future__ import annotations

import pytest

from hw.engine import BitLinearEngine
from model.accel import AccelConfig
from sim.runner import SimBuild, SimulatorUnavailable

#: (config, layer shapes [M, K, T]): realistic sizes with odd tails.
DEFAULT = [
    pytest.param(AccelConfig(rows=4, cols=16, act_bits=8, packing="tq1", max_k=1024,
                             max_m=4096, adder_stages=1),
                 [[256, 256, 1], [259, 333, 2], [97, 517, 1], [300, 130, 1]], id="r4c16-a8-tq1"),
    pytest.param(AccelConfig(rows=3, cols=5, act_bits=4, packing="i2", max_k=700, max_m=1000,
                             adder_stages=0),
                 [[130, 203, 2], [211, 97, 1], [64, 699, 1], [5, 700, 3]], id="r3c5-a4-i2"),
    # three tokens per weight beat: whole and partial token groups, drain stalls (K=11)
    pytest.param(AccelConfig(rows=3, cols=5, act_bits=8, packing="tq1", max_k=300, max_m=300,
                             adder_stages=1, tokens_per_beat=3),
                 [[31, 97, 7], [12, 300, 3], [7, 11, 4], [40, 50, 2]], id="r3c5-a8-tq1-t3"),
]
SLOW = [
    pytest.param(AccelConfig(rows=8, cols=8, act_bits=8, packing="i2", max_k=2048,
                             adder_stages=3),
                 [[512, 777, 1], [1000, 1025, 1], [7, 2048, 4]], id="r8c8-a8-i2-s3"),
    pytest.param(AccelConfig(rows=2, cols=32, act_bits=4, packing="tq1", max_k=1536,
                             adder_stages=2),
                 [[301, 1536, 1], [640, 999, 2], [33, 31, 5]], id="r2c32-a4-tq1-s2"),
    pytest.param(AccelConfig(rows=1, cols=1, act_bits=8, packing="tq1", max_k=64, max_m=64,
                             adder_stages=0),
                 [[17, 63, 2], [64, 64, 1]], id="r1c1-a8-tq1"),
    pytest.param(AccelConfig(rows=4, cols=16, act_bits=4, packing="i2", max_k=1024,
                             adder_stages=2, tokens_per_beat=2),
                 [[256, 256, 4], [259, 333, 3], [97, 40, 5]], id="r4c16-a4-i2-t2"),
    pytest.param(AccelConfig(rows=5, cols=8, act_bits=8, packing="tq1", max_k=512, max_m=512,
                             adder_stages=2, tokens_per_beat=4),
                 [[256, 512, 8], [41, 100, 6], [5, 8, 9]], id="r5c8-a8-tq1-t4"),
]


def run_engine_tests(config: AccelConfig, shapes, *, testcase=None, seed: int = 1):
    """Build the engine for ``config`` (cached) and run ``sim.tb.engine`` on it."""
    try:
        build = SimBuild(BitLinearEngine(config=config), dut="bitlinear_engine",
                         key=config.slug)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    return build.run("sim.tb.engine", testcase=testcase, seed=seed,
                     params={"config": config.to_dict(), "shapes": shapes, "seed": seed})


@pytest.mark.parametrize(("config", "shapes"), DEFAULT)
def test_engine(config, shapes):
    n_tests, _ = run_engine_tests(config, shapes)
    assert n_tests == 5


@pytest.mark.slow
@pytest.mark.parametrize(("config", "shapes"), SLOW)
def test_engine_sweep(config, shapes):
    n_tests, _ = run_engine_tests(config, shapes)
    assert n_tests == 5
