"""cocotb side of :mod:`sim.bench`: time ``repeats`` calls of one layer on either path."""

from __future__ import annotations

import json
import time

import cocotb
import numpy as np

from model.accel import AccelConfig
from sim.engine_tb import golden_acc
from sim.fast import FastEngine
from sim.runner import sim_params


@cocotb.test()
async def bench(dut):
    p = sim_params()
    config = AccelConfig.from_dict(p["config"])
    rng = np.random.default_rng(0)
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    trits = rng.integers(-1, 2, (p["m"], p["k"])).astype(np.int8)
    eng = FastEngine(dut, config)
    await eng.start()
    total = 0
    times, counts = [], []
    for _ in range(p["repeats"]):
        xq = rng.integers(lo, hi + 1, (p["tokens"], p["k"])).astype(np.int8)
        t0 = time.perf_counter()
        acc, cycles = await eng.run_layer(xq, trits)
        times.append(time.perf_counter() - t0)
        counts.append(cycles)
        assert np.array_equal(acc, golden_acc(xq, trits))
        total += cycles
    dt = sum(times)
    steady = sum(counts[1:]) / sum(times[1:]) if len(times) > 1 else total / dt
    with open(p["out"], "w") as f:
        json.dump({"path": p["path"], "cycles": total, "seconds": dt,
                   "cycles_per_second": total / dt, "calls_per_second": p["repeats"] / dt,
                   "first_call_seconds": times[0],
                   "steady_cycles_per_second": steady}, f)
