"""cocotb tests of ``hw.array.MacArray`` alone (run by ``sim/test_array.py``).

The array has no streams: ``en`` freezes the pipeline, ``valid`` marks a beat, ``first``
restarts the accumulators. The driver works one phase after each rising edge (outputs read
back after the edge, inputs set up for the next one). Parameters: ``{"config": AccelConfig}``.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer

from model.accel import AccelConfig
from sim.runner import sim_params
from sim.streams import ClockedTB, PayloadCodec

CODE = {0: 0b00, 1: 0b01, -1: 0b11}


class ArrayTB(ClockedTB):
    def __init__(self, dut, seed):
        from hw.array import MacArray

        super().__init__(dut, seed=seed)
        self.config = AccelConfig.from_dict(sim_params()["config"])
        self.model = MacArray.from_config(self.config)
        cfg = self.config
        assert len(dut.x) == cfg.cols * cfg.act_bits, "x width: RTL != config"
        assert len(dut.trits) == 2 * cfg.rows * cfg.cols, "trits width: RTL != config"
        assert len(dut.acc) == cfg.rows * cfg.acc_width, "acc width: RTL != config"
        self.acc_codec = PayloadCodec(self.model.signature.members["acc"].shape)
        self.x_codec = PayloadCodec(self.model.signature.members["x"].shape)
        self.latency = self.model.latency
        self.np_rng = np.random.default_rng(seed)
        for s in (dut.en, dut.valid, dut.first, dut.x, dut.trits):
            s.value = 0

    def accs(self) -> list[int]:
        return self.acc_codec.unpack(int(self.dut.acc.value))

    def drive(self, *, en, valid, first, x, trits) -> None:
        self.dut.en.value = int(en)
        self.dut.valid.value = int(valid)
        self.dut.first.value = int(first)
        self.dut.x.value = self.x_codec.pack([int(v) for v in x])
        w = 0
        for i, t in enumerate(np.asarray(trits).reshape(-1).tolist()):
            w |= CODE[t] << (2 * i)
        self.dut.trits.value = w

    async def step(self) -> None:
        await RisingEdge(self.clk)
        await Timer(1, "ps")

    def random_beat(self):
        cfg = self.config
        lo, hi = -(1 << (cfg.act_bits - 1)), (1 << (cfg.act_bits - 1)) - 1
        return (self.np_rng.integers(lo, hi + 1, cfg.cols),
                self.np_rng.integers(-1, 2, (cfg.rows, cfg.cols)))

    async def dot(self, beats, *, bubble_prob=0.0, freeze_prob=0.0) -> np.ndarray:
        """Feed ``beats`` [(x, trits)] as one dot product (random bubbles and freezes), drain,
        return the expected accumulators."""
        want = np.zeros(self.config.rows, np.int64)
        i = 0
        drain = 0
        while drain < self.latency:
            if self.rng.random() < freeze_prob:        # en low: nothing may move
                x, t = self.random_beat()
                self.drive(en=0, valid=1, first=1, x=x, trits=t)
            elif i < len(beats) and self.rng.random() >= bubble_prob:
                x, t = beats[i]
                self.drive(en=1, valid=1, first=(i == 0), x=x, trits=t)
                want += np.asarray(t, np.int64) @ np.asarray(x, np.int64)
                i += 1
            else:                                      # a bubble (valid low)
                x, t = self.random_beat()
                self.drive(en=1, valid=0, first=self.rng.random() < 0.5, x=x, trits=t)
                if i == len(beats):
                    drain += 1
            await self.step()
        return want


@cocotb.test()
async def latency_is_exact(dut):
    """A beat presented with valid & en shows in acc after exactly ``latency`` enabled cycles."""
    tb = ArrayTB(dut, 1)
    await tb.start()
    await Timer(1, "ps")
    cfg = tb.config
    x = np.full(cfg.cols, 3)
    t = np.ones((cfg.rows, cfg.cols), int)
    tb.drive(en=1, valid=1, first=1, x=x, trits=t)
    await tb.step()
    for n in range(1, tb.latency + 2):
        if n < tb.latency:
            assert tb.accs() == [0] * cfg.rows, f"acc changed after {n} < latency cycles"
        else:
            assert tb.accs() == [3 * cfg.cols] * cfg.rows, f"acc wrong after {n} cycles"
        tb.drive(en=1, valid=0, first=0, x=x, trits=t)
        await tb.step()


@cocotb.test()
async def random_dot_products_with_bubbles_and_freezes(dut):
    tb = ArrayTB(dut, 2)
    await tb.start()
    await Timer(1, "ps")
    for n in range(40):
        kt = int(tb.np_rng.integers(1, 12))
        beats = [tb.random_beat() for _ in range(kt)]
        want = await tb.dot(beats, bubble_prob=0.3 * (n % 3 > 0), freeze_prob=0.3 * (n % 2))
        got = tb.accs()
        assert got == want.tolist(), f"dot {n} (kt={kt}): got {got}, want {want.tolist()}"


@cocotb.test()
async def extreme_values_fill_the_accumulator(dut):
    """x = -2**(b-1) with all trits -1 (and +1) over K = max_k: the proven acc bound."""
    tb = ArrayTB(dut, 3)
    await tb.start()
    await Timer(1, "ps")
    cfg = tb.config
    lo, hi = -(1 << (cfg.act_bits - 1)), (1 << (cfg.act_bits - 1)) - 1
    kt = cfg.max_k // cfg.cols
    for xv, tv in [(lo, -1), (lo, 1), (hi, 1), (hi, -1)]:
        beats = [(np.full(cfg.cols, xv), np.full((cfg.rows, cfg.cols), tv))] * kt
        want = await tb.dot(beats, bubble_prob=0.1)
        assert tb.accs() == want.tolist() == [xv * tv * kt * cfg.cols] * cfg.rows
