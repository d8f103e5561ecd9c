"""BoardTop on the iCEBreaker platform: elaborates with SPRAM, UART pins and (optionally) a PLL.
The engine is the TEST-ONLY stand-in to keep this fast; hw.build builds the real one."""

import pytest
from amaranth_boards.icebreaker import ICEBreakerPlatform

from fpga.top import BoardTop
from hw._util import silence_unused
from model.accel import AccelConfig
from tests.helpers.standin_engine import StandInEngine

CFG = AccelConfig(rows=2, cols=4, max_k=32, max_m=16)


@pytest.mark.parametrize("pll_mhz", [None, 24])
def test_boardtop_prepares_for_icebreaker(pll_mhz):
    top = BoardTop(config=CFG, pll_mhz=pll_mhz, engine_factory=StandInEngine)
    plat = ICEBreakerPlatform()
    plan = plat.prepare(top, name="t")
    il = plan.files["t.il"]
    pcf = plan.files["t.pcf"]
    assert il.count("SB_SPRAM256KA") == 4
    assert ("SB_PLL40_PAD" in il) == (pll_mhz is not None)
    assert "uart_0__rx" in pcf and "uart_0__tx" in pcf
    assert top.clock_hz(plat) == (12_000_000 if pll_mhz is None else 24_000_000)


@pytest.mark.parametrize("board", ["ulx3s", "ecpix5"])
def test_boardtop_prepares_for_an_ecp5_board(board):
    """The board top without a PLL on an ECP5 board (hw.build --target ecp5 --top fpga): the
    board clock, the UART pins (the ULX3S's resource also has rts/dtr), generic memories."""
    from hw.build.ecp5 import load_ecp5_board
    top = BoardTop(config=CFG, engine_factory=StandInEngine)
    plat = load_ecp5_board(board, "85F")
    plan = plat.prepare(top, name="t")
    assert "SB_SPRAM256KA" not in plan.files["t.il"] and "SB_PLL40" not in plan.files["t.il"]
    assert 'COMP "uart_0__rx__io"' in plan.files["t.lpf"]
    assert 'COMP "uart_0__tx__io"' in plan.files["t.lpf"]
    assert top.clock_hz(plat) == plat.default_clk_frequency


def test_boardtop_rejects_unreachable_baud():
    top = BoardTop(config=CFG, baud=5_000_000, engine_factory=StandInEngine)
    with pytest.raises(ValueError, match="cycles/bit"):
        ICEBreakerPlatform().prepare(top, name="t")


def test_board_defaults_are_consistent():
    """The default board build: one 8-byte SPRAM word per tq1 beat, a PLL clock that is
    reported as BOARD_CLOCK_MHZ and gives an exact 1 Mbaud divisor."""
    from fpga.memory import WORD_BYTES
    from fpga.top import BOARD_CLOCK_MHZ, BOARD_CONFIG, BOARD_PLL_MHZ, board_top, ice40_pll_params
    from fpga.uart import baud_divisor

    assert BOARD_CONFIG.packing == "tq1"
    assert BOARD_CONFIG.bytes_per_beat == WORD_BYTES
    assert BOARD_CONFIG.trits_per_beat == WORD_BYTES * 5     # no pad trits: 1.6 bits/weight
    plat = ICEBreakerPlatform()
    top = board_top(engine_factory=StandInEngine)
    assert top.config == BOARD_CONFIG
    assert top.clock_hz(plat) == round(BOARD_CLOCK_MHZ * 1e6)
    assert ice40_pll_params(12, BOARD_PLL_MHZ)["f_out_mhz"] == BOARD_CLOCK_MHZ
    assert baud_divisor(top.clock_hz(plat), top.baud) * top.baud == top.clock_hz(plat)
    plan = plat.prepare(top, name="t")
    assert "SB_PLL40_PAD" in plan.files["t.il"]
    assert plan.files["t.il"].count("SB_SPRAM256KA") == 4
    no_pll = board_top(pll_mhz=0, engine_factory=StandInEngine)
    silence_unused(no_pll)     # only its clock is asked for, it is not elaborated
    assert no_pll.clock_hz(plat) == 12_000_000


