"""TEST-ONLY stand-in for ``hw.engine.BitLinearEngine`` (never used outside tests/).

A slow, simple, behavioural engine with the ports of ``docs/architecture.md`` section 5 (its
signature is :class:`hw.engine.EngineSignature`), so that the board's link, memories and runner
can be tested in the Amaranth simulator independently of (and faster than) the real engine. It
decodes ``tq1`` beats through a 256-entry table (invalid bytes raise ``error``), multiplies
nothing (trit-selected add/subtract), processes one beat per cycle when its streams allow and
emits the ``R`` accumulators of a row group one per cycle.
The board-level cocotb test (``sim/test_board.py``) uses the real engine.
"""

import itertools

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from hw.engine import EngineSignature
from sim.golden import pack_trits

__all__ = ["StandInEngine"]


def _tq1_table():
    """byte -> (valid, 5 trits as (nz, neg) codes packed 2 bits each), from the tq1 encoding of
    the test reference (``sim.golden.pack_trits``) over all 243 groups of 5 trits."""
    table = [0] * 256
    for group in itertools.product((-1, 0, 1), repeat=5):
        word = 1  # valid bit
        for i, t in enumerate(group):
            code = 0 if t == 0 else (1 if t == 1 else 3)
            word |= code << (1 + 2 * i)
        table[int(pack_trits(group, "tq1")[0])] = word
    return table


class StandInEngine(wiring.Component):
    def __init__(self, config):
        if config.packing != "tq1":
            raise ValueError("the stand-in engine only reads tq1")
        self.config = config
        R, C = config.rows, config.cols
        super().__init__(EngineSignature(config))
        self._R, self._C = R, C

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = self._R, self._C
        kt_max = cfg.k_tiles(cfg.max_k)
        m.submodules.lut = lut = Memory(shape=11, depth=256, init=_tq1_table())
        luts = [lut.read_port(domain="comb") for _ in range(cfg.bytes_per_beat)]

        mm, kk, tokens = Signal(16), Signal(16), Signal(16)
        acts = Signal(data.ArrayLayout(signed(cfg.act_bits), C * kt_max))
        acc = [Signal(signed(32), name=f"acc{r}") for r in range(R)]
        chunk = Signal(range(kt_max + 1))
        row = Signal(17)
        col = Signal(17)
        kti = Signal(range(kt_max + 1))
        out_r = Signal(range(R + 1))
        tok = Signal(16)

        # decode the current beat
        trits = []  # (nz, neg) per beat trit
        valid_all = Signal()
        vbits = []
        for j, lp in enumerate(luts):
            m.d.comb += lp.addr.eq(self.weights.payload[j])
            vbits.append(lp.data[0])
            for i in range(5):
                trits.append((lp.data[1 + 2 * i], lp.data[2 + 2 * i]))
        m.d.comb += valid_all.eq(sum(vbits) == len(vbits))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    with m.If((p.m == 0) | (p.m > cfg.max_m) | (p.k == 0) | (p.k > cfg.max_k)
                              | (p.tokens == 0)):
                        m.d.sync += self.error.eq(1)
                    with m.Else():
                        m.d.sync += [mm.eq(p.m), kk.eq(p.k), tokens.eq(p.tokens), tok.eq(0),
                                     chunk.eq(0), col.eq(0), self.busy.eq(1)]
                        m.next = "ACT"
            with m.State("ACT"):
                m.d.comb += self.act.ready.eq(1)
                with m.If(self.act.valid):
                    for c in range(kt_max):
                        with m.If(chunk == c):
                            for i in range(C):
                                m.d.sync += acts[c * C + i].eq(self.act.payload[i])
                    m.d.sync += [chunk.eq(chunk + 1), col.eq(col + C)]
                    with m.If(col + C >= kk):
                        m.d.sync += [row.eq(0), kti.eq(0), col.eq(0)]
                        m.d.sync += [a.eq(0) for a in acc]
                        m.next = "MAC"
            with m.State("MAC"):
                m.d.comb += self.weights.ready.eq(1)
                with m.If(self.weights.valid):
                    with m.If(~valid_all):
                        m.d.sync += self.error.eq(1)
                    for r in range(R):
                        terms = []
                        for c in range(C):
                            x = Signal(signed(cfg.act_bits), name=f"x{r}_{c}")
                            for t in range(kt_max):
                                with m.If(kti == t):
                                    m.d.comb += x.eq(acts[t * C + c])
                            nz, neg = trits[r * C + c]
                            term = Signal(signed(cfg.act_bits + 1), name=f"t{r}_{c}")
                            with m.If(nz & ~neg):
                                m.d.comb += term.eq(x)
                            with m.Elif(nz & neg):
                                m.d.comb += term.eq(-x)
                            terms.append(term)
                        m.d.sync += acc[r].eq(acc[r] + sum(terms))
                    m.d.sync += [kti.eq(kti + 1), col.eq(col + C)]
                    with m.If(col + C >= kk):
                        m.d.sync += [col.eq(0), out_r.eq(0)]
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.result.valid.eq(1)
                for r in range(R):
                    with m.If(out_r == r):
                        m.d.comb += self.result.payload.acc.eq(acc[r])
                last_row = (row + out_r + 1 == mm)
                m.d.comb += self.result.payload.last.eq(last_row)
                with m.If(self.result.ready):
                    m.d.sync += out_r.eq(out_r + 1)
                    with m.If(last_row):
                        m.d.sync += tok.eq(tok + 1)
                        with m.If(tok + 1 == tokens):
                            m.d.sync += self.busy.eq(0)
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += [chunk.eq(0), col.eq(0)]
                            m.next = "ACT"
                    with m.Elif(out_r == R - 1):
                        m.d.sync += [row.eq(row + R), kti.eq(0), col.eq(0)]
                        m.d.sync += [a.eq(0) for a in acc]
                        m.next = "MAC"
        return m
