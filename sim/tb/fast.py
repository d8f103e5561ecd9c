"""cocotb tests of the whole-layer fast path :class:`sim.fast.FastEngine` on
:class:`sim.fast_top.FastTop` (run by ``sim/test_fast.py``).

Parameters (``$SIM_PARAMS``): ``{"config": AccelConfig dict, "shapes": [[M, K, T], ...]}``.
"""

from __future__ import annotations

import cocotb
import numpy as np

from model.accel import AccelConfig
from model.accel_cycles import cycles
from sim.engine_tb import golden_acc
from sim.fast import FastEngine
from sim.runner import sim_params


def _rand(rng, config, m, k, t):
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    return (rng.integers(lo, hi + 1, (t, k)).astype(np.int8),
            rng.integers(-1, 2, (m, k)).astype(np.int8))


@cocotb.test()
async def layers_bit_exact_and_cycle_exact(dut):
    """Arbitrary (M, K, T) per call in one build: acc == model, cycles == cycle model."""
    config = AccelConfig.from_dict(sim_params()["config"])
    eng = FastEngine(dut, config)
    await eng.start()
    rng = np.random.default_rng(11)
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    r, c = config.rows, config.cols
    layers = [_rand(rng, config, m, k, t) for m, k, t in sim_params()["shapes"]]
    layers += [
        (np.full((2, config.max_k), lo, np.int8), -np.ones((r + 3, config.max_k), np.int8)),
        (np.full((1, 37), hi, np.int8), np.ones((9, 37), np.int8)),
        (np.full((1, 1), lo, np.int8), np.ones((1, 1), np.int8)),
        _rand(rng, config, 1, 3 * c + 1, 3),
        _rand(rng, config, 2 * r + 1, 1, 1),
    ]
    for xq, trits in layers + layers[:2]:  # the repeats hit the resident-weight cache
        acc, n = await eng.run_layer(xq, trits)
        want = golden_acc(xq, trits)
        assert acc.dtype == np.int32 and acc.shape == want.shape
        bad = np.argwhere(acc != want)
        assert bad.size == 0, (f"{len(bad)} accumulators differ, first {bad[:1].tolist()}: "
                               f"got {acc.reshape(-1)[:6]} want {want.reshape(-1)[:6]}")
        (t, k), m = xq.shape, trits.shape[0]
        assert n == cycles(config, m, k, t), f"M={m} K={k} T={t}: {n} != model"
        dut._log.info("fast path M=%d K=%d T=%d: %d cycles == model", m, k, t, n)


@cocotb.test()
async def bad_calls_raise(dut):
    """Shapes that do not fit raise ValueError before touching the DUT."""
    config = AccelConfig.from_dict(sim_params()["config"])
    eng = FastEngine(dut, config)
    await eng.start()
    for xq, trits, what in [
        (np.zeros((1, config.max_k + 1), np.int8), np.zeros((1, config.max_k + 1), np.int8),
         "max_k"),
        (np.zeros((1, 4), np.int8), np.zeros((1, 5), np.int8), "need xq"),
        (np.zeros((1, 4), np.int8), np.full((1, 4), 2, np.int8), "trits"),
        (np.full((1, 4), 1 << config.act_bits, np.int16), np.zeros((1, 4), np.int8),
         "activation codes"),
    ]:
        try:
            await eng.run_layer(xq, trits)
        except ValueError as exc:
            assert what in str(exc), str(exc)
        else:
            raise AssertionError(f"no ValueError for {what}")
