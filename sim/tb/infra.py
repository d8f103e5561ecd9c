"""cocotb tests of the co-simulation infrastructure on :class:`sim.fixtures.ChunkSum`.

Run by ``sim/test_infra.py``; this module is not named ``test_*`` so pytest does not collect it.
"""

from __future__ import annotations

import random

import cocotb

from sim.fixtures import ChunkSum
from sim.runner import sim_params
from sim.scoreboard import Scoreboard
from sim.streams import ClockedTB, StreamSink, StreamSource, port_layout


class ChunkSumTB(ClockedTB):
    def __init__(self, dut, *, seed, idle_prob, stall_prob):
        super().__init__(dut, seed=seed)
        p = sim_params()
        self.model = ChunkSum(lanes=p["lanes"], width=p["width"])
        self.sb = Scoreboard("sums")
        self.src = StreamSource(dut, "data", self.clk, layout=port_layout(self.model, "data"),
                                idle_prob=idle_prob, rng=random.Random(seed + 1))
        self.sink = StreamSink(dut, "sums", self.clk, layout=port_layout(self.model, "sums"),
                               stall_prob=stall_prob, rng=random.Random(seed + 2),
                               callback=self.sb.actual)

    def random_beats(self, n):
        p = sim_params()
        lo, hi = -(1 << (p["width"] - 1)), (1 << (p["width"] - 1)) - 1
        beats = [[self.rng.randint(lo, hi) for _ in range(p["lanes"])] for _ in range(n)]
        beats += [[lo] * p["lanes"], [hi] * p["lanes"]]  # extremes
        return beats

    def expect(self, beats):
        self.sb.expect_many({"acc": sum(b), "last": int(b[0] < 0)} for b in beats)


@cocotb.test()
async def stalls_and_backpressure(dut):
    """Random idle cycles on the source crossed with random backpressure on the sink."""
    for i, (idle, stall) in enumerate([(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.4, 0.6)]):
        tb = ChunkSumTB(dut, seed=100 + i, idle_prob=idle, stall_prob=stall)
        await tb.start()
        beats = tb.random_beats(200)
        tb.expect(beats)
        tb.src.send_nowait(beats)
        assert await tb.sink.wait_for(len(beats), timeout_cycles=20 * len(beats)), \
            f"timeout: {len(tb.sink.items)} of {len(beats)} results"
        await tb.cycles(10)  # nothing extra may follow
        tb.sb.check_done()
        assert int(dut.beats.value) == len(beats)
        tb.src._task.cancel()
        tb.sink._task.cancel()


@cocotb.test()
async def full_throughput(dut):
    """Unstalled: one beat per cycle, the first result after exactly ``latency`` cycles."""
    tb = ChunkSumTB(dut, seed=7, idle_prob=0.0, stall_prob=0.0)
    await tb.start()
    beats = tb.random_beats(64)
    tb.expect(beats)
    tb.src.send_nowait(beats)
    assert await tb.sink.wait_for(len(beats), timeout_cycles=4 * len(beats))
    tb.sb.check_done()
    ins, outs = tb.src.transfer_cycles, tb.sink.transfer_cycles
    assert ins == list(range(ins[0], ins[0] + len(beats))), "source not one beat per cycle"
    assert outs == [c + tb.model.latency for c in ins], (ins[:4], outs[:4])


@cocotb.test()
async def scoreboard_catches_errors(dut):
    """The checker must fail on a wrong, a missing and an extra item (it is not a no-op)."""
    tb = ChunkSumTB(dut, seed=9, idle_prob=0.2, stall_prob=0.2)
    await tb.start()
    beats = tb.random_beats(20)
    tb.expect(beats[:-1])  # one item fewer than sent: the DUT's last result is "extra"
    tb.sb.expected[3] = {"acc": tb.sb.expected[3]["acc"] + 1, "last": tb.sb.expected[3]["last"]}
    tb.src.send_nowait(beats)
    assert await tb.sink.wait_for(len(beats), timeout_cycles=400)
    try:
        tb.sb.check_done()
    except AssertionError as exc:
        assert "1 mismatches" in str(exc) and "1 extra" in str(exc), str(exc)
    else:
        raise AssertionError("scoreboard accepted a wrong result")
