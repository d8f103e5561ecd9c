"""The layer runner: feeds the engine from the board memories and stores its results.

One RUN of ``m x k`` for ``tokens`` tokens:

* ``cmd``: one transfer ``{m, k, tokens}``;
* ``act``: ``ceil(k/C)`` chunks per token from the activation memory, chunk ``j`` of token ``t``
  at row ``t * ceil(k/C) + j`` (the host writes code ``i`` of a token at byte
  ``row * C + i``; lanes beyond ``k`` are ignored by the engine);
* ``weights``: the layer's beats from the weight memory (:class:`fpga.memory.WeightReader`), the
  same pass once per token;
* ``result``: every accumulator is written to the result memory in arrival order (token-major),
  the run ends at the ``last`` flag of the ``tokens``-th token.

Every counter is incremented by additions and comparisons only (no multiplier in the netlist).
The runner takes only runs that fit: the link starts it after :mod:`fpga.admission` has checked
that the run's activation rows, results and weight bytes lie inside the memories (a refused RUN
writes nothing), so the runner has no end-of-memory checks of its own for the activation and
result memories; the weight reader's own end-of-memory stop (``range_error``) still ends a run
with ``RANGE``. An engine ``error`` stops it with ``ENGINE_ERROR``; either way the runner pulses
``engine_reset`` so the engine is idle again afterwards.
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from fpga.memory import WORD_BYTES, DepthSignature, WeightReader, addr_width
from fpga.protocol import Status
from hw.engine import EngineSignature

__all__ = ["LayerRunner", "RunCommand", "RunControlSignature"]


class RunCommand(data.StructLayout):
    """Payload of the run command: a layer of ``m x k`` for ``tokens`` tokens, its weight
    stream from word ``wbase`` of a weight memory of ``weight_depth`` words."""

    def __init__(self, weight_depth: int):
        super().__init__({"m": unsigned(16), "k": unsigned(16), "tokens": unsigned(16),
                          "wbase": range(weight_depth)})


class RunControlSignature(DepthSignature):
    """The runner's control, seen from the block that starts runs (the link).

    Members
    -------
    cmd : Out(stream.Signature(RunCommand(weight_depth)))
        The run to start; taken when the runner is idle.
    done : In(1)
        One-cycle pulse at the end of a run, with ``status`` and ``cycles``.
    status : In(Status)
        The last run's :class:`fpga.protocol.Status` (held until the next run ends).
    cycles : In(32)
        The last run's engine cycles, ``cmd`` transfer to final result (held until the next
        run starts).
    """

    def __init__(self, weight_depth: int):
        super().__init__(weight_depth, {
            "cmd": Out(stream.Signature(RunCommand(weight_depth))),
            "done": In(1),
            "status": In(Status),
            "cycles": In(32),
        })

    @property
    def weight_depth(self):
        return self.depth


class LayerRunner(wiring.Component):
    """Runs one layer on the engine from the board memories (see the module docstring).

    Parameters
    ----------
    config : AccelConfig
    weight_depth : int
        Words of the weight memory.
    act_rows : int
        Rows (of ``cols`` codes) of the activation memory.
    result_depth : int
        Entries (int32) of the result memory.

    Attributes
    ----------
    control : In(RunControlSignature(weight_depth))
        ``control.cmd``: the run ``{m, k, tokens, wbase}`` (word address), taken when idle
        (the run is set up from the registered values in the next cycle, ``LOAD``);
        ``control.done``: one-cycle pulse at the end of a run with ``control.status`` (a
        :class:`fpga.protocol.Status`) and ``control.cycles`` (``cmd`` transfer to final
        result of the engine).
    busy : out
        A run is in progress.
    engine_reset : out
        Asserted for one cycle after an aborted run.
    engine : Out(EngineSignature(config).flip())
        Drives the engine (``docs/architecture.md`` section 5); its ``busy`` is not used.
    weight_mem, act_mem : In(ReadPort.Signature(...))
        Read ports of the weight memory (64-bit words) and the activation memory (``cols``
        bytes per row); reads have one cycle latency.
    res_mem : In(WritePort.Signature(...))
        Write port of the result memory (int32 entries).
    """

    def __init__(self, *, config, weight_depth: int, act_rows: int, result_depth: int):
        self._config = config
        self._weight_depth = weight_depth
        self._act_rows = act_rows
        self._result_depth = result_depth
        super().__init__({
            "control": In(RunControlSignature(weight_depth)),
            "busy": Out(1),
            "engine_reset": Out(1),
            "engine": Out(EngineSignature(config).flip()),
            "weight_mem": In(ReadPort.Signature(addr_width=addr_width(weight_depth),
                                                shape=unsigned(8 * WORD_BYTES))),
            "act_mem": In(ReadPort.Signature(addr_width=addr_width(act_rows),
                                             shape=unsigned(8 * config.cols))),
            "res_mem": In(WritePort.Signature(addr_width=addr_width(result_depth),
                                              shape=unsigned(32))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        C = cfg.cols

        # layer registers loaded by `start` and used only during the run: no reset (it would
        # reach every enable that updates them)
        rl = {"reset_less": True}
        m_r = Signal(16, **rl)
        k_r = Signal(16, **rl)
        tokens_r = Signal(16, **rl)
        wbase_r = Signal(range(self._weight_depth), **rl)
        cmd_valid = Signal()    # a register (not decoded from the FSM state): short paths
        counting = Signal()
        cycles = Signal(32, **rl)

        # activation feeder
        act_active = Signal()
        act_row = Signal(range(self._act_rows + 1), **rl)
        act_tokens_left = Signal(16, **rl)
        act_last_token = Signal(**rl)  # act_tokens_left == 1
        act_krem = Signal(17, **rl)  # codes of the current token from the next row on
        act_tile_last = Signal(**rl)  # act_krem <= C: this row ends the token
        k_single = Signal(**rl)  # k <= C: every row ends a token
        act_have = Signal()     # act_rdata holds a row not yet accepted by the engine

        # result writer
        res_idx = Signal(range(self._result_depth + 1), **rl)
        res_left = Signal(16, **rl)  # tokens whose last result has not come yet
        res_last_token = Signal(**rl)  # res_left == 1

        eng = self.engine
        ctl = self.control
        m.submodules.reader = reader = WeightReader(config=cfg, depth=self._weight_depth)
        wiring.connect(m, reader.mem, wiring.flipped(self.weight_mem))
        m.d.comb += [
            reader.base.eq(wbase_r), reader.m.eq(m_r), reader.k.eq(k_r),
            reader.tokens.eq(tokens_r),
        ]
        wiring.connect(m, wiring.flipped(eng.weights), reader.beats)

        m.d.comb += eng.cmd.valid.eq(cmd_valid)
        # results are always taken (the result memory never stalls; outside a run the engine
        # is idle or being reset): a constant ready keeps the engine's stall logic out of the
        # weight/activation handshakes
        m.d.comb += eng.result.ready.eq(1)
        m.d.comb += eng.cmd.payload.m.eq(m_r)
        m.d.comb += eng.cmd.payload.k.eq(k_r)
        m.d.comb += eng.cmd.payload.tokens.eq(tokens_r)
        m.d.comb += [self.res_mem.addr.eq(res_idx), self.res_mem.data.eq(eng.result.payload.acc)]
        for i in range(C):
            m.d.comb += eng.act.payload[i].eq(self.act_mem.data[8 * i:8 * i + cfg.act_bits])

        with m.If(counting):
            m.d.sync += cycles.eq(cycles + 1)
        # `cycles` holds its count from the end of a run to the next run's start: the output
        # is the counter itself (no copy)
        m.d.comb += ctl.cycles.eq(cycles)

        # -- activations, outside the FSM (`act_active` is set by `start` and cleared by the
        #    last token or an abort, so no state decode is on this path): one
        #    row per cycle; the next row is read in the cycle the current one is accepted (the
        #    read port holds its data while en is low). The token/column counters advance when
        #    a row is *issued*; the "last row of the token" and "last token"
        #    conditions are registered flags kept with their counters (no compare in front of
        #    the enables).
        act_fire = eng.act.valid & eng.act.ready
        act_read = Signal()
        m.d.comb += [eng.act.valid.eq(act_have), act_read.eq((~act_have | act_fire) & act_active),
                     self.act_mem.addr.eq(act_row), self.act_mem.en.eq(act_read)]
        with m.If(act_read):
            m.d.sync += [act_have.eq(1), act_row.eq(act_row + 1)]
            with m.If(act_tile_last):
                m.d.sync += [act_krem.eq(k_r),
                             act_tile_last.eq(k_single),
                             act_tokens_left.eq(act_tokens_left - 1),
                             act_last_token.eq(act_tokens_left == 2)]
                with m.If(act_last_token):
                    m.d.sync += act_active.eq(0)
            with m.Else():
                m.d.sync += [act_krem.eq(act_krem - C),
                             act_tile_last.eq(act_krem <= 2 * C)]
        with m.Elif(act_fire):
            m.d.sync += act_have.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                # the layer's arguments are registered first; everything derived from them is
                # set up in LOAD from those registers (no compare of the link's registers in
                # front of the runner's and the reader's state)
                m.d.comb += ctl.cmd.ready.eq(1)
                with m.If(ctl.cmd.valid):
                    p = ctl.cmd.payload
                    m.d.sync += [m_r.eq(p.m), k_r.eq(p.k), tokens_r.eq(p.tokens),
                                 wbase_r.eq(p.wbase)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    cmd_valid.eq(1), counting.eq(0), cycles.eq(0),
                    act_active.eq(1), act_row.eq(0),
                    act_tokens_left.eq(tokens_r), act_have.eq(0),
                    act_last_token.eq(tokens_r == 1), act_krem.eq(k_r),
                    act_tile_last.eq(k_r <= C), k_single.eq(k_r <= C),
                    res_idx.eq(0),
                    res_left.eq(tokens_r), res_last_token.eq(tokens_r == 1),
                ]
                m.d.comb += reader.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                # -- command
                with m.If(eng.cmd.valid & eng.cmd.ready):
                    m.d.sync += [cmd_valid.eq(0), counting.eq(1)]
                # -- results
                with m.If(eng.result.valid):
                    m.d.comb += self.res_mem.en.eq(1)
                    m.d.sync += res_idx.eq(res_idx + 1)
                    with m.If(eng.result.payload.last):
                        m.d.sync += [res_left.eq(res_left - 1),
                                     res_last_token.eq(res_left == 2)]
                        with m.If(res_last_token):
                            # the count stops here (this cycle's increment is dropped)
                            m.d.sync += [counting.eq(0), cycles.eq(cycles)]
                            m.next = "FINISH"
                # -- aborts
                with m.If(eng.error):
                    m.d.sync += [ctl.status.eq(Status.ENGINE_ERROR), counting.eq(0),
                                 cmd_valid.eq(0), act_active.eq(0), act_have.eq(0)]
                    m.next = "ABORT"
                with m.Elif(reader.range_error):
                    m.d.sync += [ctl.status.eq(Status.RANGE), counting.eq(0), cmd_valid.eq(0),
                                 act_active.eq(0), act_have.eq(0)]
                    m.next = "ABORT"
            with m.State("FINISH"):
                m.d.sync += ctl.status.eq(Status.OK)
                m.next = "DONE"
            with m.State("ABORT"):
                # the engine may be mid-command: reset it; stop the reader
                m.d.comb += [self.engine_reset.eq(1), reader.stop.eq(1)]
                m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += ctl.done.eq(1)
                m.next = "IDLE"
        return m
