"""Verilator co-simulation of the ``R x C`` MAC array alone (``sim/tb/array.py``)."""

from __future__ import annotations

import pytest

from hw.array import MacArray
from model.accel import AccelConfig
from sim.runner import SimBuild, SimulatorUnavailable

CONFIGS = [
    pytest.param(AccelConfig(rows=3, cols=7, act_bits=8, max_k=7 * 40, adder_stages=2),
                 id="r3c7-a8-s2"),
]
SLOW = [
    pytest.param(AccelConfig(rows=4, cols=16, act_bits=4, max_k=1024, adder_stages=0),
                 id="r4c16-a4-s0"),
    pytest.param(AccelConfig(rows=2, cols=8, act_bits=8, max_k=2048, adder_stages=3),
                 id="r2c8-a8-s3"),
]


def _run(config):
    try:
        build = SimBuild(MacArray.from_config(config), dut="mac_array",
                         key=config.slug)
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    n_tests, _ = build.run("sim.tb.array", params={"config": config.to_dict()})
    assert n_tests == 3


@pytest.mark.parametrize("config", CONFIGS)
def test_array(config):
    _run(config)


@pytest.mark.slow
@pytest.mark.parametrize("config", SLOW)
def test_array_sweep(config):
    _run(config)
