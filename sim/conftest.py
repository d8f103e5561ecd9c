"""pytest configuration for ``sim/``: what pytest collects, and fixtures several test files share.

The cocotb test modules (``sim/tb/*.py``) hold ``@cocotb.test`` coroutines that only run inside
a simulator; they are never named ``test_*`` and the ``tb`` package is ignored here as well, so
pytest never collects them. Every ``sim/test_*.py`` builds its DUT through :mod:`sim.runner` and
runs a cocotb module of ``sim.tb`` in a simulator subprocess.
"""

import pytest

collect_ignore_glob = ["tb", "fast_top.py", "fixtures.py", "bench.py"]


@pytest.fixture(scope="module")
def shipped():
    """The shipped model (``model/data/bitnet_kjv.npz``), loaded once per test module."""
    from model import checkpoint as ckpt
    from sim.inference import DEFAULT_CHECKPOINT

    return ckpt.load(DEFAULT_CHECKPOINT)


@pytest.fixture
def cosim_ready():
    """``cosim_ready(path="fast")`` builds the engine's simulator model of a cocotb backend
    (``sim.cosim.build_engine_sim``) or skips the test when the simulator is missing."""
    from model.accel import AccelConfig
    from sim.cosim import build_engine_sim
    from sim.runner import SimulatorUnavailable, selected_simulator

    def ready(path: str = "fast"):
        try:
            build_engine_sim(AccelConfig(), path)
        except SimulatorUnavailable as e:
            pytest.skip(f"{selected_simulator()}: {e}")

    return ready
