"""Byte-stream width adapter: ``in_bytes`` bytes per transfer in, ``out_bytes`` per transfer out.

Boards with narrow weight memories (e.g. a 16-bit SPRAM port) read ``in_bytes`` bytes per cycle;
the engine wants ``bytes_per_beat`` bytes per weight beat. The gearbox keeps the byte order: the
output stream is the input byte sequence regrouped. It also widens-to-narrows.
"""

import math

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._util import check_int, validated

__all__ = ["Gearbox"]


class Gearbox(wiring.Component):
    """Regroup a byte stream from ``in_bytes`` to ``out_bytes`` bytes per transfer.

    A buffer of ``in_bytes + out_bytes - 1`` bytes and a fill count. ``o.valid`` when at least
    ``out_bytes`` bytes are buffered; ``i.ready`` when the input fits after this cycle's output
    transfer (so ``i.ready`` depends on ``o.ready``). Throughput is
    ``min(in_bytes, out_bytes)``-limited only: one input transfer per cycle while the output keeps
    up, one output transfer per cycle while the input keeps up. Bytes left over when the input
    stops (fewer than ``out_bytes``) wait for more input; reset drops them.

    Parameters
    ----------
    in_bytes, out_bytes : int
        Bytes per input / output transfer (1..256).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(unsigned(8), in_bytes)))
        Input; byte 0 is the earliest.
    o : Out(stream.Signature(ArrayLayout(unsigned(8), out_bytes)))
        Output; byte 0 is the earliest.
    """

    @validated
    def __init__(self, *, in_bytes, out_bytes):
        check_int("in_bytes", in_bytes, 1, 256)
        check_int("out_bytes", out_bytes, 1, 256)
        self._in_bytes = in_bytes
        self._out_bytes = out_bytes
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(8), in_bytes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(8), out_bytes))),
        })

    @property
    def in_bytes(self):
        return self._in_bytes

    @property
    def out_bytes(self):
        return self._out_bytes

    @property
    def capacity(self):
        """Buffered bytes at most: ``in_bytes + out_bytes - 1``."""
        return self._in_bytes + self._out_bytes - 1

    @property
    def ratio(self):
        """``(input transfers, output transfers)`` per repeating group of bytes."""
        g = math.lcm(self._in_bytes, self._out_bytes)
        return g // self._in_bytes, g // self._out_bytes

    def elaborate(self, platform):
        m = Module()
        n_in, n_out, cap = self._in_bytes, self._out_bytes, self.capacity
        buf = Signal(data.ArrayLayout(unsigned(8), cap))
        count = Signal(range(cap + 1))
        take = Signal()                       # output transfer this cycle
        put = Signal()                        # input transfer this cycle
        base = Signal(range(cap + 1))         # fill count after this cycle's output transfer
        m.d.comb += [
            self.o.valid.eq(count >= n_out),
            take.eq(self.o.valid & self.o.ready),
            base.eq(count - Mux(take, n_out, 0)),
            self.i.ready.eq(base <= cap - n_in),
            put.eq(self.i.valid & self.i.ready),
        ]
        for j in range(n_out):
            m.d.comb += self.o.payload[j].eq(buf[j])
        for j in range(cap):
            kept = buf[j + n_out] if j + n_out < cap else 0
            with m.If(take):
                m.d.sync += buf[j].eq(kept)
            for i in range(n_in):
                if i <= j < cap:
                    with m.If(put & (base == j - i)):
                        m.d.sync += buf[j].eq(self.i.payload[i])
        m.d.sync += count.eq(base + Mux(put, n_in, 0))
        return m
