"""The co-simulation infrastructure (runner, codec, drivers, scoreboard) on a small fixture."""

from __future__ import annotations

import pytest
from amaranth import signed
from amaranth.lib import data

from sim import runner
from sim.fixtures import ChunkSum
from sim.streams import PayloadCodec


def test_payload_codec_round_trip():
    layout = data.StructLayout({"acc": signed(32), "last": 1,
                                "v": data.ArrayLayout(signed(4), 3)})
    codec = PayloadCodec(layout)
    value = {"acc": -5, "last": 1, "v": [-8, 7, 0]}
    raw = codec.pack(value)
    assert codec.width == 45 and codec.unpack(raw) == value
    assert raw & 0xFFFFFFFF == (-5) & 0xFFFFFFFF and (raw >> 32) & 1 == 1
    assert (raw >> 33) & 0xF == 8  # -8 in 4 bits at the array's offset
    with pytest.raises(ValueError, match="does not fit"):
        codec.pack({"acc": 1 << 31, "last": 0, "v": [0, 0, 0]})
    with pytest.raises(ValueError, match="missing"):
        codec.pack({"acc": 0})


def test_bad_simulator_name(monkeypatch):
    monkeypatch.setenv("SIM", "modelsim")
    with pytest.raises(ValueError, match="not supported"):
        runner.selected_simulator()


def test_chunk_sum_cocotb():
    """Stalls x backpressure, throughput/latency, and that the scoreboard can fail."""
    lanes, width = 5, 8
    try:
        build = runner.SimBuild(ChunkSum(lanes=lanes, width=width), dut="chunk_sum",
                                key=f"l{lanes}w{width}")
    except runner.SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    n_tests, _ = build.run("sim.cocotb_infra", params={"lanes": lanes, "width": width})
    assert n_tests == 3
