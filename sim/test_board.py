"""Board-level co-simulation: BoardCore (UART, link, SPRAM-sized weight memory, runner, the real
engine) under Verilator, driven through its serial pins by the host library (``fpga/host.py``).

A fast line rate (``DIVISOR`` clocks per bit) and small layers keep this in the default suite.
"""

from pathlib import Path

import pytest

from fpga.top import BOARD_CONFIG
from model.accel import AccelConfig

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "model" / "data" / "bitnet_kjv.npz"
A48_CHECKPOINT = ROOT / "model" / "data" / "bitnet_kjv_a48.npz"
DIVISOR = 4
#: The board's own engine shape (``fpga.top.BOARD_CONFIG``, 5 x 8, one 8-byte word per beat)
#: runs in the default suite; the 4 x 16 ``AccelConfig()`` (13-byte beats through the byte
#: gearbox) is ``slow``.
SMALL = BOARD_CONFIG
WEIGHT_WORDS = 512   # 4 KiB: holds the weight stream of a 128 x 128 layer


def _build(config):
    from fpga.top import BoardCore
    from sim.runner import SimBuild, SimulatorUnavailable

    # small memories keep the Verilator build short (their initial values become C++ code)
    core = BoardCore(config=config, divisor=DIVISOR, memory_backend="generic",
                     weight_depth=WEIGHT_WORDS, result_depth=256, clk_hz=100_000_000)
    try:
        return SimBuild(core, dut="board_core", key=f"{config.slug}d{DIVISOR}w{WEIGHT_WORDS}")
    except SimulatorUnavailable as e:
        pytest.skip(str(e))


def _run(config):
    build = _build(config)
    params = {"config": config.to_dict(), "divisor": DIVISOR, "period_ns": 10, "seed": 3,
              "layer": [13, 37, 2], "checkpoint": str(CHECKPOINT),
              "model_layer": "layers.0.self_attn.q_proj.weight", "model_tokens": 2,
              "a48_checkpoint": str(A48_CHECKPOINT)}
    n, failed = build.run("sim.tb.board", params=params)
    assert (n, failed) == (4, 0)


def test_board_host_layer_and_model_layer():
    _run(SMALL)


@pytest.mark.slow
def test_board_default_config():
    _run(AccelConfig())
