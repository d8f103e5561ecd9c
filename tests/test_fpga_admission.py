"""fpga.admission.RunAdmission in the Amaranth simulator against the fit rule written out in
Python: m * tokens results, tokens * ceil(k/C) activation rows and wbase + ceil(m/R) *
ceil(k/C) * bytes_per_beat weight bytes must each fit their memory."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fpga.admission import RunAdmission
from model.accel import AccelConfig


def fits(cfg, wb, ar, rd, m, k, t, wbase):
    kt, mt = -(-k // cfg.cols), -(-m // cfg.rows)
    return m * t <= rd and t * kt <= ar and wbase + mt * kt * cfg.bytes_per_beat <= wb


def _cases(cfg, wb, ar, rd, rng, n):
    edges = []
    # each limit at its edge and one past it, alone
    for t in (1, 2, rd // 2, rd, rd + 1):
        edges.append((1, 1, t, 0))
    for m in (1, cfg.rows, cfg.rows + 1, min(rd, cfg.max_m)):
        edges.append((m, 1, 1, 0))
    for m in (rd // 2, rd // 3, rd // 4):                # m * tokens exactly at the limit
        if m <= cfg.max_m and rd // m <= ar:
            edges += [(m, 1, rd // m, 0), (m, 1, rd // m + 1, 0)]
    kt_fit = ar                                      # rows per token when one token
    for k in (1, cfg.cols, cfg.cols + 1, min(cfg.max_k, kt_fit * cfg.cols)):
        edges.append((1, k, 1, 0))
    for t in (ar // 2, ar // 2 + 1):
        edges.append((1, 2 * cfg.cols, t, 0))       # two rows per token
    layer = cfg.beats(4 * cfg.rows, 2 * cfg.cols) * cfg.bytes_per_beat
    for wbase in (0, wb - layer, wb - layer + 8, wb - 8):
        wbase -= wbase % 8
        if 0 <= wbase < wb:
            edges.append((4 * cfg.rows, 2 * cfg.cols, 1, wbase))
    rand = []
    for _ in range(n):
        m = int(rng.integers(1, cfg.max_m + 1))
        k = int(rng.integers(1, cfg.max_k + 1))
        t = int(rng.integers(1, rd + 3))
        wbase = int(rng.integers(0, wb // 8)) * 8
        rand.append((m, k, t, wbase))
    # tokens far beyond every memory (the loop stops at the limit, not after 65535 tokens)
    rand.append((cfg.max_m, cfg.max_k, 65535, wb - 8))
    return edges + rand


@pytest.mark.parametrize("cfg, wb, ar, rd", [
    (AccelConfig(rows=2, cols=4, max_k=64, max_m=32), 512, 16, 48),     # C, B powers of two
    (AccelConfig(rows=3, cols=5, max_k=60, max_m=40, adder_stages=0), 504, 12, 40),
    (AccelConfig(rows=5, cols=8, max_k=128, max_m=64, adder_stages=2), 1024, 32, 64),  # board
    (AccelConfig(rows=4, cols=16, max_k=256, max_m=64), 4096, 16, 100),  # 13-byte beats
], ids=["2x4", "3x5", "5x8", "4x16"])
def test_admission_matches_the_fit_rule(cfg, wb, ar, rd):
    rng = np.random.default_rng(cfg.rows * 100 + cfg.cols)
    dut = RunAdmission(config=cfg, weight_bytes=wb, act_rows=ar, result_depth=rd)
    cases = _cases(cfg, wb, ar, rd, rng, 60)
    seen = {True: 0, False: 0}

    async def tb(ctx):
        for m, k, t, wbase in cases:
            for name, v in (("m", m), ("k", k), ("tokens", t), ("wbase", wbase)):
                ctx.set(getattr(dut, name), v)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            cycles = 1
            while not ctx.get(dut.done):
                assert not ctx.get(dut.fits)
                assert cycles <= dut.max_cycles(m, k, min(t, rd + 2)), (m, k, t, wbase)
                await ctx.tick()
                cycles += 1
            want = fits(cfg, wb, ar, rd, m, k, t, wbase)
            assert bool(ctx.get(dut.fits)) == want, (m, k, t, wbase)
            if want:
                assert cycles <= dut.max_cycles(m, k, t)
            seen[want] += 1
            await ctx.tick()
            assert not ctx.get(dut.done)      # one pulse per decision

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen[True] >= 8 and seen[False] >= 8, seen


def test_admission_parameters():
    cfg = AccelConfig(rows=2, cols=4, max_k=64, max_m=32)
    for bad in (0, -1, True, 2.5):
        with pytest.raises((TypeError, ValueError), match="weight_bytes"):
            RunAdmission(config=cfg, weight_bytes=bad, act_rows=4, result_depth=4)
