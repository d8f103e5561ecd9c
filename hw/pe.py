"""Ternary lane (processing element): ``+x``, ``-x`` or ``0`` selected by a trit, muxes only."""

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ._util import check_int, validated
from .trit import Trit

__all__ = ["TernaryLane"]


class TernaryLane(wiring.Component):
    """One ternary multiply ``trit * x`` without a multiplier: ``y + corr == trit * x``.

    ``-x`` is formed as ``~x + 1`` (two's complement) with the ``+1`` left out: the lane outputs
    ``y = nz ? (neg ? ~x : x) : 0`` (one LUT4 per bit on iCE40, same width as ``x``) and the
    correction bit ``corr = nz & neg``. The row feeds each lane's ``corr`` into a carry input of
    its adder tree, where it costs nothing (the iCE40 carry chain has a free carry-in). So no
    per-lane negation is built at all.

    Parameters
    ----------
    act_bits : int
        Width of the signed activation code ``x`` (2..16).

    Attributes
    ----------
    x : In(signed(act_bits))
        Activation code.
    trit : In(Trit)
        Weight trit code; the invalid code ``nz=0, neg=1`` selects 0.
    y : Out(signed(act_bits))
        ``x`` if ``trit`` is +1, ``~x = -x - 1`` if -1, else 0. Combinational.
    corr : Out(1)
        1 if ``trit`` is -1 (completes ``-x = ~x + 1``).
    """

    @validated
    def __init__(self, *, act_bits):
        check_int("act_bits", act_bits, 2, 16)
        self._act_bits = act_bits
        super().__init__({
            "x": In(signed(act_bits)),
            "trit": In(Trit),
            "y": Out(signed(act_bits)),
            "corr": Out(1),
        })

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def latency(self):
        """Clock cycles from input to output: 0 (combinational)."""
        return 0

    def elaborate(self, platform):
        m = Module()
        with m.If(self.trit.nz):
            with m.If(self.trit.neg):
                m.d.comb += [self.y.eq(~self.x), self.corr.eq(1)]
            with m.Else():
                m.d.comb += self.y.eq(self.x)
        return m
