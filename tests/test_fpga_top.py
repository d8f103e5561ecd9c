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
