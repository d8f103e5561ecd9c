"""Whole BitLinear layers on ``hw.engine.BitLinearEngine`` in the Amaranth simulator.

The ``amaranth`` backend of ``python -m sim.run_model``: no Verilog, no external simulator, the
engine's Amaranth description itself simulated cycle by cycle (Amaranth's Python simulator).
One :class:`AmaranthEngine` keeps one simulator alive across calls (elaboration happens once);
each :meth:`AmaranthEngine.run_layer` hands a layer to a testbench that drives ``cmd``, ``act``
and ``weights`` at full rate (valid whenever data is left), keeps ``result.ready`` high, and
steps the simulator until the layer's ``T * M`` results have come out::

    from sim.amaranth_engine import AmaranthEngine
    eng = AmaranthEngine(AccelConfig())
    acc, cycles = eng.run_layer(xq, trits)   # xq (T, K) int, trits (M, K) in {-1, 0, 1}

``cycles`` counts rising edges from the ``cmd`` transfer to the final ``result`` transfer (a
free-running counter in a wrapper module, sampled at every edge), the quantity
``model.accel_cycles.cycles`` predicts. The weight stream is ``model.packing.pack_layer_stream``
(via :func:`sim.engine_tb.layer_stream`, cross-checked there against the contract), sent once
per token group (``AccelConfig.tokens_per_beat`` tokens; one token for ``T = 1``). The
results, which come in the order of ``model.packing.result_order``, are returned as the
``(tokens, M)`` matrix; the caller compares them with the golden model.
"""

from __future__ import annotations

import numpy as np
from amaranth import Elaboratable, Module, Signal

from model.accel import AccelConfig
from model.packing import result_order, results_matrix

__all__ = ["AmaranthEngine"]


class _Counted(Elaboratable):
    """The engine plus a free-running cycle counter the testbench samples at every edge."""

    def __init__(self, engine):
        self.engine = engine
        self.cycle = Signal(40)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = self.engine
        m.d.sync += self.cycle.eq(self.cycle + 1)
        return m


class _Job:
    def __init__(self, cmd: int, acts: list[int], beats: list[int], n_results: int,
                 budget: int):
        self.cmd, self.acts, self.beats = cmd, acts, beats
        self.n_results, self.budget = n_results, budget
        self.results: list[int] = []
        self.cmd_cycle = self.last_cycle = None
        self.error: str | None = None
        self.done = False


class AmaranthEngine:
    """A persistent Amaranth simulation of one ``BitLinearEngine``.

    Parameters
    ----------
    config : AccelConfig
        The engine configuration.
    timeout_cycles : int
        Slack beyond ``4 *`` the layer's beat count before a call fails.
    """

    def __init__(self, config: AccelConfig, *, timeout_cycles: int = 10000):
        from amaranth.sim import Simulator

        from hw.engine import BitLinearEngine

        self.config = config
        self.timeout_cycles = timeout_cycles
        self.engine = BitLinearEngine(config=config)
        self.top = _Counted(self.engine)
        self.sim = Simulator(self.top)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._testbench, background=True)
        self._job: _Job | None = None
        self.total_cycles = 0

    async def _testbench(self, ctx):
        eng, cyc = self.engine, self.top.cycle
        cmd, act, wts, res = eng.cmd, eng.act, eng.weights, eng.result
        cmd_raw, act_raw = cmd.payload.as_value(), act.payload.as_value()
        wts_raw, res_raw = wts.payload.as_value(), res.payload.as_value()

        def advance(i, items, port, raw, ready):
            """After a transfer on ``port``, present the next of ``items`` (or drop valid)."""
            if i < len(items) and ready:
                i += 1
                if i < len(items):
                    ctx.set(raw, items[i])
                else:
                    ctx.set(port.valid, 0)
            return i

        while True:
            job = self._job
            if job is None or job.done:
                await ctx.tick()
                continue
            ci = ai = wi = 0
            na, nw = len(job.acts), len(job.beats)
            ctx.set(res.ready, 1)
            ctx.set(cmd_raw, job.cmd)
            ctx.set(cmd.valid, 1)
            if na:
                ctx.set(act_raw, job.acts[0])
            if nw:
                ctx.set(wts_raw, job.beats[0])
            ctx.set(act.valid, ai < na)
            ctx.set(wts.valid, wi < nw)
            start = None
            while len(job.results) < job.n_results:
                (_, _, c_rdy, a_rdy, w_rdy, r_vld, r_raw, err, now) = await ctx.tick().sample(
                    cmd.ready, act.ready, wts.ready, res.valid, res_raw, eng.error, cyc)
                if start is None:
                    start = now
                if ci == 0 and c_rdy:
                    ci = 1
                    job.cmd_cycle = now
                    ctx.set(cmd.valid, 0)
                ai = advance(ai, job.acts, act, act_raw, a_rdy)
                wi = advance(wi, job.beats, wts, wts_raw, w_rdy)
                if r_vld:
                    job.results.append(int(r_raw))
                    job.last_cycle = now
                if err:
                    job.error = "the engine raised error"
                    break
                if now - start > job.budget:
                    job.error = (f"timeout after {job.budget} cycles: {len(job.results)} of "
                                 f"{job.n_results} results, cmd sent {ci}, {ai}/{na} act "
                                 f"chunks, {wi}/{nw} beats accepted")
                    break
            ctx.set(cmd.valid, 0)
            ctx.set(act.valid, 0)
            ctx.set(wts.valid, 0)
            if job.error is None and (ai, wi) != (na, nw):
                job.error = f"engine finished with {na - ai} act chunks, {nw - wi} beats unread"
            # one more edge: no extra result may follow the last one
            _, _, r_vld, now = await ctx.tick().sample(res.valid, cyc)
            if job.error is None and r_vld:
                job.error = "an extra result came out after the layer's last one"
            self.total_cycles += now - start
            job.done = True

    def run_layer(self, xq, trits) -> tuple[np.ndarray, int]:
        """Compute ``acc = xq @ trits.T`` on the simulated engine.

        Parameters
        ----------
        xq : array (T, K) of int
            Activation codes in the config's ``act_bits`` range.
        trits : array (M, K) of int
            Ternary weights in ``{-1, 0, 1}``.

        Returns
        -------
        acc : ndarray (T, M) int32
        cycles : int
            ``cmd`` transfer to final ``result`` transfer.

        Raises
        ------
        ValueError
            Bad shapes or values, or a layer that does not fit the config.
        AssertionError
            The engine timed out, raised ``error``, or produced a malformed result stream.
        """
        from sim.engine_tb import EngineTB, check_layer_args, layer_stream

        cfg = self.config
        xq, trits, t, m, k = check_layer_args(cfg, xq, trits)
        beats = EngineTB.beat_words(layer_stream(trits, cfg)) * len(cfg.token_groups(t))
        acts = EngineTB.act_words_of(xq, cfg)
        job = _Job(m | k << 16 | t << 32, acts, beats, t * m,
                   4 * (len(beats) + t * m + 2 * cfg.rows + 20) + self.timeout_cycles)
        self._job = job
        while not job.done:
            self.sim.advance()
        self._job = None
        if job.error:
            raise AssertionError(f"Amaranth engine, M={m} K={k} T={t}: {job.error}")
        raw = np.array(job.results, dtype=np.int64)
        order = result_order(cfg, m, t)
        if not np.array_equal((raw >> 32) & 1, order[:, 2]):
            raise AssertionError("result 'last' flags are not on each token group's final "
                                 "result")
        acc = (raw & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
        return results_matrix(acc, cfg, m, t), int(job.last_cycle - job.cmd_cycle)
