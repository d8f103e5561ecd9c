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
    n_tests, _ = build.run("sim.tb.infra", params={"lanes": lanes, "width": width})
    assert n_tests == 3


def _chunk_build(**kw):
    try:
        return runner.SimBuild(ChunkSum(lanes=5, width=8), dut="chunk_sum", key="l5w8", **kw)
    except runner.SimulatorUnavailable as exc:
        pytest.skip(str(exc))


def test_cached_build_runs_from_a_second_process():
    """A build made by one process is used, without rebuilding, by a fresh Python process.

    The second process never calls the cocotb runner's ``build()``; this is the case that once
    failed inside cocotb_tools (``'Verilator' object has no attribute '_vhdl_sources'``).
    """
    import subprocess
    import sys

    build = _chunk_build()
    assert build._is_current()
    code = (
        "import sys\n"
        "from sim import runner\n"
        "from sim.fixtures import ChunkSum\n"
        "b = runner.SimBuild(ChunkSum(lanes=5, width=8), dut='chunk_sum', key='l5w8')\n"
        "assert not b.rebuilt, 'the cached build was rebuilt'\n"
        "n, _ = b.run('sim.tb.infra', testcase='stalls_and_backpressure',\n"
        "             params={'lanes': 5, 'width': 8}, seed=3)\n"
        "print('RAN', n)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=runner.ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "RAN 1" in out.stdout


def test_run_rebuilds_a_directory_another_process_changed(monkeypatch):
    """If the directory's stamp no longer matches (rebuilt elsewhere for another design), run()
    rebuilds before running instead of simulating the wrong binary."""
    build = _chunk_build()
    stamp = build.build_dir / "verilog.sha256"
    good = stamp.read_text()
    calls = []

    def fake_build():
        calls.append(1)
        stamp.write_text(good)  # "rebuilt": the stamp matches this design again

    stamp.write_text("0" * 64)
    try:
        monkeypatch.setattr(build, "_build", fake_build)
        n, _ = build.run("sim.tb.infra", testcase="stalls_and_backpressure",
                         params={"lanes": 5, "width": 8})
    finally:
        stamp.write_text(good)
    assert calls == [1] and n == 1


def test_simulator_crash_is_a_cocotb_failure():
    """A module that cannot be imported in the simulator is reported, not a bare exception."""
    build = _chunk_build()
    with pytest.raises(runner.CocotbFailure, match="sim.no_such_module"):
        build.run("sim.no_such_module")
