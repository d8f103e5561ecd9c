"""cocotb tests of ``hw.engine.BitLinearEngine`` (run by ``sim/test_engine.py``).

Parameters (``$SIM_PARAMS``)::

    {"config": AccelConfig dict, "shapes": [[M, K, T], ...], "seed": int}

Every accumulator is compared bit-exactly (``==``) with ``model/`` through the in-order
scoreboard, which also fails on a missing or an extra result.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from model.accel import AccelConfig
from sim.engine_tb import EngineTB
from sim.runner import sim_params

STALL_MIXES = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.5), (0.5, 0.5), (0.15, 0.8)]


def _params():
    p = sim_params()
    return AccelConfig.from_dict(p["config"]), p


def _random_layer(rng, config, m, k, t, *, density=0.66):
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    xq = rng.integers(lo, hi + 1, size=(t, k)).astype(np.int8)
    trits = rng.choice(np.array([-1, 0, 1], np.int8), size=(m, k),
                       p=[density / 2, 1 - density, density / 2])
    return xq, trits


@cocotb.test()
async def random_layers_under_stalls(dut):
    """Seeded random layers of the given shapes, each under a different stall mix."""
    config, p = _params()
    rng = np.random.default_rng(p.get("seed", 1))
    tb = EngineTB(dut, config, seed=p.get("seed", 1))
    await tb.start()
    for i, (m, k, t) in enumerate(p["shapes"]):
        idle, stall = STALL_MIXES[(i + 1) % len(STALL_MIXES)]
        tb.set_stalls(idle, stall)
        xq, trits = _random_layer(rng, config, m, k, t)
        await tb.run_layer(xq, trits)
        dut._log.info("M=%d K=%d T=%d ok (idle %.2f, backpressure %.2f)", m, k, t, idle, stall)
    assert int(dut.error.value) == 0, "error flag set by valid streams"
    tb.stop()


@cocotb.test()
async def edge_cases(dut):
    """All +1 / -1 / 0 weights, extreme activations, M or K of 1, K = max_k boundary chunk."""
    config, p = _params()
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    tb = EngineTB(dut, config, seed=2, idle_prob=0.2, stall_prob=0.3)
    await tb.start()
    rng = np.random.default_rng(2)
    r, c = config.rows, config.cols
    m, k = 2 * r + 1, 3 * c + 1
    cases = {
        "all +1, x=lo": (np.full((2, k), lo), np.ones((m, k))),
        "all -1, x=lo": (np.full((2, k), lo), -np.ones((m, k))),
        "all -1, x=hi": (np.full((2, k), hi), -np.ones((m, k))),
        "all +1, x=hi": (np.full((1, k), hi), np.ones((m, k))),
        "all 0": (rng.integers(lo, hi + 1, (2, k)), np.zeros((m, k))),
        "x=0": (np.zeros((1, k)), rng.integers(-1, 2, (m, k))),
        "alternating extremes": (np.tile([lo, hi], (2, k))[:, :k], rng.integers(-1, 2, (m, k))),
        "M=1 K=1": (np.full((3, 1), lo), -np.ones((1, 1))),
        "M=1": (rng.integers(lo, hi + 1, (2, k)), rng.integers(-1, 2, (1, k))),
        "K=1": (rng.integers(lo, hi + 1, (2, 1)), rng.integers(-1, 2, (m, 1))),
        "M=R K=C": (rng.integers(lo, hi + 1, (2, c)), rng.integers(-1, 2, (r, c))),
        "M=R+1 K=C-1": (rng.integers(lo, hi + 1, (1, max(1, c - 1))),
                        rng.integers(-1, 2, (r + 1, max(1, c - 1)))),
        "K=max_k, x=lo, all -1": (np.full((1, config.max_k), lo),
                                  -np.ones((r + 1, config.max_k))),
    }
    for name, (xq, trits) in cases.items():
        await tb.run_layer(np.asarray(xq, np.int8), np.asarray(trits, np.int8))
        dut._log.info("edge case %s ok", name)
    assert int(dut.error.value) == 0
    tb.stop()


@cocotb.test()
async def cycles_match_model(dut):
    """Unstalled: measured cycles == model.accel_cycles.cycles exactly, one beat per cycle."""
    from model.accel_cycles import cycles

    config, p = _params()
    rng = np.random.default_rng(3)
    tb = EngineTB(dut, config, seed=3)
    await tb.start()
    r, c = config.rows, config.cols
    tpb = config.tokens_per_beat
    shapes = [tuple(s) for s in p["shapes"]] + [(1, 1, 1), (r, c, 1), (r + 1, c * (r - 1) + 1, 2),
                                                (3 * r - 1, 1, 2), (r, c * r, 3)]
    if tpb > 1:  # whole groups, a last smaller group, a last group of one, one token only
        shapes += [(r + 1, c * r * tpb, tpb), (2 * r, 3 * c, 2 * tpb - 1), (r, 2 * c, tpb + 1),
                   (3 * r + 1, c + 1, 1)]
    for m, k, t in shapes:
        xq, trits = _random_layer(rng, config, m, k, t)
        w0 = len(tb.weights.transfer_cycles)
        measured = await tb.run_layer(xq, trits)
        want = cycles(config, m, k, t)
        assert measured == want, f"M={m} K={k} T={t}: measured {measured} cycles, model {want}"
        w = tb.weights.transfer_cycles[w0:]
        assert len(w) == len(config.token_groups(t)) * config.beats(m, k)
        if config.k_tiles(k) >= r * tpb:  # no drain stalls: one beat per cycle
            assert w == list(range(w[0], w[0] + len(w))), f"M={m} K={k}: weight stream stalled"
        dut._log.info("M=%d K=%d T=%d: %d cycles == model", m, k, t, measured)
        await tb.cycles(2)  # idle gap between commands
    tb.stop()


@cocotb.test()
async def malformed_streams_and_recovery(dut):
    """Invalid codes set the sticky error; a truncated stream makes the engine wait (the
    testbench detects it by timeout); bad commands set error; reset recovers every time."""
    config, _ = _params()
    rng = np.random.default_rng(4)
    r, c = config.rows, config.cols
    m, k = 2 * r + 1, 2 * c + 3

    async def clean_layer(tb, seed, error=0):
        xq, trits = _random_layer(np.random.default_rng(seed), config, m, k, 2)
        await tb.run_layer(xq, trits)
        assert int(dut.error.value) == error, "error flag wrong after a valid layer"

    tb = EngineTB(dut, config, seed=4, idle_prob=0.2, stall_prob=0.2)
    await tb.start()
    assert int(dut.error.value) == 0
    # 1. invalid code in one beat: error rises, stays; all results still come out
    from sim.golden import TQ1_INVALID

    xq, trits = _random_layer(rng, config, m, k, 1)
    from sim.engine_tb import layer_stream

    stream = layer_stream(trits, config).copy()
    bad = TQ1_INVALID[5] if config.packing == "tq1" else 0xFF
    stream[stream.shape[0] // 2, 0] = bad
    tb.queue_layer(xq, trits, weights=stream, expect=False)
    assert await tb.result.wait_for(m, 40 * stream.shape[0] + 200), "engine hung on a bad code"
    assert int(dut.error.value) == 1, "invalid weight code not flagged"
    await tb.cycles(5)
    assert len(tb.result.items) == m, "extra results after a layer with a bad code"
    tb.discard()
    await clean_layer(tb, 40, error=1)  # still computes; error stays sticky
    dut._log.info("invalid code flagged")
    await tb.abort()
    assert int(dut.error.value) == 0, "reset did not clear error"
    await clean_layer(tb, 41)

    # 2. truncated weight stream: no final results; the testbench must notice by timeout
    xq, trits = _random_layer(rng, config, m, k, 1)
    stream = layer_stream(trits, config)
    tb.queue_layer(xq, trits, weights=stream[:-1], expect=False)
    n0 = len(tb.result.items)
    got_all = await tb.result.wait_for(n0 + m, 40 * stream.shape[0] + 200)
    assert not got_all, "engine finished a layer with a missing weight beat"
    assert int(dut.busy.value) == 1, "engine not waiting for the missing beat"
    assert int(dut.error.value) == 0
    dut._log.info("truncated stream: engine waits (%d of %d results)",
                  len(tb.result.items) - n0, m)
    await tb.abort()
    assert int(dut.busy.value) == 0
    await clean_layer(tb, 42)

    # 3. commands that do not fit: dropped, error set, no results
    for bad_cmd in ({"m": 0, "k": k, "tokens": 1}, {"m": m, "k": 0, "tokens": 1},
                    {"m": m, "k": config.max_k + 1, "tokens": 1},
                    {"m": config.max_m + 1, "k": k, "tokens": 1},
                    {"m": m, "k": k, "tokens": 0}):
        if bad_cmd["m"] > 0xFFFF or bad_cmd["k"] > 0xFFFF:
            continue
        await tb.abort()
        tb.cmd.send_nowait([bad_cmd])
        await tb.cmd.wait_empty()
        await tb.cycles(3 * c + 10)
        assert int(dut.error.value) == 1, f"command {bad_cmd} not flagged"
        assert int(dut.busy.value) == 0, f"command {bad_cmd} started"
        assert not tb.result.items, f"command {bad_cmd} produced results"
    await tb.abort()
    await clean_layer(tb, 43)
    tb.stop()


@cocotb.test()
async def reset_mid_layer(dut):
    """Reset at random points inside a layer, then a correct layer must come out exactly."""
    config, _ = _params()
    rng = np.random.default_rng(5)
    r, c = config.rows, config.cols
    tb = EngineTB(dut, config, seed=5, idle_prob=0.2, stall_prob=0.3)
    await tb.start()
    m, k = 3 * r + 2, 3 * c + 5
    for trial in range(6):
        xq, trits = _random_layer(rng, config, m, k, 2)
        tb.queue_layer(xq, trits, expect=False)
        wait = int(rng.integers(1, 2 * config.beats(m, k)))
        for _ in range(wait):
            await RisingEdge(tb.clk)
        await tb.abort(cycles=1 + trial % 3)
        assert int(dut.busy.value) == 0, "engine busy after reset"
        xq, trits = _random_layer(rng, config, m, k, 2)
        await tb.run_layer(xq, trits)
        assert int(dut.error.value) == 0
        dut._log.info("reset after %d cycles, next layer ok", wait)
    tb.stop()
