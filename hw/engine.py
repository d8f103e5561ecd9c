"""The BitLinear engine: sequencer, activation buffer, weight decoder, MAC array, result drain.

Computes ``acc[t, :] = W @ x[t, :]`` for ternary ``W`` (``M x K``) and integer activation codes,
for ``tokens`` tokens per command. Ports and formats: ``docs/architecture.md`` section 5;
timing: ``docs/hardware.md`` and :func:`model.accel_cycles.cycles`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.accel import AccelConfig

from ._util import ParamSignature, validated
from .array import MacArray
from .decoder import (
    DECODE_STEPS,
    ENGINE_PRE_STEPS,
    decode_steps,
    initial_state,
    state_bad,
    state_trits,
)
from .trit import Trit

__all__ = ["BitLinearEngine", "EngineSignature", "CmdLayout", "ResultLayout"]

#: Payload of the ``cmd`` stream.
CmdLayout = data.StructLayout({"m": unsigned(16), "k": unsigned(16), "tokens": unsigned(16)})
#: Payload of the ``result`` stream.
ResultLayout = data.StructLayout({"acc": signed(32), "last": unsigned(1)})


class EngineSignature(ParamSignature):
    """The engine's ports (``docs/architecture.md`` section 5), seen from the engine.

    ``cmd``, ``act`` and ``weights`` are streams in, ``result`` a stream out, ``error`` and
    ``busy`` flags out; the ``act`` and ``weights`` payloads follow ``config`` (``cols`` codes
    of ``act_bits``; ``bytes_per_beat`` bytes). :class:`BitLinearEngine` has this signature; a
    block that drives an engine has a member ``Out(EngineSignature(config).flip())``.

    Parameters
    ----------
    config : AccelConfig
    """

    def __init__(self, config):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, got {type(config).__name__}")
        super().__init__(config, {
            "cmd": In(stream.Signature(CmdLayout)),
            "act": In(stream.Signature(
                data.ArrayLayout(signed(config.act_bits), config.act_lanes))),
            "weights": In(stream.Signature(
                data.ArrayLayout(unsigned(8), config.bytes_per_beat))),
            "result": Out(stream.Signature(ResultLayout)),
            "error": Out(1),
            "busy": Out(1),
        })

    @property
    def config(self):
        return self.param


class BitLinearEngine(wiring.Component):
    """Tile a ternary ``M x K`` matrix-vector product over an ``R x C`` MAC array.

    Per token the engine consumes ``ceil(K/C)`` activation chunks (during the first row tile,
    stored in an activation memory for the other row tiles) and ``ceil(M/R) * ceil(K/C)`` weight
    beats (one per cycle), and emits ``M`` results in row order. A row tile's ``R`` accumulators
    are copied into a drain register bank when its last beat has been accumulated and are shifted
    out one per cycle while the next row tile computes; the pipeline only stalls when a row tile's
    results are not all out by the time the next tile completes (``ceil(K/C) < rows``), or on
    stream stalls / result backpressure.

    Timing (for 48 MHz on the iCE40 UP5K, see ``docs/hardware.md``): a command's checks are
    registered in its transfer cycle and decided in the next, and its first weight beat is
    taken in the one after; the sequencer advances per beat *taken* and each beat carries its
    tag; weight beats pass a one-beat input buffer (the first ``tq1`` decoding step before it,
    and a spare entry) and an issue register (the remaining decoding steps and the masked
    activation chunk) before the array. Cycle counts: :func:`model.accel_cycles.cycles`.

    Parameters
    ----------
    config : AccelConfig
        Array shape, activation width, packing, ``max_k`` / ``max_m`` and ``adder_stages``.

    The component's signature is :class:`EngineSignature` ``(config)``.

    Attributes
    ----------
    cmd : In(stream.Signature(CmdLayout))
        ``{m, k, tokens}``: start a layer; accepted only when idle (``ready = ~busy``). A layer
        that does not fit (``k`` not in ``1..max_k``, ``m`` not in ``1..max_m``, ``tokens == 0``)
        is dropped and sets ``error`` in the cycle after its transfer (``ready`` is low in that
        one cycle).
    act : In(stream.Signature(ArrayLayout(signed(act_bits), cols)))
        ``ceil(k / cols)`` activation chunks per token; lanes ``>= k`` of the last are ignored.
    weights : In(stream.Signature(ArrayLayout(unsigned(8), bytes_per_beat)))
        Packed weight beats in the order of ``docs/architecture.md`` section 4, one pass per token.
        Exactly the command's beats are taken, from the second cycle after its ``cmd`` transfer
        on (``START_LATENCY``).
    result : Out(stream.Signature(ResultLayout))
        ``m`` accumulators per token in row order, ``last`` set on the token's final row.
    error : Out(1)
        Sticky: an invalid weight code (in a beat the engine issued) or an unfit command was
        seen. Cleared only by reset.
    busy : Out(1)
        A command is in progress (from the cycle after its ``cmd`` transfer through its final
        ``result`` transfer; never for a dropped command).
    """

    @validated
    def __init__(self, *, config):
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, got {type(config).__name__}")
        self._config = config
        super().__init__(EngineSignature(config))

    @property
    def config(self):
        return self._config

    @property
    def issue_latency(self):
        """Registers between the issue of a beat and the MAC array: 1 (the issue stage).

        The issue stage finishes decoding the beat (the ``tq1`` digits not decoded before the
        input buffer) and registers it together with the masked activation chunk, so neither the
        decoder nor the activation memory feeds the array's adders combinationally.
        """
        return 1

    @property
    def array_latency(self):
        """Cycles from a beat entering the MAC array to its effect in the accumulators."""
        return self._config.adder_stages + 1

    @property
    def latency(self):
        """Cycles from the issue of a row tile's last weight beat to its first result valid.

        A beat is issued (``fire``) in the cycle it leaves the input buffer, enters the array
        ``issue_latency`` cycles later, is accumulated ``array_latency`` cycles after that and
        copied to the drain bank one cycle later; equals ``model.accel_cycles.pipeline_latency
        + 1``.
        """
        return self.issue_latency + self.array_latency + 1

    @property
    def pipeline_depth(self):
        """Registers from a ``weights`` transfer to a ``result``: buffer + issue + array + drain."""
        return 1 + self.issue_latency + self.array_latency + 1

    @property
    def act_depth(self):
        """Depth of the activation memory: ``ceil(max_k / cols)`` chunks."""
        return self._config.k_tiles(self._config.max_k)

    def elaborate(self, platform):
        cfg = self._config
        R, C, T = cfg.rows, cfg.cols, cfg.tokens_per_beat
        m = Module()

        if T == 1:
            m.submodules.array = arr = MacArray.from_config(cfg)
            arrays = [arr]
        else:
            # T arrays share the decoded beat; array j computes token j of the group
            arrays = [MacArray.from_config(cfg) for _ in range(T)]
            for j, a in enumerate(arrays):
                m.submodules[f"array{j}"] = a
        lanes = data.ArrayLayout(signed(cfg.act_bits), cfg.act_lanes)
        m.submodules.act_mem = act_mem = Memory(shape=lanes, depth=self.act_depth, init=[])
        act_wr = act_mem.write_port()
        act_rd = act_mem.read_port(transparent_for=(act_wr,))

        # -- weight input: a one-beat buffer (`buf`, the first ENGINE_PRE_STEPS decoding steps
        #    done) and a spare entry (packed bytes) for the beat that arrives while `buf` is
        #    held. Each entry carries the beat's place in the layer (`beat_tag`).
        pre_steps = ENGINE_PRE_STEPS[cfg.packing]
        k_low_bits = C.bit_length()
        beat_tag = data.StructLayout({
            "kt": range(self.act_depth),     # column tile
            "first": 1,                      # kt == 0
            "use_stream": 1,                 # first row tile: the chunk comes from `act`
            "last_k": 1,                     # the beat ends its row tile
            "last_m": 1,                     # the row tile ends its token
            "final": 1,                      # the beat ends the command
            "rows": range(R + 1),            # rows of the row tile
            "k_low": k_low_bits,             # K - kt * C (low bits; lanes >= it are 0 if last_k)
            **({"toks": range(T + 1)} if T > 1 else {}),   # tokens of the group
        })
        # the entries need no reset (`reset_less`): the valid flags say what they hold
        spare = Signal.like(self.weights.payload, name="w_spare", reset_less=True)
        spare_tag = Signal(beat_tag, name="w_spare_tag", reset_less=True)
        spare_valid = Signal()
        packed = Signal.like(self.weights.payload, name="w_packed")
        m.d.comb += packed.eq(Mux(spare_valid, spare, self.weights.payload))
        raw = initial_state(m, cfg.packing, packed, name="w_raw")
        pre = decode_steps(m, cfg.packing, raw, 0, pre_steps, name="w_pre")
        buf = Signal(pre.shape(), name="w_buf", reset_less=True)
        buf_tag = Signal(beat_tag, name="w_buf_tag", reset_less=True)
        buf_valid = Signal()
        dec_error = Signal()

        # -- command and sequencer state --------------------------------------------------------
        # The sequencer describes the next beat to be *taken* from `weights` and advances with
        # each transfer. A transfer is `weights.valid` and two registers, so the layer counters
        # and their flags are one LUT level away from the stream; the tag travels with the beat
        # through the input buffer, and the issue (`fire`) only moves beats and tags.
        cmd_error = Signal()
        busy = Signal()
        issuing = Signal()               # weight beats of the command remain to be taken
        # The layer registers and flags below are loaded by each command before they are used,
        # so they need no reset (`reset_less`): a reset would reach every enable that updates
        # them. Only the control flags (busy, issuing, valid bits, drain state) are reset.
        rl = {"reset_less": True}
        # (as wide as the checked range: a command with m > max_m or k > max_k is dropped)
        m_size = Signal(range(cfg.max_m + 1), **rl)
        k_size = Signal(range(cfg.max_k + 1), **rl)
        m_left = Signal(range(cfg.max_m + 1), **rl)     # M - mt * R
        k_left = Signal(range(cfg.max_k + 1), **rl)     # K - kt * C
        tok_left = Signal(16, **rl)
        kt = Signal(range(self.act_depth), **rl)
        use_stream = Signal(**rl)        # first row tile: activations come from the act stream
        # registered flags (no wide comparison between a counter and the transfer):
        first = Signal(**rl)             # kt == 0
        last_k = Signal(**rl)            # k_left <= C: the next beat ends its row tile
        last_m = Signal(**rl)            # m_left <= R: the current row tile ends its token
        last_tok = Signal(**rl)          # tok_left == 1
        k_single = Signal(**rl)          # K <= C
        m_single = Signal(**rl)          # M <= R
        # A command is range-checked by registers that check the payload in every cycle
        # (`m_bad`, `k_bad`, `tok_bad`: the checks and nothing else on their inputs), so in
        # the cycle after a transfer (`starting`) they hold the transferred command's verdict:
        # a good command begins to take beats in the cycle after, a bad one is dropped and
        # shows `error`. No wide comparison reaches the stream logic; it costs two cycles per
        # command (``START_LATENCY``).
        starting = Signal()
        # the check of the payload seen in the last cycle, one register per field
        m_bad, k_bad, tok_bad = (Signal(**rl) for _ in range(3))
        cmd_bad = Signal()
        p = self.cmd.payload
        m.d.sync += [m_bad.eq((p.m == 0) | (p.m > cfg.max_m)),
                     k_bad.eq((p.k == 0) | (p.k > cfg.max_k)),
                     tok_bad.eq(p.tokens == 0)]
        # likewise the sequencer's start flags, loaded in the start cycle
        m_one, k_one, tok_one = (Signal(**rl) for _ in range(3))
        # (tok_one: the command's first token group is its last)
        m.d.sync += [m_one.eq(p.m <= R), k_one.eq(p.k <= C),
                     tok_one.eq(p.tokens == 1 if T == 1 else p.tokens <= T)]
        m.d.comb += cmd_bad.eq(m_bad | k_bad | tok_bad)
        dropped = Signal()               # a bad command was transferred in the last cycle
        m.d.comb += dropped.eq(starting & cmd_bad)
        with m.If(starting):
            m.d.sync += [starting.eq(0), busy.eq(~cmd_bad), issuing.eq(~cmd_bad),
                         last_k.eq(k_one), k_single.eq(k_one),
                         last_m.eq(m_one), m_single.eq(m_one), last_tok.eq(tok_one)]
            with m.If(cmd_bad):
                m.d.sync += cmd_error.eq(1)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                busy.eq(1), starting.eq(1),
                m_size.eq(p.m), k_size.eq(p.k),
                m_left.eq(p.m), k_left.eq(p.k), tok_left.eq(p.tokens),
                kt.eq(0), first.eq(1), use_stream.eq(1),
            ]

        m.d.comb += [
            # a dropped command holds `busy` (the register) for its start cycle only; the port
            # never shows it, `cmd` is ready again in the cycle after
            self.busy.eq(busy & ~dropped),
            self.error.eq(cmd_error | dropped | dec_error),
            self.cmd.ready.eq(~busy),
        ]

        # the tag of the beat the sequencer describes
        seq_tag = Signal(beat_tag)
        m.d.comb += [
            seq_tag.kt.eq(kt), seq_tag.first.eq(first), seq_tag.use_stream.eq(use_stream),
            seq_tag.last_k.eq(last_k), seq_tag.last_m.eq(last_m),
            seq_tag.final.eq(last_k & last_m & last_tok),
            seq_tag.rows.eq(Mux(last_m, m_left, R)),
            seq_tag.k_low.eq(k_left[:k_low_bits]),
        ]
        if T > 1:
            # the last group holds the tokens left (<= T), every other one T
            m.d.comb += seq_tag.toks.eq(Mux(last_tok, tok_left, T))

        # `weights.ready` is a function of registers only; it is 0 once the command's last beat
        # is taken, so exactly the command's beats are consumed
        take = Signal()
        m.d.comb += [
            self.weights.ready.eq(~spare_valid & issuing),
            take.eq(self.weights.valid & self.weights.ready),
        ]
        with m.If(take):
            with m.If(last_k):
                m.d.sync += [kt.eq(0), first.eq(1), k_left.eq(k_size), last_k.eq(k_single)]
                with m.If(last_m):
                    m.d.sync += [m_left.eq(m_size), last_m.eq(m_single), use_stream.eq(1),
                                 tok_left.eq(tok_left - T),
                                 last_tok.eq(tok_left == 2 if T == 1
                                             else tok_left <= 2 * T)]  # int-only
                    with m.If(last_tok):
                        m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += [m_left.eq(m_left - R), last_m.eq(m_left <= (R << 1)),
                                 use_stream.eq(0)]
            with m.Else():
                m.d.sync += [kt.eq(kt + 1), first.eq(0), k_left.eq(k_left - C),
                             last_k.eq(k_left <= (C << 1))]

        # -- issue: one weight beat (and, in the first row tile, one act chunk) per cycle -------
        en = Signal()                    # the array pipeline advances
        fire = Signal()                  # a beat enters the array this cycle
        m.d.comb += [
            fire.eq(buf_valid & en & (~buf_tag.use_stream | self.act.valid)),
            self.act.ready.eq(fire & buf_tag.use_stream),
        ]
        # The entries load with their enable alone (`buf` whenever it is free, `spare` whenever
        # it is empty) and the valid flags say whether what they hold is a beat, so the
        # transfer only reaches `buf_valid`, `spare_valid` and the sequencer.
        with m.If(~buf_valid | fire):
            # `buf` is free this cycle: refill it, from `spare` first (`pre` decodes `spare`
            # then)
            m.d.sync += [buf.eq(pre), buf_tag.eq(Mux(spare_valid, spare_tag, seq_tag)),
                         buf_valid.eq(spare_valid | take), spare_valid.eq(0)]
        with m.Elif(take):
            m.d.sync += spare_valid.eq(1)
        with m.If(~spare_valid):
            m.d.sync += [spare.eq(self.weights.payload), spare_tag.eq(seq_tag)]

        # activation buffer: written during the first row tile, read during the others.
        # The write is not gated by `fire`: while `buf` holds a first-row-tile beat, its
        # address is written every cycle with whatever `act` presents; the last write before
        # the beat leaves is the one of its issue cycle, with the chunk it used (earlier writes
        # are overwritten, and no address is read before the first row tile has rewritten it).
        # The read port is enabled by `fire` and addressed with the column tile of the beat
        # after the current one (`spare`, or the sequencer's next), so its data is that beat's
        # chunk (transparent for the same-cycle write when K <= C) and `fire` does not reach
        # the address.
        m.d.comb += [
            act_wr.addr.eq(buf_tag.kt),
            act_wr.data.eq(self.act.payload),
            act_wr.en.eq(buf_valid & buf_tag.use_stream),
            act_rd.addr.eq(Mux(spare_valid, spare_tag.kt, kt)),
            act_rd.en.eq(fire),
        ]
        chunk = Signal(lanes)
        m.d.comb += chunk.eq(Mux(buf_tag.use_stream, self.act.payload, act_rd.data))
        x = Signal(lanes)
        # lanes >= K read as 0; in the last chunk k_left <= C, so its low bits suffice (lane
        # c of every token of the group)
        for c in range(C):
            keep = ~buf_tag.last_k | (buf_tag.k_low > c)
            for j in range(T):
                lane = j * C + c  # int-only
                m.d.comb += x[lane].eq(Mux(keep, chunk[lane], 0))

        # -- issue stage: the rest of the decoding, one register (with the activations) -------
        post = decode_steps(m, cfg.packing, buf, pre_steps, DECODE_STEPS[cfg.packing],
                            name="w_post")
        # data registers (the tags' valid bits say what they hold): no reset, so the engine's
        # reset stays out of their enables (`en` drives every pipeline register)
        trits_r = Signal(data.ArrayLayout(Trit, cfg.trits_per_beat), reset_less=True)
        bad_r = Signal(cfg.bytes_per_beat, reset_less=True)
        x_r = Signal.like(x, reset_less=True)
        first_r = Signal(reset_less=True)
        with m.If(en):
            m.d.sync += [
                trits_r.eq(Cat(*state_trits(post, cfg.trits_per_beat))),
                bad_r.eq(state_bad(post)),
                x_r.eq(x),
                first_r.eq(buf_tag.first),
            ]

        # -- tags travelling alongside the issue stage and the array pipeline -------------------
        tag_layout = data.StructLayout({
            "valid": 1, "last_k": 1, "last_m": 1, "final": 1, "rows": range(R + 1),
            **({"toks": range(T + 1)} if T > 1 else {})})
        # `last_k` is only used together with `valid`, so the tag carries `valid & last_k`
        tag = Signal(tag_layout)
        m.d.comb += [
            tag.valid.eq(fire),
            tag.last_k.eq(fire & buf_tag.last_k),
            tag.last_m.eq(buf_tag.last_m),
            tag.final.eq(buf_tag.final),
            tag.rows.eq(buf_tag.rows),
        ]
        if T > 1:
            m.d.comb += tag.toks.eq(buf_tag.toks)
        stage_tag = None
        for stage in range(self.issue_latency + self.array_latency):
            nxt = Signal(tag_layout, name=f"tag{stage}")
            with m.If(en):
                m.d.sync += nxt.eq(tag)
            tag = nxt
            if stage == 0:
                stage_tag = tag
        tail = tag                       # describes the beat now reflected in arr.acc

        x_bits = cfg.act_bits * C  # int-only
        for j, a in enumerate(arrays):
            m.d.comb += [
                a.en.eq(en),
                a.valid.eq(stage_tag.valid),
                a.first.eq(first_r),
                a.x.eq(x_r if T == 1 else x_r.as_value()[j * x_bits:][:x_bits]),  # int-only
                a.trits.eq(trits_r),
            ]
        # an invalid byte is flagged (two cycles) after its beat reached the issue register; the
        # flag is sticky, so a frozen pipeline (`en` low) may set it repeatedly
        bad_seen = Signal()
        m.d.sync += bad_seen.eq(stage_tag.valid & bad_r.any())
        with m.If(bad_seen):
            m.d.sync += dec_error.eq(1)

        if T == 1:
            self._drain_one_token(m, cfg, arr, tail, en, busy)
        else:
            self._drain_tokens(m, cfg, arrays, tail, en, busy)
        return m

    def _drain_one_token(self, m, cfg, arr, tail, en, busy):
        """Drain bank for ``T = 1``: ``R`` accumulators shifted out one per cycle."""
        R = cfg.rows
        bank = [Signal(signed(cfg.acc_width), name=f"bank{r}", reset_less=True) for r in range(R)]
        drain_cnt = Signal(range(R + 1))
        drain_zero = Signal(init=1)      # drain_cnt == 0, registered
        drain_one = Signal()             # drain_cnt == 1, registered
        drain_last_m = Signal()
        drain_final = Signal()
        drain_free = Signal()
        load = Signal()
        take = Signal()
        m.d.comb += [
            self.result.valid.eq(~drain_zero),
            self.result.payload.acc.eq(bank[0]),
            self.result.payload.last.eq(drain_last_m & drain_one),
            take.eq(self.result.valid & self.result.ready),
            drain_free.eq(drain_zero | (drain_one & self.result.ready)),
            load.eq(tail.last_k & drain_free),
            en.eq(~tail.last_k | drain_free),
        ]
        with m.If(load):
            m.d.sync += [bank[r].eq(arr.acc[r]) for r in range(R)]
            m.d.sync += [
                drain_cnt.eq(tail.rows), drain_zero.eq(tail.rows == 0),
                drain_one.eq(tail.rows == 1), drain_last_m.eq(tail.last_m),
                drain_final.eq(tail.final),
            ]
        with m.Elif(take):
            m.d.sync += [bank[r].eq(bank[r + 1]) for r in range(R - 1)]
            m.d.sync += [drain_cnt.eq(drain_cnt - 1), drain_zero.eq(drain_cnt == 1),
                         drain_one.eq(drain_cnt == 2)]
        with m.If(take & drain_one & drain_final):
            m.d.sync += busy.eq(0)

    def _drain_tokens(self, m, cfg, arrays, tail, en, busy):
        """Drain bank for ``T > 1``: ``T`` chains of ``R`` accumulators, one per token of the
        group; the chains go out one after the other (``sel``, one-hot), each shifting one
        result per cycle, the tile's rows of each of the group's tokens."""
        R, T = cfg.rows, cfg.tokens_per_beat
        rl = {"reset_less": True}
        bank = [[Signal(signed(cfg.acc_width), name=f"bank{j}_{r}", **rl) for r in range(R)]
                for j in range(T)]
        # loaded together with `drain_zero` before anything reads them: no reset
        sel = Signal(T, **rl)            # one-hot: the chain (token) going out
        rows = Signal(range(R + 1), **rl)        # rows of the tile
        row_cnt = Signal(range(R + 1), **rl)     # rows of the current chain left
        tok_cnt = Signal(range(T + 1), **rl)     # chains (tokens) left, the current included
        row_one = Signal(**rl)           # row_cnt == 1, registered
        tok_one = Signal(**rl)           # tok_cnt == 1, registered
        drain_last_m = Signal(**rl)
        drain_final = Signal(**rl)
        drain_zero = Signal(init=1)      # nothing left to drain
        drain_one = Signal()             # exactly one result left
        drain_free = Signal()
        load = Signal()
        take = Signal()
        out = Signal(signed(cfg.acc_width))
        # the selected chain's head: an OR of the chains' heads masked by `sel`
        heads = [Mux(sel[j], bank[j][0], 0) for j in range(T)]
        acc_or = heads[0]
        for h in heads[1:]:
            acc_or = acc_or | h
        m.d.comb += [
            out.eq(acc_or),
            drain_one.eq(row_one & tok_one),
            self.result.valid.eq(~drain_zero),
            self.result.payload.acc.eq(out),
            self.result.payload.last.eq(drain_last_m & drain_one),
            take.eq(self.result.valid & self.result.ready),
            drain_free.eq(drain_zero | (drain_one & self.result.ready)),
            load.eq(tail.last_k & drain_free),
            en.eq(~tail.last_k | drain_free),
        ]
        with m.If(load):
            m.d.sync += [bank[j][r].eq(arrays[j].acc[r]) for j in range(T) for r in range(R)]
            m.d.sync += [
                sel.eq(1), rows.eq(tail.rows), row_cnt.eq(tail.rows),
                row_one.eq(tail.rows == 1), tok_cnt.eq(tail.toks), tok_one.eq(tail.toks == 1),
                drain_zero.eq((tail.rows == 0) | (tail.toks == 0)),
                drain_last_m.eq(tail.last_m), drain_final.eq(tail.final),
            ]
        with m.Elif(take):
            for j in range(T):
                with m.If(sel[j]):
                    m.d.sync += [bank[j][r].eq(bank[j][r + 1]) for r in range(R - 1)]
            with m.If(row_one):
                # the token's last row: on to the next token's chain, or done
                m.d.sync += [sel.eq(sel << 1), row_cnt.eq(rows), row_one.eq(rows == 1),
                             tok_cnt.eq(tok_cnt - 1), tok_one.eq(tok_cnt == 2),
                             drain_zero.eq(tok_one)]
            with m.Else():
                m.d.sync += [row_cnt.eq(row_cnt - 1), row_one.eq(row_cnt == 2)]
        with m.If(take & drain_one & drain_final):
            m.d.sync += busy.eq(0)
