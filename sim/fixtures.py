"""Small Amaranth components that exercise the co-simulation infrastructure itself.

:class:`ChunkSum` is a one-stage pipelined stream block with an array payload in and a struct
payload out, so the runner, :class:`sim.streams.PayloadCodec`, the drivers and the scoreboard are
tested on the same kinds of ports as the engine (``sim/test_infra.py``).
"""

from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw._util import check_int, validated

__all__ = ["ChunkSum"]


class ChunkSum(wiring.Component):
    """Sum the ``lanes`` signed elements of each input beat; one result per beat.

    Parameters
    ----------
    lanes : int
        Elements per input beat.
    width : int
        Element width (signed).

    Ports
    -----
    data : In(stream) of ``ArrayLayout(signed(width), lanes)``
    sums : Out(stream) of ``{acc: signed(width + lanes.bit_length()), last: 1}``; ``last`` is
        the input beat's lane 0 sign bit (a second field to exercise struct packing).
    beats : Out(16), count of accepted input beats (wraps).
    """

    @validated
    def __init__(self, *, lanes: int = 3, width: int = 8):
        check_int("lanes", lanes, 1)
        check_int("width", width, 2)
        self._lanes, self._width = lanes, width
        self.acc_width = width + lanes.bit_length()
        super().__init__({
            "data": In(stream.Signature(data.ArrayLayout(signed(width), lanes))),
            "sums": Out(stream.Signature(data.StructLayout(
                {"acc": signed(self.acc_width), "last": 1}))),
            "beats": Out(16),
        })

    @property
    def latency(self) -> int:
        """Cycles from an input transfer to the result being valid."""
        return 1

    def elaborate(self, platform):
        m = Module()
        total = 0
        for i in range(self._lanes):
            total = total + self.data.payload[i]
        # a pipeline register: accept when empty or when the held result leaves this cycle
        with m.If(self.sums.ready | ~self.sums.valid):
            m.d.comb += self.data.ready.eq(1)
            m.d.sync += self.sums.valid.eq(self.data.valid)
            with m.If(self.data.valid):
                m.d.sync += [
                    self.sums.payload.acc.eq(total),
                    self.sums.payload.last.eq(self.data.payload[0][-1]),
                    self.beats.eq(self.beats + 1),
                ]
        return m
