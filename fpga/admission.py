"""RUN admission: does a layer run fit the board's memories? Decided before anything is written.

A RUN of an ``m x k`` layer for ``tokens`` tokens with its weight stream at byte ``wbase``
(:mod:`fpga.runner`) needs

* ``m * tokens`` result entries,
* ``tokens * ceil(k/C)`` activation rows,
* weight bytes up to ``wbase + ceil(m/R) * ceil(k/C) * bytes_per_beat``.

The link (:mod:`fpga.link`) starts the runner only if all three fit, so a RUN that does not
fit is refused with ``RANGE`` and changes nothing (a runner that stops at the end of a memory
has already written part of the results by then).

The products are formed without a multiplier, by loops of additions into one accumulator,
counted by one down counter: one addition of ``m`` per token (results), one of ``ceil(k/C)``
per token (activation rows), then one of a row tile's weight units per row tile from
``wbase`` (8-byte words on the board). ``ceil(k/C)`` is a shift when ``C`` is a power of two
(the board's 5 x 8 engine: 8), else one addition per column tile; a row tile's units are a
sum of shifted copies of it. The result and row sums count up from ``2**N - limit - 1``, so
"more than the limit" is the accumulator's bit ``N`` (a carry out, not a compare); a sum over
its limit ends the loops. Each loop step takes three cycles (the addition, the end-of-loop
flag, then the decision on registered flags), so a decision takes at most
``3 * (2 * tokens + ceil(m/R)) + 3`` cycles (plus ``3 * ceil(k/C)`` when ``C`` is not a power
of two) - a RUN itself takes at least
``tokens * ceil(m/R) * ceil(k/C)``, and its request frame alone 160 bit times.
"""

import math

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fpga.memory import WORD_BYTES
from hw._util import check_int, validated

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

    @validated
    def __init__(self, *, config, weight_bytes: int, act_rows: int, result_depth: int):
        for name, v in (("weight_bytes", weight_bytes), ("act_rows", act_rows),
                        ("result_depth", result_depth)):
            check_int(name, v, 1)
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
        return 3 * (k_loop + 2 * tokens + cfg.m_tiles(m)) + 3

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        R, C, B = cfg.rows, cfg.cols, cfg.bytes_per_beat
        RD, AR, WB = self._result_depth, self._act_rows, self._weight_bytes
        kt_max = cfg.k_tiles(cfg.max_k)
        k_pow2 = C & (C - 1) == 0

        # phases, in this order: COLS (kt by one addition per column tile, only when C is not
        # a power of two), RES (results: acc += m per token), ACT (activation rows: acc += kt
        # per token), W (the weight end: acc += a row tile's units per row tile). Registered
        # phase flags (not the state) select the addend and the counter's step.
        ph_cols, ph_act, ph_w = Signal(), Signal(), Signal()
        kt = Signal(range(kt_max + 1))           # ceil(k / C): activation rows per token
        # the weight end in units of u bytes, the largest power of two dividing both the beat
        # and the (8-byte aligned) wbase: on the board u = B = 8, so a row tile adds kt
        u = math.gcd(B, WORD_BYTES)
        u_shift = u.bit_length() - 1
        per_tile = B // u
        w_limit = WB // u
        tile_units = sum(kt << i for i in range(per_tile.bit_length()) if per_tile >> i & 1)
        # one accumulator. RES and ACT count up from 2**N - limit - 1, so its bit N is "more
        # than the limit" (a carry out, not a compare); N leaves room for the two additions
        # past the limit before the loop stops. W starts at wbase and is compared.
        n = max(RD + 2 * cfg.max_m, AR + 2 * kt_max).bit_length()
        acc = Signal(max(n + 1, (w_limit + 4 * kt_max * per_tile).bit_length()))
        over = acc[n]
        if w_limit & (w_limit - 1) == 0:
            # acc > 2**p as a bit above p, or bit p and any below. Alone this synthesizes to the
            # same 156 LUT4 as `acc > w_limit`, but it is the netlist of the measured board
            # build (48.38 MHz, seed 2); with the plain compare the board's seeds 1-4 gave
            # 47.9 / 44.4 / 45.8 / 45.5 MHz (the placement lottery of a 94 % full device)
            p = w_limit.bit_length() - 1
            w_over_now = acc[p + 1:].any() | (acc[p] & acc[:p].any())
        else:
            w_over_now = acc > w_limit
        w_over = Signal()        # w_over_now, registered (a cycle behind acc)

        # the loops' down counter: what is left of k, tokens or m; a loop ends with the step
        # that takes it to <= 0 (its sign bit or zero after the subtraction). Each step takes
        # three cycles: STEP (the addition and the counter), LAST (the registered `last` from
        # the counter), TEST (the decision on registered flags), so neither a carry chain nor a
        # wide compare reaches the state logic, and no compare follows a carry chain
        cnt = Signal(17)
        cnt_next = Signal(17)
        last = Signal()
        m.d.comb += cnt_next.eq(cnt - Mux(ph_w, R, Mux(ph_cols, C, 1)))
        addend = Mux(ph_w, tile_units, Mux(ph_act, kt, self.m))

        def begin(phase, count, start):
            m.d.sync += [ph_cols.eq(phase == "COLS"), ph_act.eq(phase == "ACT"),
                         ph_w.eq(phase == "W"), cnt.eq(count)]
            if start is not None:
                m.d.sync += acc.eq(start)
            m.next = "STEP"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += w_over.eq(0)
                    if k_pow2:
                        s = C.bit_length() - 1
                        m.d.sync += kt.eq(self.k[s:] + (self.k[:s] != 0))
                        begin("RES", self.tokens, (1 << n) - RD - 1)
                    else:
                        m.d.sync += kt.eq(0)
                        begin("COLS", self.k, None)
            with m.State("STEP"):
                m.d.sync += [cnt.eq(cnt_next), w_over.eq(w_over_now)]
                with m.If(ph_cols):
                    m.d.sync += kt.eq(kt + 1)
                with m.Else():
                    m.d.sync += acc.eq(acc + addend)
                m.next = "LAST"
            with m.State("LAST"):
                # the end of the loop from the registered counter (no carry chain in front of
                # the compare)
                m.d.sync += last.eq(cnt[16] | (cnt == 0))
                m.next = "TEST"
            with m.State("TEST"):
                with m.If(ph_w):
                    with m.If(w_over):
                        m.next = "REFUSE"
                    with m.Elif(last):
                        m.next = "W_END"
                    with m.Else():
                        m.next = "STEP"
                with m.Elif(~ph_cols & over):
                    m.next = "REFUSE"
                with m.Elif(~last):
                    m.next = "STEP"
                with m.Elif(ph_cols):
                    begin("RES", self.tokens, (1 << n) - RD - 1)
                with m.Elif(~ph_act):
                    begin("ACT", self.tokens, (1 << n) - AR - 1)
                with m.Else():
                    begin("W", self.m, self.wbase[u_shift:])
            with m.State("W_END"):
                m.d.sync += w_over.eq(w_over_now)
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.comb += [self.done.eq(1), self.fits.eq(~w_over)]
                m.next = "IDLE"
            with m.State("REFUSE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
