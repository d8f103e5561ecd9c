"""Unit tests of the datapath blocks: trit code, ternary lane, row, MAC array."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.array import MacArray
from hw.pe import TernaryLane
from hw.row import Row, register_levels, tree_depth
from hw.trit import trit_code, trit_value

CODES = {0: {"nz": 0, "neg": 0}, 1: {"nz": 1, "neg": 0}, -1: {"nz": 1, "neg": 1}}


def test_trit_code_round_trip_and_invalid():
    for v in (-1, 0, 1):
        assert trit_value(trit_code(v)) == v
    with pytest.raises(ValueError):
        trit_value(0b10)
    with pytest.raises(ValueError):
        trit_code(2)


@pytest.mark.parametrize("act_bits", [4, 8])
def test_lane_exhaustive(act_bits):
    lane = TernaryLane(act_bits=act_bits)
    seen = []

    async def testbench(ctx):
        for x in range(-(1 << (act_bits - 1)), 1 << (act_bits - 1)):
            for nz in (0, 1):
                for neg in (0, 1):
                    ctx.set(lane.x, x)
                    ctx.set(lane.trit, {"nz": nz, "neg": neg})
                    want = (-x if neg else x) if nz else 0   # invalid code nz=0,neg=1 -> 0
                    y, corr = ctx.get(lane.y), ctx.get(lane.corr)
                    seen.append(y + corr == want and corr == (nz & neg))
    sim = Simulator(lane)
    sim.add_testbench(testbench)
    sim.run()
    assert len(seen) == 4 << act_bits and all(seen)


@pytest.mark.parametrize("kwargs", [
    {"act_bits": 1}, {"act_bits": 8.0}, {"act_bits": True}])
def test_lane_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        TernaryLane(**kwargs)


def test_register_levels_spread():
    for cols in (1, 2, 3, 8, 16, 32, 33):
        depth = tree_depth(cols)
        for stages in range(depth + 1):
            levels = register_levels(cols, stages)
            assert len(levels) == stages and all(1 <= lv <= depth for lv in levels)
            # the accumulator adder counts as a level: with stages for at least half the
            # levels, the last register follows the tree's last level (the accumulator's
            # adder has a stage of its own)
            if stages and 2 * stages >= depth:
                assert levels[-1] == depth
    # the board's 8 columns with two stages: after levels 2 and 3
    assert register_levels(8, 2) == [2, 3] and register_levels(8, 1) == [2]


def _row_reference(beats, latency):
    """Cycle model of a row: acc after each cycle, beats = [(en, valid, first, dot)]."""
    pipe = [(0, 0, 0)] * (latency - 1)
    acc, out = 0, []
    for en, valid, first, dot in beats:
        if en:
            pipe.append((valid, first, dot))
            v, f, d = pipe.pop(0)
            if v:
                acc = (0 if f else acc) + d
        out.append(acc)
    return out


@pytest.mark.parametrize("cols,act_bits,stages", [
    (1, 8, 0), (3, 8, 0), (8, 8, 0), (8, 4, 3), (16, 8, 1), (16, 4, 2), (5, 8, 3)])
def test_row_against_cycle_reference(cols, act_bits, stages):
    acc_width = 24
    row = Row(cols=cols, act_bits=act_bits, acc_width=acc_width, adder_stages=stages)
    assert row.latency == stages + 1
    rng = random.Random(cols * 100 + stages)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    beats, stimuli = [], []
    for i in range(300):
        x = [rng.choice((lo, hi, rng.randint(lo, hi))) for _ in range(cols)]
        w = [rng.choice((-1, 0, 1)) for _ in range(cols)]
        en, valid, first = rng.random() < 0.8, rng.random() < 0.8, (i % 7 == 0)
        stimuli.append((en, valid, first, x, w))
        beats.append((en, valid, first, sum(a * b for a, b in zip(x, w, strict=True))))
    got = []

    async def testbench(ctx):
        for en, valid, first, x, w in stimuli:
            ctx.set(row.en, en)
            ctx.set(row.valid, valid)
            ctx.set(row.first, first)
            ctx.set(row.x, x)
            ctx.set(row.trits, [CODES[v] for v in w])
            await ctx.tick()
            got.append(ctx.get(row.acc))
    sim = Simulator(row)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert got == _row_reference(beats, row.latency)


def test_row_rejects_bad_parameters():
    with pytest.raises(ValueError):
        Row(cols=8, act_bits=8, acc_width=16, adder_stages=4)   # tree depth is 3
    with pytest.raises(ValueError):
        Row(cols=0, act_bits=8, acc_width=16)
    with pytest.raises(ValueError):
        Row(cols=8, act_bits=8, acc_width=8)


@pytest.mark.parametrize("rows,cols,act_bits,stages", [(1, 8, 8, 0), (4, 16, 4, 1), (3, 5, 8, 2)])
def test_array_dot_products(rows, cols, act_bits, stages):
    """Accumulate a few beats per dot product on every row; check the accumulators exactly."""
    arr = MacArray(rows=rows, cols=cols, act_bits=act_bits, acc_width=20, adder_stages=stages)
    assert arr.latency == stages + 1 and arr.macs_per_cycle == rows * cols
    rng = np.random.default_rng(rows * cols)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    products = []
    for _ in range(6):
        n = int(rng.integers(1, 5))
        x = rng.integers(lo, hi + 1, size=(n, cols))
        x[0, :] = lo                                     # extreme activations
        w = rng.integers(-1, 2, size=(n, rows, cols))
        products.append((x, w, np.einsum("nc,nrc->r", x, w)))
    got = []

    async def testbench(ctx):
        ctx.set(arr.en, 1)
        for x, w, _ in products:
            for i in range(len(x)):
                ctx.set(arr.valid, 1)
                ctx.set(arr.first, i == 0)
                ctx.set(arr.x, [int(v) for v in x[i]])
                ctx.set(arr.trits, [CODES[int(v)] for v in w[i].reshape(-1)])
                await ctx.tick()
            ctx.set(arr.valid, 0)
            for _ in range(arr.latency - 1):
                await ctx.tick()
            got.append([ctx.get(arr.acc[r]) for r in range(rows)])
    sim = Simulator(arr)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert got == [list(map(int, ref)) for _, _, ref in products]
