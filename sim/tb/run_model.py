"""cocotb side of ``sim.run_model --backend cocotb-*`` (:func:`sim.cosim.run_cosim`).

The generation loop runs inside the cocotb test process: the golden model's ``matmul`` hook is a
blocking function (it is called from inside ``Transformer.step``), so the loop runs in a
:func:`cocotb.task.bridge` thread and each BitLinear call blocks on :func:`cocotb.task.resume`
of the sim engineers' fast whole-layer driver
``sim.fast.FastEngine(dut, config).run_layer(xq, trits) -> (acc, cycles)`` on the
``sim.fast_top.FastTop`` build (the engine with its weight, activation and result memories), or,
on a build of the bare ``BitLinearEngine``, its stream path (``sim.engine_tb.EngineTB``).
Progress (``token n calls``) is rewritten to the ``progress`` file after every call.

Parameters come from ``sim.runner.sim_params()`` (``$SIM_PARAMS``, set by
``sim.cosim.run_cosim``)::

    {"checkpoint": path, "prompt": [byte, ...], "tokens": n, "out": path, "mode": "generate",
     "progress": path or absent, "accel_config": {...}}

``mode`` is ``generate`` (greedy generation, one KV-cache step per token) or ``forward`` (one full
forward pass over the prompt). Results go to ``out`` (``.npz``): every call's step, layer name,
size, accumulators and measured cycles, plus the tokens (:func:`sim.generation.save_result`).
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.task import bridge, resume

from model.accel import AccelConfig


@cocotb.test()
async def run_model(dut):
    """Generate (or run one forward pass) with every BitLinear on the DUT."""
    from model import checkpoint as ckpt
    from sim.fast import FastEngine
    from sim.generation import generate, run_forward, save_result
    from sim.runner import sim_params

    job = sim_params()
    config = AccelConfig.from_dict(job["accel_config"])
    engine = FastEngine(dut, config)
    await engine.start()  # clock and reset
    run_layer = resume(engine.run_layer)
    log = dut._log

    def backend(name, xq, trits):
        acc, cycles = run_layer(np.asarray(xq), np.asarray(trits))
        return np.asarray(acc, dtype=np.int32), int(cycles)

    state = {"token": 0, "calls": 0}
    n_tokens = int(job["tokens"])

    def report():
        # the host (sim.cosim.run_cosim) polls this file to show progress on its console
        if job.get("progress"):
            with open(job["progress"], "w") as f:
                f.write(f"{state['token']} {n_tokens} {state['calls']}\n")

    def progress(i, n):
        state["token"] = i
        report()
        log.info("run_model: token %d/%d", i, n)

    def counted(name, xq, trits):
        out = backend(name, xq, trits)
        state["calls"] += 1
        report()
        return out

    def blocking():
        ck = ckpt.load(job["checkpoint"])
        if job.get("mode", "generate") == "forward":
            return run_forward(ck, job["prompt"], counted, config)
        return generate(ck, job["prompt"], n_tokens, counted, config, progress)

    res = await bridge(blocking)()
    save_result(job["out"], res)

