"""RUN admission: does a layer run fit the board's memories? Decided before anything is written.

A RUN of an ``m x k`` layer for ``tokens`` tokens with its weight stream at byte ``wbase``
(:mod:`fpga.runner`) needs

* ``m * tokens`` result entries,
* ``tokens * ceil(k/C)`` activation rows,
* weight bytes up to ``wbase + ceil(m/R) * ceil(k/C) * bytes_per_beat``.

The link (:mod:`fpga.link`) starts the runner only if all three fit, so a RUN that does not
fit is refused with ``RANGE`` and changes nothing (a runner that stops at the end of a memory
has already written part of the results by then).

The products are formed without a multiplier, by loops of additions that share one down
counter: one addition of ``m`` and ``ceil(k/C)`` per token, then one addition of a row tile's
bytes per row tile. ``ceil(k/C)`` and its bytes are a shift when ``C`` and ``bytes_per_beat``
are powers of two (the board's 5 x 8 engine: 8 and 8), else a sum of shifted copies or one
addition per column tile. The result and row sums count up from ``2**N - limit - 1``, so
"more than the limit" is their top bit (a carry out, not a compare); a sum over its limit
ends the loops. Each loop step takes two cycles (the additions, then the decision on
registered flags), so a decision takes at most ``2 * (tokens + ceil(m/R)) + 3`` cycles (plus
``2 * ceil(k/C)`` when ``C`` is not a power of two) - a RUN itself takes at least
``tokens * ceil(m/R) * ceil(k/C)``.
"""

import math

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpga.memory import WORD_BYTES

__all__ = ["RunAdmission"]


