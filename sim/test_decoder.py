"""Verilator co-simulation of the weight-stream decoder alone (``sim/tb/decoder.py``)."""

from __future__ import annotations

import pytest

from hw.decoder import WeightDecoder
from model.accel import AccelConfig
from sim.runner import SimBuild, SimulatorUnavailable

CONFIGS = [
    pytest.param(AccelConfig(rows=4, cols=16, packing="tq1"), id="r4c16-tq1"),
    pytest.param(AccelConfig(rows=3, cols=5, packing="i2"), id="r3c5-i2"),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_decoder(config):
    try:
        build = SimBuild(WeightDecoder.from_config(config), dut="weight_decoder",
                         key=f"{config.packing}-t{config.trits_per_beat}")
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    n_tests, _ = build.run("sim.tb.decoder", params={"config": config.to_dict()})
    assert n_tests == 3
