"""One array row: ``C`` ternary lanes, a pipelined adder tree and an accumulator."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.accel import tree_depth

from ._util import check_int as _check_int
from ._util import validated
from .pe import TernaryLane
from .trit import Trit

__all__ = ["Row", "tree_depth", "register_levels"]


def register_levels(cols, adder_stages):
    """Tree levels (1-based: after that many adder levels) followed by a pipeline register.

    The ``adder_stages`` registers are spread evenly over the ``tree_depth(cols)`` levels and
    the accumulator adder after them, which counts as one more level (it is the widest adder):
    with two stages on a three-level tree (``cols = 8``) the registers follow levels 2 and 3,
    so the accumulator's adder has a stage of its own. With ``adder_stages == tree_depth``
    every level is registered.
    """
    depth = tree_depth(cols)
    levels = {-(-(i + 1) * (depth + 1) // (adder_stages + 1))                     # int-only
              for i in range(adder_stages)}
    return sorted(levels)


class Row(wiring.Component):
    """A row of ``cols`` ternary MACs: ``acc <- (first ? 0 : acc) + sum_c trit_c * x_c``.

    All registers advance only when ``en`` is high (the engine freezes the whole pipeline with it);
    a beat with ``valid`` low is a bubble and leaves the accumulator unchanged. The beat presented
    with ``valid & en`` in cycle ``t`` is in ``acc`` after ``latency`` enabled cycles.

    Parameters
    ----------
    cols : int
        Lanes ``C``.
    act_bits : int
        Activation code width.
    acc_width : int
        Accumulator width (the engine uses ``AccelConfig.acc_width``, proven by
        ``acc_width_for``); the tree sum is truncated to it, which is exact whenever the true
        dot product fits.
    adder_stages : int
        Pipeline registers inside the adder tree, ``0 .. tree_depth(cols)``.

    Attributes
    ----------
    en : In(1)
        Advance the pipeline.
    valid : In(1)
        The inputs carry a beat.
    first : In(1)
        The beat starts a new dot product (the accumulator restarts from 0).
    x : In(ArrayLayout(signed(act_bits), cols))
        Activation codes.
    trits : In(ArrayLayout(Trit, cols))
        Weight trits of this row.
    acc : Out(signed(acc_width))
        The accumulator register. It has no reset (nor have the adder-tree registers): only the
        ``valid`` flags are reset, and a beat with ``first`` restarts the accumulator.
    """

    @validated
    def __init__(self, *, cols, act_bits, acc_width, adder_stages=0):
        _check_int("cols", cols, 1, 1024)
        _check_int("act_bits", act_bits, 2, 16)
        _check_int("acc_width", acc_width, act_bits + 1, 64)
        _check_int("adder_stages", adder_stages, 0, tree_depth(cols))
        self._cols = cols
        self._act_bits = act_bits
        self._acc_width = acc_width
        self._adder_stages = adder_stages
        super().__init__({
            "en": In(1),
            "valid": In(1),
            "first": In(1),
            "x": In(data.ArrayLayout(signed(act_bits), cols)),
            "trits": In(data.ArrayLayout(Trit, cols)),
            "acc": Out(signed(acc_width)),
        })

    @property
    def cols(self):
        return self._cols

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def acc_width(self):
        return self._acc_width

    @property
    def adder_stages(self):
        return self._adder_stages

    @property
    def latency(self):
        """Enabled cycles from a beat at the inputs to its effect in ``acc``."""
        return self._adder_stages + 1

    def elaborate(self, platform):
        m = Module()
        terms = []
        carries = []                     # lane corrections (+1 of -x = ~x + 1) not yet added
        for c in range(self._cols):
            lane = TernaryLane(act_bits=self._act_bits)
            m.submodules[f"lane{c}"] = lane
            m.d.comb += [
                lane.x.eq(self.x[c]),
                lane.trit.eq(self.trits[c]),
            ]
            terms.append(lane.y)
            carries.append(lane.corr)

        valid, first = self.valid, self.first
        reg_after = register_levels(self._cols, self._adder_stages)
        level = 0
        while True:
            if level in reg_after:
                regs = []
                for i, term in enumerate(terms):
                    reg = Signal(signed(len(term)), name=f"sum_l{level}_{i}", reset_less=True)
                    with m.If(self.en):
                        m.d.sync += reg.eq(term)
                    regs.append(reg)
                terms = regs
                carries_r = []
                for i, bit in enumerate(carries):
                    reg = Signal(name=f"corr_l{level}_{i}", reset_less=True)
                    with m.If(self.en):
                        m.d.sync += reg.eq(bit)
                    carries_r.append(reg)
                carries = carries_r
                valid_r = Signal(name=f"valid_l{level}")
                first_r = Signal(name=f"first_l{level}", reset_less=True)
                with m.If(self.en):
                    m.d.sync += [valid_r.eq(valid), first_r.eq(first)]
                valid, first = valid_r, first_r
            if len(terms) == 1:
                break
            pairs = []
            for i in range(0, len(terms) - 1, 2):
                # one pending correction bit enters each adder as its carry-in (free on iCE40);
                # a kept wire per partial sum stops Yosys' alumacc from fusing the tree into one
                # $macc (mapped to LUT full adders), so each adder maps to a carry chain
                total = Signal(signed(max(len(terms[i]), len(terms[i + 1])) + 1),
                               name=f"sum_{level + 1}_{i // 2}", attrs={"keep": 1})
                m.d.comb += total.eq(terms[i] + terms[i + 1] + carries.pop())
                pairs.append(total)
            if len(terms) % 2:
                pairs.append(terms[-1])
            terms = pairs
            level += 1

        # C lanes, C - 1 tree adders: exactly one correction bit is left; it enters the
        # accumulator adder as its carry-in (no separate adder for it). A new dot product starts
        # from `sum + corr` (its own adder, in parallel), so the mux sits after both adders.
        assert len(carries) == 1
        width = self._acc_width
        # the accumulator is a data register: a beat with `first` overwrites it, so it needs no
        # reset (`reset_less`), which keeps a reset out of its clock-enable and data logic
        acc = Signal(signed(width), name="acc_r", reset_less=True)
        m.d.comb += self.acc.eq(acc)
        restart = Signal(signed(width), attrs={"keep": 1})
        update = Signal(signed(width), attrs={"keep": 1})
        m.d.comb += [
            restart.eq(terms[0] + carries[0]),
            update.eq(acc + terms[0] + carries[0]),
        ]
        with m.If(self.en & valid):
            m.d.sync += acc.eq(Mux(first, restart, update))
        return m
