"""cocotb tests of ``hw.decoder.WeightDecoder`` alone (run by ``sim/test_decoder.py``).

Parameters (``$SIM_PARAMS``): ``{"config": AccelConfig dict}``.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np

from model.accel import AccelConfig
from sim.golden import TQ1_INVALID, TQ1_VALID, pack_trits, trit_from_code
from sim.runner import sim_params
from sim.scoreboard import Scoreboard
from sim.streams import ClockedTB, StreamSink, StreamSource, port_layout


def _component():
    from hw.decoder import WeightDecoder

    config = AccelConfig.from_dict(sim_params()["config"])
    return config, WeightDecoder.from_config(config)


class DecoderTB(ClockedTB):
    def __init__(self, dut, *, seed, idle_prob=0.0, stall_prob=0.0):
        super().__init__(dut, seed=seed)
        self.config, self.model = _component()
        self.n = self.config.trits_per_beat
        self.nbytes = self.config.bytes_per_beat
        assert len(dut.packed__payload) == 8 * self.nbytes, "bytes_per_beat: RTL != config"
        assert len(dut.trits__payload) == 2 * self.n, "trits_per_beat: RTL != config"
        self.sb = Scoreboard("trits")
        self.src = StreamSource(dut, "packed", self.clk, layout=port_layout(self.model, "packed"),
                                idle_prob=idle_prob, rng=random.Random(seed + 1))
        self.sink = StreamSink(dut, "trits", self.clk, layout=port_layout(self.model, "trits"),
                               stall_prob=stall_prob, rng=random.Random(seed + 2),
                               callback=self._got)

    def _got(self, item):
        self.sb.actual([trit_from_code(t["nz"] | t["neg"] << 1) for t in item])

    def send_trit_beats(self, beats):
        for beat in beats:
            self.sb.expect([int(t) for t in beat])
            self.src.send_nowait([pack_trits(beat, self.config.packing).tolist()])

    def stop(self):
        self.src._task.cancel()
        self.sink._task.cancel()


@cocotb.test()
async def random_beats_under_stalls(dut):
    """Seeded random and edge-case beats, idle cycles crossed with backpressure."""
    for i, (idle, stall) in enumerate([(0.0, 0.0), (0.5, 0.3), (0.2, 0.7)]):
        tb = DecoderTB(dut, seed=10 + i, idle_prob=idle, stall_prob=stall)
        await tb.start()
        rng = np.random.default_rng(10 + i)
        beats = [rng.integers(-1, 2, tb.n) for _ in range(150)]
        beats += [np.ones(tb.n, int), -np.ones(tb.n, int), np.zeros(tb.n, int)]
        tb.send_trit_beats(beats)
        assert await tb.sink.wait_for(len(beats), 30 * len(beats)), "decoder stalled"
        await tb.cycles(8)
        tb.sb.check_done()
        assert int(dut.error.value) == 0, "error flag set by a valid stream"
        tb.stop()


@cocotb.test()
async def every_byte_value(dut):
    """Exhaustive: every valid byte decodes per the spec; every invalid byte sets ``error``."""
    tb = DecoderTB(dut, seed=3, idle_prob=0.1, stall_prob=0.1)
    await tb.start()
    packing, per, nb = tb.config.packing, tb.config.trits_per_byte, tb.nbytes
    valid = TQ1_VALID if packing == "tq1" else [
        b for b in range(256) if all((b >> (2 * i)) & 3 != 3 for i in range(4))]
    invalid = TQ1_INVALID if packing == "tq1" else sorted(set(range(256)) - set(valid))
    # valid bytes, placed in byte 0 of a beat (other bytes encode zeros): decode by the spec
    zero = int(pack_trits(np.zeros(per, int), packing)[0])
    for b in valid:
        raw = [b] + [zero] * (nb - 1)
        if packing == "tq1":
            x, digits = b, []
            for _ in range(5):
                digits.append((3 * x) >> 8)
                x = (3 * x) & 0xFF
        else:
            digits = [(b >> (2 * i)) & 3 for i in range(4)]
        trits = ([d - 1 for d in digits] + [0] * (nb * per))[:tb.n]
        tb.sb.expect(trits)
        tb.src.send_nowait([raw])
    assert await tb.sink.wait_for(len(valid), 20 * len(valid))
    tb.sb.check_done()
    assert int(dut.error.value) == 0
    tb.stop()
    # each invalid byte, in each byte position in turn: error rises and stays until reset
    for j, b in enumerate(invalid):
        tb = DecoderTB(dut, seed=100 + j)
        await tb.start()
        assert int(dut.error.value) == 0, "reset did not clear error"
        raw = [zero] * nb
        raw[j % nb] = b
        tb.src.send_nowait([raw])
        assert await tb.sink.wait_for(1, 20)
        await tb.cycles(1)
        assert int(dut.error.value) == 1, f"invalid byte {b:#04x} not flagged"
        good = pack_trits(np.zeros(tb.n, int), packing).tolist()
        tb.src.send_nowait([good] * 3)
        assert await tb.sink.wait_for(4, 40)
        assert int(dut.error.value) == 1, "error flag is not sticky"
        tb.stop()
    await ClockedTB(dut).reset()
    assert int(dut.error.value) == 0


@cocotb.test()
async def line_rate(dut):
    """Unstalled: one beat per cycle in and out, output ``latency`` cycles after the input."""
    tb = DecoderTB(dut, seed=5)
    await tb.start()
    rng = np.random.default_rng(5)
    beats = [rng.integers(-1, 2, tb.n) for _ in range(100)]
    tb.send_trit_beats(beats)
    assert await tb.sink.wait_for(len(beats), 4 * len(beats))
    tb.sb.check_done()
    ins, outs = tb.src.transfer_cycles, tb.sink.transfer_cycles
    assert ins == list(range(ins[0], ins[0] + len(beats))), "input not at line rate"
    assert outs == [c + tb.model.latency for c in ins], (ins[:3], outs[:3])
    tb.stop()
