"""A fully registered stream buffer (skid buffer) for cutting combinational handshake paths.

Between two blocks whose ``ready`` and ``valid`` go through several levels of logic each (the
engine's issue condition and a memory reader's queue, say), a direct connection makes one long
path from the sink's state to the source's register enables. :class:`SkidBuffer` puts registers
on both sides: ``o.valid`` / ``o.payload`` come from a register, and ``i.ready`` is a register
too, so no path crosses it. It still moves one transfer per cycle (full throughput) and adds
one cycle of latency.
"""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ._util import validated

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Two-entry stream buffer with registered ``o.valid``, ``o.payload`` and ``i.ready``.

    The output register holds the beat presented on ``o``; the skid register catches the one
    beat that can arrive in the cycle the output stalls (``i.ready`` is registered, so it only
    falls one cycle later). Beats leave in the order they arrived; none is lost or repeated.

    Parameters
    ----------
    shape : shape-like
        The payload shape (any ``Shape`` / ``lib.data`` layout).

    Attributes
    ----------
    i : In(stream.Signature(shape))
        Input stream; ``i.ready`` is ``~skid_valid``, a register.
    o : Out(stream.Signature(shape))
        Output stream; ``o.valid`` and ``o.payload`` are registers.
    """

    @validated
    def __init__(self, *, shape):
        try:
            Shape.cast(shape)
        except TypeError as exc:
            raise TypeError(f"shape must be shape-like, got {shape!r}") from exc
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def shape(self):
        return self._shape

    @property
    def latency(self):
        """Cycles from an ``i`` transfer to the beat being valid on ``o`` (no stall): 1."""
        return 1

    def elaborate(self, platform):
        m = Module()
        skid = Signal(self._shape, name="skid")
        skid_valid = Signal()
        take = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):
            # the output register is free this cycle: refill it, from the skid register first
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += self.o.valid.eq(self.i.valid)
                with m.If(self.i.valid):
                    m.d.sync += self.o.payload.eq(self.i.payload)
        with m.Elif(take):
            # the output stalls and a beat arrives: park it
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
