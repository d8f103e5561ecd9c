"""A simulation-only wrapper that runs whole layers on the engine without a per-cycle testbench.

:class:`FastTop` holds the engine's inputs and outputs in memories that the testbench fills and
reads through simulator handles (no clock cycles spent), and a small sequencer that drives the
engine's ``cmd``, ``act`` and ``weights`` streams from them at full rate and writes every
``result`` into a result memory. The testbench only pulses ``start`` and waits for ``done``,
so the simulator runs at native speed between the two. The sequencer also counts the cycles
from the ``cmd`` transfer to the final ``result`` transfer (the definition of
``model.accel_cycles.cycles``) in hardware.

This lives in ``sim/`` because it is a test fixture: it is never synthesized (its memories use
deep memories, no vendor primitives). Python driver: :class:`sim.fast.FastEngine`.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from hw._util import check_int, validated
from model.accel import AccelConfig

__all__ = ["FastTop"]


class FastTop(wiring.Component):
    """Engine plus preloaded input memories, a result memory and a cycle counter.

    Parameters
    ----------
    config : AccelConfig
        Engine configuration.
    weight_depth : int
        Weight beats the weight memory holds (several layers can stay resident at different
        ``w_base`` addresses).
    act_depth : int
        Activation chunks (``tokens * ceil(K / C)`` of one call) the activation memory holds.
    result_depth : int
        Results (``tokens * M`` of one call) the result memory holds.

    Memories (filled / read by the testbench through simulator handles)
    -------------------------------------------------------------------
    ``wmem`` : ``weight_depth`` words of ``8 * bytes_per_beat`` bits, one packed beat each.
    ``amem`` : ``act_depth`` words of ``act_bits * cols`` bits, one activation chunk each.
    ``rmem`` : ``result_depth`` words of 33 bits: ``acc`` (bits 0..31) and ``last`` (bit 32).

    Attributes
    ----------
    start : In(1)
        Pulse for one cycle to start a call with the parameters below (held during the call).
    m, k, tokens : In(16)
        The command.
    beats : In(32)
        Weight beats of one token pass (``config.beats(m, k)``); the pass is replayed per token.
    w_base : In(range(weight_depth))
        Address of the layer's first beat in ``wmem``.
    n_act, n_results : In(32)
        Activation chunks to send (``tokens * k_tiles``) and results to collect (``tokens * m``).
    done : Out(1)
        High from the final result transfer until the next ``start``.
    cycles : Out(32)
        Rising edges from the ``cmd`` transfer to the final ``result`` transfer.
    error, busy : Out(1)
        The engine's flags.
    """

    @validated
    def __init__(self, *, config: AccelConfig, weight_depth: int = 16384, act_depth: int = 4096,
                 result_depth: int = 16384):
        from hw.engine import BitLinearEngine

        if config.tokens_per_beat != 1:
            raise ValueError(
                f"FastTop replays the weight pass once per token: tokens_per_beat="
                f"{config.tokens_per_beat} runs on sim.native (the 'native' backend), "
                "sim.amaranth_engine or the cocotb engine testbench")
        check_int("weight_depth", weight_depth, 2)
        check_int("act_depth", act_depth, 2)
        check_int("result_depth", result_depth, 2)
        self._config = config
        self.weight_depth = weight_depth
        self.act_depth = act_depth
        self.result_depth = result_depth
        self.engine = BitLinearEngine(config=config)
        super().__init__({
            "start": In(1),
            "m": In(16), "k": In(16), "tokens": In(16),
            "beats": In(32),
            "w_base": In(range(weight_depth)),
            "n_act": In(32), "n_results": In(32),
            "done": Out(1),
            "cycles": Out(32),
            "error": Out(1),
            "busy": Out(1),
        })

    @property
    def config(self) -> AccelConfig:
        return self._config

    def elaborate(self, platform):
        cfg = self._config
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.wmem = wmem = memory.Memory(
            shape=unsigned(8 * cfg.bytes_per_beat), depth=self.weight_depth, init=[])
        m.submodules.amem = amem = memory.Memory(
            shape=unsigned(cfg.act_bits * cfg.cols), depth=self.act_depth, init=[])
        m.submodules.rmem = rmem = memory.Memory(
            shape=data.StructLayout({"acc": signed(32), "last": 1}),
            depth=self.result_depth, init=[])
        # synchronous read ports addressed one cycle ahead (the index the stream will be at in
        # the next cycle), so data always matches the current index
        w_rd = wmem.read_port()
        a_rd = amem.read_port()
        r_wr = rmem.write_port()

        cmd_valid = Signal()
        w_idx = Signal(32)        # beat within the token pass
        w_sent = Signal(32)       # beats sent in total
        a_idx = Signal(32)
        r_idx = Signal(32)
        running = Signal()        # counting cycles
        active = Signal()         # a call is in progress: the input streams may be valid
        w_total = Signal(32)
        m.d.comb += [
            self.error.eq(eng.error),
            self.busy.eq(eng.busy),
            w_total.eq(self.beats * self.tokens),
            # command
            eng.cmd.valid.eq(cmd_valid),
            eng.cmd.payload.m.eq(self.m),
            eng.cmd.payload.k.eq(self.k),
            eng.cmd.payload.tokens.eq(self.tokens),
            # weights, replayed once per token
            eng.weights.valid.eq(active & (w_sent < w_total)),
            eng.weights.payload.eq(w_rd.data),
            # activations
            eng.act.valid.eq(active & (a_idx < self.n_act)),
            eng.act.payload.eq(a_rd.data),
            # results
            eng.result.ready.eq(1),
            r_wr.addr.eq(r_idx),
            r_wr.data.eq(eng.result.payload),
            r_wr.en.eq(eng.result.valid & (r_idx < self.n_results)),
        ]
        w_next = Signal(32)
        a_next = Signal(32)
        m.d.comb += [w_next.eq(w_idx), a_next.eq(a_idx)]
        with m.If(eng.weights.valid & eng.weights.ready):
            m.d.comb += w_next.eq(Mux(w_idx + 1 == self.beats, 0, w_idx + 1))
        with m.If(eng.act.valid & eng.act.ready):
            m.d.comb += a_next.eq(a_idx + 1)
        with m.If(self.start):
            m.d.comb += [w_next.eq(0), a_next.eq(0)]
        m.d.comb += [w_rd.addr.eq(self.w_base + w_next), a_rd.addr.eq(a_next)]
        with m.If(eng.cmd.valid & eng.cmd.ready):
            m.d.sync += [cmd_valid.eq(0), running.eq(1), self.cycles.eq(0)]
        with m.Elif(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(eng.weights.valid & eng.weights.ready):
            m.d.sync += w_sent.eq(w_sent + 1)
        m.d.sync += [w_idx.eq(w_next), a_idx.eq(a_next)]
        with m.If(eng.result.valid):
            m.d.sync += r_idx.eq(r_idx + 1)
            with m.If(r_idx + 1 == self.n_results):
                m.d.sync += [self.done.eq(1), running.eq(0), active.eq(0)]
        with m.If(self.start):
            m.d.sync += [
                cmd_valid.eq(1), running.eq(0), self.done.eq(0), active.eq(1),
                w_sent.eq(0), r_idx.eq(0),
            ]
        return m
