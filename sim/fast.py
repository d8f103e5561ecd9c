"""Whole-layer co-simulation at near native Verilator speed: :class:`FastEngine`.

Build (in the pytest / host process)::

    from sim.fast import build_fast_engine
    build = build_fast_engine(config)          # SimBuild of sim.fast_top.FastTop, cached
    build.run("my_pkg.cocotb_module", params={"config": config.to_dict()})

Use (in the cocotb test module)::

    from sim.fast import FastEngine
    engine = FastEngine(dut, config)           # config: AccelConfig (default: $SIM_PARAMS)
    await engine.start()                       # clock + reset
    acc, cycles = await engine.run_layer(xq, trits)   # xq (T, K) int8, trits (M, K) in {-1,0,1}

``acc`` is the int32 ``(T, M)`` product ``xq @ trits.T`` computed by the RTL; ``cycles`` is the
hardware-counted number of rising edges from the ``cmd`` transfer to the final ``result``
transfer (the quantity ``model.accel_cycles.cycles`` predicts). Any ``(M, K)`` that fits the
config works in every call; a layer's packed weights stay resident in the weight memory
(keyed by the trit matrix), so calling the same layer again (one call per generated token)
costs only the activation writes and the result reads.

If ``dut`` is the bare ``BitLinearEngine`` instead of :class:`sim.fast_top.FastTop`, the same API
drives its streams cycle by cycle through :class:`sim.engine_tb.EngineTB` (slow path, unstalled,
results checked against ``model/`` as they arrive).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from cocotb.triggers import First, RisingEdge, Timer

from model.accel import AccelConfig
from model.packing import results_matrix

__all__ = ["FastEngine", "build_fast_engine", "FAST_TOPLEVEL"]

FAST_TOPLEVEL = "fast_engine"


def build_fast_engine(config: AccelConfig, *, weight_depth: int = 16384, act_depth: int = 4096,
                      result_depth: int = 16384):
    """The cached :class:`sim.runner.SimBuild` of :class:`sim.fast_top.FastTop` for ``config``.

    Raises :class:`sim.runner.SimulatorUnavailable` when the simulator is missing.
    """
    from sim.fast_top import FastTop
    from sim.runner import SimBuild

    top = FastTop(config=config, weight_depth=weight_depth, act_depth=act_depth,
                  result_depth=result_depth)
    key = f"{config.slug}-w{weight_depth}a{act_depth}r{result_depth}-v2"
    return SimBuild(top, dut=FAST_TOPLEVEL, key=key, strip_memory_init=True)


def _config_from_env() -> AccelConfig:
    params = json.loads(os.environ.get("SIM_PARAMS") or "{}")
    if "config" in params:
        return AccelConfig.from_dict(params["config"])
    job = os.environ.get("RUN_MODEL_JOB")
    if job:
        with open(job) as f:
            return AccelConfig.from_dict(json.load(f)["accel_config"])
    raise ValueError("FastEngine needs a config: pass one or set $SIM_PARAMS {'config': ...}")


class FastEngine:
    """Run whole BitLinear layers on a simulated engine.

    Parameters
    ----------
    dut : cocotb handle
        A :class:`sim.fast_top.FastTop` top level (fast path) or a bare ``BitLinearEngine``
        (stream path).
    config : AccelConfig, optional
        Defaults to ``$SIM_PARAMS["config"]`` (or ``$RUN_MODEL_JOB["accel_config"]``).
    timeout_cycles : int, optional
        Cycles a call may take beyond ``4 *`` its cycle-model estimate before it fails.
    """

    def __init__(self, dut, config: AccelConfig | None = None, *, timeout_cycles: int = 10000):
        self.dut = dut
        self.config = config or _config_from_env()
        self.timeout_cycles = timeout_cycles
        self.fast = hasattr(dut, "wmem")
        self.calls = 0
        self._tb = None
        self._resident: dict[str, tuple[int, int]] = {}   # trits digest -> (base, beats)
        self._next_base = 0
        if self.fast:
            self._check_widths()
        else:
            from sim.engine_tb import EngineTB

            self._tb = EngineTB(dut, self.config, seed=0)

    # -- set-up ------------------------------------------------------------------------------
    def _check_widths(self) -> None:
        cfg, dut = self.config, self.dut
        want = {"wmem": 8 * cfg.bytes_per_beat, "amem": cfg.act_bits * cfg.cols, "rmem": 33}
        for name, width in want.items():
            got = len(getattr(dut, name)[0])
            if got != width:
                raise ValueError(f"{name} words are {got} bits in the RTL, the config implies "
                                 f"{width}: wrong config for this build")
        self.weight_depth = len(dut.wmem)
        self.act_depth = len(dut.amem)
        self.result_depth = len(dut.rmem)

    async def start(self) -> None:
        """Start the clock and reset the DUT (call once per cocotb test)."""
        from sim.streams import ClockedTB

        if self._tb is not None:
            await self._tb.start()
            return
        self.dut.start.value = 0
        self._clk = ClockedTB(self.dut)
        await self._clk.start()

    # -- one call ----------------------------------------------------------------------------
    def _load_weights(self, trits: np.ndarray) -> tuple[int, int]:
        from sim.engine_tb import layer_stream

        digest = hashlib.sha1(trits.tobytes() + repr(trits.shape).encode()).hexdigest()
        if digest in self._resident:
            return self._resident[digest]
        stream = layer_stream(trits, self.config)
        n = stream.shape[0]
        if n > self.weight_depth:
            raise ValueError(f"layer needs {n} weight beats, the build's wmem holds "
                             f"{self.weight_depth}: build with a larger weight_depth")
        if self._next_base + n > self.weight_depth:  # full: evict every resident layer
            self._resident.clear()
            self._next_base = 0
        base = self._next_base
        wmem = self.dut.wmem
        for i, row in enumerate(stream):
            wmem[base + i].value = int.from_bytes(row.tobytes(), "little")
        self._resident[digest] = (base, n)
        self._next_base += n
        return base, n

    async def run_layer(self, xq, trits) -> tuple[np.ndarray, int]:
        """Compute ``acc = xq @ trits.T`` on the DUT.

        Parameters
        ----------
        xq : array (T, K) of int
            Activation codes in ``[-2**(act_bits-1), 2**(act_bits-1) - 1]``.
        trits : array (M, K) of int
            Ternary weights in ``{-1, 0, 1}``.

        Returns
        -------
        acc : ndarray (T, M) int32
        cycles : int
            ``cmd`` transfer to final ``result`` transfer, counted by the hardware (fast path)
            or by the testbench (stream path).

        Raises
        ------
        ValueError
            Bad shapes or values, or a layer that does not fit the config / the memories.
        AssertionError
            The DUT timed out, raised ``error``, or returned a malformed result stream.
        """
        from sim.engine_tb import check_layer_args

        cfg = self.config
        xq, trits, t, m, k = check_layer_args(cfg, xq, trits)
        self.calls += 1
        if self._tb is not None:
            n0 = len(self._tb.result.items)
            cycles = await self._tb.run_layer(xq, trits)
            got = np.array([r["acc"] for r in self._tb.result.items[n0:]], dtype=np.int32)
            return results_matrix(got, cfg, m, t), cycles
        kt = cfg.k_tiles(k)
        if t * kt > self.act_depth or t * m > self.result_depth:
            raise ValueError(f"T={t} x M={m} x K={k} exceeds the build's act/result memories "
                             f"({self.act_depth} chunks, {self.result_depth} results)")
        base, beats = self._load_weights(trits)
        from sim.engine_tb import EngineTB

        words = EngineTB.act_words_of(xq, cfg)
        amem = self.dut.amem
        for i, w in enumerate(words):
            amem[i].value = w
        dut = self.dut
        dut.m.value, dut.k.value, dut.tokens.value = m, k, t
        dut.beats.value = beats
        dut.w_base.value = base
        dut.n_act.value, dut.n_results.value = t * kt, t * m
        await RisingEdge(dut.clk)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await Timer(1, "ps")  # past the edge: done now reads its cleared value
        budget = 4 * (t * beats + t * m + 2 * cfg.rows + 20) + self.timeout_cycles
        timer = Timer(budget * self._clk.period_ns, "ns")
        if int(dut.done.value) == 0:
            fired = await First(RisingEdge(dut.done), timer)
            if fired is timer:
                raise AssertionError(
                    f"FastEngine: no done after {budget} cycles for M={m} K={k} T={t} "
                    f"(error={int(dut.error.value)}, busy={int(dut.busy.value)})")
        await Timer(1, "ps")
        if int(dut.error.value):
            raise AssertionError(f"engine raised error during M={m} K={k} T={t}")
        rmem = dut.rmem
        raw = np.array([int(rmem[i].value) for i in range(t * m)], dtype=np.int64)
        last = (raw >> 32) & 1
        want_last = np.zeros((t, m), np.int64)
        want_last[:, -1] = 1
        if not np.array_equal(last, want_last.reshape(-1)):
            raise AssertionError("result 'last' flags are not on each token's final row")
        acc = (raw & 0xFFFFFFFF).astype(np.uint32).view(np.int32).reshape(t, m)
        return acc, int(dut.cycles.value)