class RunAdmission(wiring.Component):
    """Decides whether a RUN fits (see the module docstring).

    Parameters
    ----------
    config : AccelConfig
    weight_bytes, act_rows, result_depth : int
        Sizes of the weight memory (bytes), the activation memory (rows) and the result memory
        (entries).

    Attributes
    ----------
    start : in
        One-cycle pulse: decide for ``m``, ``k``, ``tokens``, ``wbase``, which must hold their
        values until ``done``. The caller has checked ``1 <= m <= max_m``, ``1 <= k <= max_k``,
        ``tokens >= 1`` and ``wbase < weight_bytes``.
    m, k, tokens : in
    wbase : in
        Byte address of the layer's weight stream.
    done : out
        One-cycle pulse with the decision ``fits``.
    fits : out
        Valid with ``done``.
    """

    def __init__(self, *, config, weight_bytes: int, act_rows: int, result_depth: int):
        for name, v in (("weight_bytes", weight_bytes), ("act_rows", act_rows),
                        ("result_depth", result_depth)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                self._MustUse__silence = True
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self._config = config
        self._weight_bytes = weight_bytes
        self._act_rows = act_rows
        self._result_depth = result_depth
        super().__init__({
            "start": In(1), "m": In(16), "k": In(16), "tokens": In(16),
            "wbase": In(range(weight_bytes)),
            "done": Out(1), "fits": Out(1),
        })

    def max_cycles(self, m: int, k: int, tokens: int) -> int:
        """Cycles from ``start`` to ``done`` at most, for a run that fits."""
        cfg = self._config
        k_loop = 0 if cfg.cols & (cfg.cols - 1) == 0 else cfg.k_tiles(k)
        return 2 * (k_loop + tokens + cfg.m_tiles(m)) + 3

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        R, C, B = cfg.rows, cfg.cols, cfg.bytes_per_beat
        RD, AR, WB = self._result_depth, self._act_rows, self._weight_bytes
        kt_max = cfg.k_tiles(cfg.max_k)
        k_pow2 = C & (C - 1) == 0

        # the loops' down counter: what is left of k, tokens or m; a loop ends with the step
        # that takes it to <= 0 (its sign bit or zero right after the subtraction). Each step
        # takes two cycles: ADD (the sums, the counter and its registered `last`), TEST (the
        # decision on registered flags), so no carry chain reaches the state logic; the step
        # comes from registered phase flags, not from the state
        cnt = Signal(17)
        rows_phase = Signal()
        cols_phase = Signal()
        cnt_next = Signal(17)
        last = Signal()
        m.d.comb += cnt_next.eq(cnt - Mux(rows_phase, R, Mux(cols_phase, C, 1)))
        kt = Signal(range(kt_max + 1))           # ceil(k / C): activation rows per token
        # results and activation rows count up from 2**N - limit - 1: the top bit is "more
        # than the limit"; N leaves room for the two additions past it before the loop stops
        res_n = (RD + 2 * cfg.max_m).bit_length()
        act_n = (AR + 2 * kt_max).bit_length()
        res_need = Signal(res_n + 1)
        act_need = Signal(act_n + 1)
        over = res_need[res_n] | act_need[act_n]
        # the weight end in units of u bytes, the largest power of two dividing both the beat
        # and the (8-byte aligned) wbase: on the board u = B = 8, so a row tile adds kt
        u = math.gcd(B, WORD_BYTES)
        u_shift = u.bit_length() - 1
        per_tile = B // u
        w_limit = WB // u
        w_end = Signal(range(w_limit + 4 * kt_max * per_tile + 1))
        tile_units = sum(kt << i for i in range(per_tile.bit_length()) if per_tile >> i & 1)
        if w_limit & (w_limit - 1) == 0:
            # w_end > 2**p without a compare chain: a bit above p, or bit p and any below
            p = w_limit.bit_length() - 1
            w_over_now = w_end[p + 1:].any() | (w_end[p] & w_end[:p].any())
        else:
            w_over_now = w_end > w_limit
        w_over = Signal()        # w_over_now, registered (a cycle behind w_end)

        def add(state, sync):
            m.d.sync += [*sync, cnt.eq(cnt_next), last.eq(cnt_next[16] | (cnt_next == 0))]
            m.next = f"{state}_TEST"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [res_need.eq((1 << res_n) - RD - 1),
                                 act_need.eq((1 << act_n) - AR - 1), w_over.eq(0),
                                 rows_phase.eq(0)]
                    if k_pow2:
                        s = C.bit_length() - 1
                        m.d.sync += [kt.eq(self.k[s:] + (self.k[:s] != 0)),
                                     cnt.eq(self.tokens), cols_phase.eq(0)]
                        m.next = "TOKENS"
                    else:
                        m.d.sync += [kt.eq(0), cnt.eq(self.k), cols_phase.eq(1)]
                        m.next = "COLUMNS"
            if not k_pow2:
                with m.State("COLUMNS"):
                    add("COLUMNS", [kt.eq(kt + 1)])
                with m.State("COLUMNS_TEST"):
                    with m.If(last):
                        m.d.sync += [cnt.eq(self.tokens), cols_phase.eq(0)]
                        m.next = "TOKENS"
                    with m.Else():
                        m.next = "COLUMNS"
            with m.State("TOKENS"):
                add("TOKENS", [res_need.eq(res_need + self.m), act_need.eq(act_need + kt)])
            with m.State("TOKENS_TEST"):
                with m.If(over):
                    m.next = "REFUSE"
                with m.Elif(last):
                    m.d.sync += [cnt.eq(self.m), rows_phase.eq(1),
                                 w_end.eq(self.wbase[u_shift:])]
                    m.next = "ROWS"
                with m.Else():
                    m.next = "TOKENS"
            with m.State("ROWS"):
                add("ROWS", [w_end.eq(w_end + tile_units), w_over.eq(w_over_now)])
            with m.State("ROWS_TEST"):
                with m.If(w_over):
                    m.next = "REFUSE"
                with m.Elif(last):
                    m.next = "ROWS_END"
                with m.Else():
                    m.next = "ROWS"
            with m.State("ROWS_END"):
                m.d.sync += w_over.eq(w_over_now)
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += [self.done.eq(1), self.fits.eq(~w_over)]
                m.next = "IDLE"
            with m.State("REFUSE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