@pytest.mark.parametrize("kwargs, message", [
    # rows, cols and the bytes of a beat are u8 fields of the INFO reply
    ({"config": AccelConfig(rows=64, cols=64)},
     r"bytes_per_beat = 820 \(rows \* cols = 4096 trits at 5 per byte\) exceeds 255, the "
     r"largest value of its 8-bit field in the board's INFO reply"),
    ({"config": AccelConfig(rows=52, cols=25, adder_stages=1)}, r"bytes_per_beat = 260"),
    ({"config": AccelConfig(rows=256, cols=1, adder_stages=0)}, r"rows = 256 exceeds 255"),
    ({"config": AccelConfig(rows=1, cols=256, adder_stages=1)}, r"cols = 256 exceeds 255"),
    # u16: activation bytes and result entries; u32: weight bytes
    ({"config": AccelConfig(rows=1, cols=2, max_k=65535, adder_stages=1)},
     r"act_bytes = 65536 \(act_rows 32768 x cols 2\) exceeds 65535"),
    ({"config": CFG, "act_rows": 32768}, r"act_bytes = 131072 \(act_rows 32768 x cols 4\)"),
    ({"config": CFG, "result_depth": 65536}, r"result_depth = 65536 exceeds 65535"),
    ({"config": CFG, "weight_depth": 1 << 29}, r"weight_bytes = 4294967296 \(weight_depth"),
    ({"config": CFG, "pll_mhz": -5}, r"pll_mhz must be None or a finite number > 0, got -5"),
    ({"config": CFG, "pll_mhz": 0}, r"pll_mhz must be None or a finite number > 0"),
    ({"config": CFG, "pll_mhz": float("nan")}, r"pll_mhz must be None"),
    ({"config": CFG, "pll_mhz": 4295}, r"pll_mhz = 4295 exceeds 4294.97"),
    ({"config": CFG, "baud": 0}, r"baud must be an int >= 1"),
    ({"config": CFG, "weight_depth": 0}, r"weight_depth must be an int >= 1"),
    ({"config": CFG, "result_depth": True}, r"result_depth must be an int >= 1"),
])
def test_boardtop_rejects_what_the_board_cannot_take(kwargs, message):
    """At construction, not when the INFO reply is packed (``struct.error``) or elaborated;
    a rejected top does not warn as an unused elaboratable (warnings are errors here)."""
    from fpga.top import check_board_params
    with pytest.raises(ValueError, match=message):
        BoardTop(**kwargs, engine_factory=StandInEngine)
    with pytest.raises(ValueError, match=message):
        check_board_params(**kwargs)


def test_boardtop_and_boardcore_reject_a_config_that_is_not_an_accelconfig():
    from fpga.top import BoardCore
    with pytest.raises(TypeError, match="config must be an AccelConfig, got dict"):
        BoardTop(config={"rows": 2})
    with pytest.raises(TypeError, match="config must be an AccelConfig"):
        BoardCore(config=None, divisor=4)


@pytest.mark.parametrize("kwargs, message", [
    ({"clk_hz": 1 << 32}, r"clk_hz = 4294967296 exceeds 4294967295"),
    ({"clk_hz": 0}, r"clk_hz must be an int >= 1"),
    ({"divisor": 3}, r"divisor must be an int >= 4"),
    ({"config": AccelConfig(rows=64, cols=64)}, r"bytes_per_beat = 820"),
])
def test_boardcore_rejects_what_the_info_reply_cannot_carry(kwargs, message):
    from fpga.top import BoardCore
    args = {"config": CFG, "divisor": 4, "engine_factory": StandInEngine, **kwargs}
    with pytest.raises(ValueError, match=message):
        BoardCore(**args)


def test_board_limits_are_the_info_reply_fields():
    """At each limit the INFO reply packs, one above it does not: INFO_LIMITS is the format."""
    import dataclasses
    import struct

    from fpga.protocol import Info
    from fpga.top import INFO_LIMITS, check_board_params
    values = {f.name: INFO_LIMITS.get(f.name, "tq1") for f in dataclasses.fields(Info)}
    assert len(Info(**values).pack()) == Info.SIZE
    for name in INFO_LIMITS:
        with pytest.raises(struct.error):
            Info(**{**values, name: INFO_LIMITS[name] + 1}).pack()
    # the largest board shapes the INFO reply carries
    for config in (AccelConfig(rows=255, cols=1, adder_stages=0),
                   AccelConfig(rows=51, cols=25, adder_stages=1),        # 255 tq1 bytes
                   AccelConfig(rows=255, cols=4, packing="i2", adder_stages=1),
                   AccelConfig(rows=1, cols=1, max_k=65535, max_m=65535, adder_stages=0)):
        check_board_params(config=config)
    check_board_params(config=CFG, result_depth=65535, weight_depth=(1 << 29) - 1,
                       pll_mhz=4294.967295)
