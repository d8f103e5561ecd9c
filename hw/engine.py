"""The BitLinear engine: sequencer, activation buffer, weight decoder, MAC array, result drain.

Computes ``acc[t, :] = W @ x[t, :]`` for ternary ``W`` (``M x K``) and integer activation codes,
for ``tokens`` tokens per command. Ports and formats: ``docs/architecture.md`` section 5;
timing: ``docs/hardware.md`` and :func:`model.accel_cycles.cycles`.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.accel import AccelConfig

from ._util import validated
from .array import MacArray
from .decoder import WeightDecoder

__all__ = ["BitLinearEngine", "CmdLayout", "ResultLayout"]

#: Payload of the ``cmd`` stream.
CmdLayout = data.StructLayout({"m": unsigned(16), "k": unsigned(16), "tokens": unsigned(16)})
#: Payload of the ``result`` stream.
ResultLayout = data.StructLayout({"acc": signed(32), "last": unsigned(1)})


class BitLinearEngine(wiring.Component):
    """Tile a ternary ``M x K`` matrix-vector product over an ``R x C`` MAC array.

    Per token the engine consumes ``ceil(K/C)`` activation chunks (during the first row tile,
    stored in an activation memory for the other row tiles) and ``ceil(M/R) * ceil(K/C)`` weight
    beats (one per cycle), and emits ``M`` results in row order. A row tile's ``R`` accumulators
    are copied into a drain register bank when its last beat has been accumulated and are shifted
    out one per cycle while the next row tile computes; the pipeline only stalls when a row tile's
    results are not all out by the time the next tile completes (``ceil(K/C) < rows``), or on
    stream stalls / result backpressure.

    Parameters
    ----------
    config : AccelConfig
        Array shape, activation width, packing, ``max_k`` / ``max_m`` and ``adder_stages``.

    Attributes
    ----------
    cmd : In(stream.Signature(CmdLayout))
        ``{m, k, tokens}``: start a layer; accepted only when idle (``ready = ~busy``). A layer
        that does not fit (``k`` not in ``1..max_k``, ``m`` not in ``1..max_m``, ``tokens == 0``)
        is dropped and sets ``error``.
    act : In(stream.Signature(ArrayLayout(signed(act_bits), cols)))
        ``ceil(k / cols)`` activation chunks per token; lanes ``>= k`` of the last are ignored.
    weights : In(stream.Signature(ArrayLayout(unsigned(8), bytes_per_beat)))
        Packed weight beats in the order of ``docs/architecture.md`` section 4, one pass per token.
    result : Out(stream.Signature(ResultLayout))
        ``m`` accumulators per token in row order, ``last`` set on the token's final row.
    error : Out(1)
        Sticky: an invalid weight code or an unfit command was seen. Cleared only by reset.
    busy : Out(1)
        A command is in progress (from the cycle after its ``cmd`` transfer through its final
        ``result`` transfer).
    """

    @validated
    def __init__(self, *, config):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, got {type(config).__name__}")
        self._config = config
        super().__init__({
            "cmd": In(stream.Signature(CmdLayout)),
            "act": In(stream.Signature(data.ArrayLayout(signed(config.act_bits), config.cols))),
            "weights": In(stream.Signature(
                data.ArrayLayout(unsigned(8), config.bytes_per_beat))),
            "result": Out(stream.Signature(ResultLayout)),
            "error": Out(1),
            "busy": Out(1),
        })

    @property
    def config(self):
        return self._config

    @property
    def array_latency(self):
        """Cycles from a beat entering the MAC array to its effect in the accumulators."""
        return self._config.adder_stages + 1

    @property
    def latency(self):
        """Cycles from the transfer of a row tile's last weight beat to its first result valid.

        The beat enters the array in the cycle of its transfer out of the decoder register,
        is accumulated ``array_latency`` cycles later and copied to the drain bank one cycle
        after that.
        """
        return self.array_latency + 1

    @property
    def pipeline_depth(self):
        """Registers from a ``weights`` transfer to a ``result``: decoder + array + drain."""
        return 1 + self.array_latency + 1

    @property
    def act_depth(self):
        """Depth of the activation memory: ``ceil(max_k / cols)`` chunks."""
        return self._config.k_tiles(self._config.max_k)

    def elaborate(self, platform):
        cfg = self._config
        R, C = cfg.rows, cfg.cols
        m = Module()

        m.submodules.decoder = dec = WeightDecoder.from_config(cfg)
        wiring.connect(m, wiring.flipped(self.weights), dec.packed)
        m.submodules.array = arr = MacArray.from_config(cfg)
        m.submodules.act_mem = act_mem = Memory(
            shape=data.ArrayLayout(signed(cfg.act_bits), C), depth=self.act_depth, init=[])
        act_wr = act_mem.write_port()
        act_rd = act_mem.read_port(transparent_for=(act_wr,))

        # -- command and sequencer state --------------------------------------------------------
        cmd_error = Signal()
        busy = Signal()
        issuing = Signal()               # weight beats of the command remain to be consumed
        m_size = Signal(16)
        k_size = Signal(16)
        m_left = Signal(16)              # M - mt * R
        k_left = Signal(16)              # K - kt * C
        tok_left = Signal(16)
        kt = Signal(range(self.act_depth))
        use_stream = Signal()            # first row tile: activations come from the act stream
        m.d.comb += [
            self.busy.eq(busy),
            self.error.eq(cmd_error | dec.error),
            self.cmd.ready.eq(~busy),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            p = self.cmd.payload
            bad = ((p.m == 0) | (p.m > cfg.max_m) | (p.k == 0) | (p.k > cfg.max_k)
                   | (p.tokens == 0))
            with m.If(bad):
                m.d.sync += cmd_error.eq(1)
            with m.Else():
                m.d.sync += [
                    busy.eq(1), issuing.eq(1),
                    m_size.eq(p.m), k_size.eq(p.k),
                    m_left.eq(p.m), k_left.eq(p.k), tok_left.eq(p.tokens),
                    kt.eq(0), use_stream.eq(1),
                ]

        # -- issue: one weight beat (and, in the first row tile, one act chunk) per cycle -------
        en = Signal()                    # the array pipeline advances
        fire = Signal()                  # a beat enters the array this cycle
        last_k = Signal()
        last_m = Signal()
        last_tok = Signal()
        m.d.comb += [
            last_k.eq(k_left <= C),
            last_m.eq(m_left <= R),
            last_tok.eq(tok_left == 1),
            fire.eq(issuing & en & dec.trits.valid & (~use_stream | self.act.valid)),
            dec.trits.ready.eq(fire),
            self.act.ready.eq(fire & use_stream),
        ]
        kt_next = Signal.like(kt)
        m.d.comb += kt_next.eq(kt)
        with m.If(fire):
            with m.If(last_k):
                m.d.comb += kt_next.eq(0)
                m.d.sync += [kt.eq(0), k_left.eq(k_size)]
                with m.If(last_m):
                    m.d.sync += [m_left.eq(m_size), use_stream.eq(1), tok_left.eq(tok_left - 1)]
                    with m.If(last_tok):
                        m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += [m_left.eq(m_left - R), use_stream.eq(0)]
            with m.Else():
                m.d.comb += kt_next.eq(kt + 1)
                m.d.sync += [kt.eq(kt + 1), k_left.eq(k_left - C)]

        # activation buffer: written during the first row tile, read (addressed one cycle ahead,
        # transparent for the same-cycle write) during the others
        m.d.comb += [
            act_wr.addr.eq(kt),
            act_wr.data.eq(self.act.payload),
            act_wr.en.eq(fire & use_stream),
            act_rd.addr.eq(kt_next),
        ]
        chunk = Signal(data.ArrayLayout(signed(cfg.act_bits), C))
        m.d.comb += chunk.eq(Mux(use_stream, self.act.payload, act_rd.data))
        x = Signal(data.ArrayLayout(signed(cfg.act_bits), C))
        # lanes >= K read as 0; in the last chunk k_left <= C, so its low bits suffice
        k_low = k_left[:C.bit_length()]
        for c in range(C):
            m.d.comb += x[c].eq(Mux(~last_k | (k_low > c), chunk[c], 0))

        m.d.comb += [
            arr.en.eq(en),
            arr.valid.eq(fire),
            arr.first.eq(kt == 0),
            arr.x.eq(x),
            arr.trits.eq(dec.trits.payload),
        ]

        # -- tags travelling alongside the array pipeline ---------------------------------------
        tag_layout = data.StructLayout({
            "valid": 1, "last_k": 1, "last_m": 1, "final": 1, "rows": range(R + 1)})
        tag = Signal(tag_layout)
        m.d.comb += [
            tag.valid.eq(fire),
            tag.last_k.eq(last_k),
            tag.last_m.eq(last_m),
            tag.final.eq(last_k & last_m & last_tok),
            tag.rows.eq(Mux(last_m, m_left, R)),
        ]
        for stage in range(self.array_latency):
            nxt = Signal(tag_layout, name=f"tag{stage}")
            with m.If(en):
                m.d.sync += nxt.eq(tag)
            tag = nxt
        tail = tag                       # describes the beat now reflected in arr.acc

        # -- drain bank: R accumulators shifted out one per cycle -------------------------------
        bank = [Signal(signed(cfg.acc_width), name=f"bank{r}") for r in range(R)]
        drain_cnt = Signal(range(R + 1))
        drain_last_m = Signal()
        drain_final = Signal()
        drain_free = Signal()
        load = Signal()
        m.d.comb += [
            self.result.valid.eq(drain_cnt != 0),
            self.result.payload.acc.eq(bank[0]),
            self.result.payload.last.eq(drain_last_m & (drain_cnt == 1)),
            drain_free.eq((drain_cnt == 0) | ((drain_cnt == 1) & self.result.ready)),
            load.eq(tail.valid & tail.last_k & drain_free),
            en.eq(~(tail.valid & tail.last_k) | drain_free),
        ]
        with m.If(load):
            m.d.sync += [bank[r].eq(arr.acc[r]) for r in range(R)]
            m.d.sync += [
                drain_cnt.eq(tail.rows), drain_last_m.eq(tail.last_m),
                drain_final.eq(tail.final),
            ]
        with m.Elif(self.result.valid & self.result.ready):
            m.d.sync += [bank[r].eq(bank[r + 1]) for r in range(R - 1)]
            m.d.sync += drain_cnt.eq(drain_cnt - 1)
        with m.If(self.result.valid & self.result.ready & (drain_cnt == 1) & drain_final):
            m.d.sync += busy.eq(0)
        return m
