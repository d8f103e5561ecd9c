"""Every component refuses bad parameters at construction, and the refused object leaves no
``UnusedElaboratable`` warning behind (``hw._util.validated``, the one idiom for it)."""

import gc
import warnings

import pytest
from amaranth.hdl import Fragment, UnusedElaboratable

from fpga.admission import RunAdmission
from fpga.link import Link
from fpga.memory import WeightMemory
from fpga.top import BoardCore, BoardTop
from fpga.uart import UARTRx, UARTTx
from hw._util import silence_unused
from hw.array import MacArray
from hw.baseline import Int8MacArray
from hw.decoder import WeightDecoder
from hw.engine import BitLinearEngine
from hw.gearbox import Gearbox
from hw.pe import TernaryLane
from hw.row import Row
from hw.skid import SkidBuffer
from model.accel import AccelConfig
from sim.fast_top import FastTop
from sim.fixtures import ChunkSum

CFG = AccelConfig(rows=2, cols=4, max_k=32, max_m=16)

BAD = {
    "TernaryLane": lambda: TernaryLane(act_bits=1),
    "Row": lambda: Row(cols=0, act_bits=8, acc_width=16),
    "MacArray": lambda: MacArray(rows=0, cols=4, act_bits=8, acc_width=16),
    "Int8MacArray": lambda: Int8MacArray(rows=0, cols=4, act_bits=8, acc_width=20),
    "SkidBuffer": lambda: SkidBuffer(shape="eight"),
    "Gearbox": lambda: Gearbox(in_bytes=0, out_bytes=1),
    "WeightDecoder": lambda: WeightDecoder(packing="tq2", trits_per_beat=5),
    "BitLinearEngine": lambda: BitLinearEngine(config=CFG.to_dict()),
    "UARTRx": lambda: UARTRx(divisor=3),
    "UARTTx": lambda: UARTTx(divisor=True),
    "WeightMemory": lambda: WeightMemory(depth=0),
    "RunAdmission": lambda: RunAdmission(config=CFG, weight_bytes=0, act_rows=1,
                                         result_depth=1),
    "Link": lambda: Link(config=CFG, weight_depth=16, act_rows=4, result_depth=16, timeout=0,
                         clk_hz=12_000_000),
    "BoardCore": lambda: BoardCore(config=CFG, divisor=2),
    "BoardTop": lambda: BoardTop(config=CFG, baud=0),
    "ChunkSum": lambda: ChunkSum(lanes=0),
    "FastTop": lambda: FastTop(config=CFG, weight_depth=1),
}


@pytest.fixture(scope="module", autouse=True)
def armed():
    """Amaranth only warns about unused elaboratables once something has been elaborated."""
    Fragment.get(SkidBuffer(shape=8), None)


@pytest.mark.parametrize("name", sorted(BAD))
def test_refused_construction_leaves_no_warning(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises((TypeError, ValueError)):
            BAD[name]()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, UnusedElaboratable)], name


def test_the_check_sees_an_unused_elaboratable():
    """The test above can fail: an object built and dropped unused does warn, unless silenced."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SkidBuffer(shape=8)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, UnusedElaboratable)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_unused(SkidBuffer(shape=8))
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, UnusedElaboratable)]
