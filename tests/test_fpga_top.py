"""BoardTop on the iCEBreaker platform: elaborates with SPRAM, UART pins and (optionally) a PLL.
The engine is the TEST-ONLY stand-in to keep this fast; hw.build builds the real one."""

import pytest
from amaranth_boards.icebreaker import ICEBreakerPlatform
from fpga_standin_engine import StandInEngine

from fpga.top import BoardTop
from model.accel import AccelConfig

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
    no_pll._MustUse__silence = True     # only its clock is asked for, it is not elaborated
    assert no_pll.clock_hz(plat) == 12_000_000
