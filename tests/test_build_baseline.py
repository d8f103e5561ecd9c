"""Amaranth simulation of the int8 baseline array against numpy (exact)."""

import numpy as np
from amaranth.sim import Simulator

from hw.baseline import Int8MacArray


def _run(rows, cols, adder_stages, beats):
    dut = Int8MacArray(rows=rows, cols=cols, act_bits=8, acc_width=24, adder_stages=adder_stages)
    seen = []

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for x, w, first in beats + [(None, None, 0)] * dut.latency:
            if x is not None:
                ctx.set(dut.x, [int(v) for v in x])
                ctx.set(dut.weights, [int(v) for v in w.reshape(-1)])
            ctx.set(dut.valid, x is not None)
            ctx.set(dut.first, first)
            await ctx.tick()
            seen.append([ctx.get(dut.acc[r]) for r in range(rows)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen[-1], dut.latency


def test_baseline_matches_numpy():
    rng = np.random.default_rng(5)
    for rows, cols, stages in ((2, 4, 1), (3, 5, 0), (1, 3, 2)):
        beats, acc = [], np.zeros(rows, dtype=np.int64)
        for i in range(4):
            x = rng.integers(-128, 128, cols)
            w = rng.integers(-128, 128, (rows, cols))
            if i == 0:
                x[:], w[:] = -128, -128  # extreme corner
            beats.append((x, w, int(i in (0, 2))))
            acc = (0 if i in (0, 2) else acc) + w @ x
        got, _ = _run(rows, cols, stages, beats)
        assert got == acc.tolist()
