"""The cocotb backends of ``python -m sim.run_model`` (``sim/cosim.py``): the shipped model
through the Verilator co-simulation, every layer's accumulators compared (one forward pass;
``-m slow``: multi-token generation through both paths).
"""

from __future__ import annotations

import pytest

from model.accel import AccelConfig
from model.accel_cycles import cycles
from sim.compare import compare
from sim.cosim import COSIM_PATHS, run_cosim
from sim.generation import generate, generate_pure, run_forward
from sim.inference import DEFAULT_CHECKPOINT


def test_cosim_forward_pass_matches_golden(shipped, tmp_path, cosim_ready):
    """One full forward pass of the shipped model: every BitLinear of every layer on the DUT."""
    cosim_ready()
    config = AccelConfig()
    prompt = list(b"And Moses said")
    ref = run_forward(shipped, prompt, None, config)
    hw = run_cosim(DEFAULT_CHECKPOINT, prompt, 0, config, mode="forward",
                   work_dir=tmp_path)
    compare(ref, hw)
    assert len(hw.calls) == 7 * shipped.config.n_layers
    for c in hw.calls:  # measured cycles against the cycle model
        assert c.cycles == cycles(config, c.m, c.k, c.tokens), c.name


@pytest.mark.slow
@pytest.mark.parametrize("path", COSIM_PATHS)
def test_cosim_generation_matches_golden(shipped, tmp_path, path, cosim_ready):
    """Multi-token generation through both cocotb paths, cycles against the cycle model."""
    cosim_ready(path)
    config = AccelConfig()
    prompt = list(b"And God said")
    n = 8 if path == "fast" else 3
    ref = generate(shipped, prompt, n, None, config)
    hw = run_cosim(DEFAULT_CHECKPOINT, prompt, n, config, work_dir=tmp_path, path=path)
    compare(ref, hw)
    assert hw.tokens == generate_pure(shipped, prompt, n)
    for c in hw.calls:
        assert c.cycles == cycles(config, c.m, c.k, c.tokens), c.name
