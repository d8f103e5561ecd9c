"""Weight-stream decoder: packed bytes in, one beat of ``R x C`` trit codes out per transfer.

Packings (``docs/architecture.md`` section 3):

* ``i2``: byte ``j`` holds trits ``4j .. 4j+3``, trit ``4j+i`` in bits ``[2i+1:2i]`` as
  ``trit + 1``; code 3 is invalid.
* ``tq1``: byte ``j`` holds trits ``5j .. 5j+4`` in base 3, stored as ``ceil(q * 256 / 243)``
  (llama.cpp TQ1_0 ``qs``). Digit ``i`` is ``(3 x_i) >> 8`` with ``x_0 = byte`` and
  ``x_{i+1} = (3 x_i) mod 256``; ``3 x`` is ``(x << 1) + x``, so one 10-bit adder per digit gives
  both the digit (bits 8..9) and the next ``x`` (bits 0..7). No multiplier. The 13 byte values the
  encoder never produces are exactly those with ``x_5 = (243 byte) mod 256 >= 243``; ``x_5``
  falls out of the same shift-add chain.

A digit / code ``d`` in {0, 1, 2} maps to the trit ``d - 1``: ``nz = ~d[0]``,
``neg = ~d[0] & ~d[1]``.
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ._util import check_int as _check_int
from ._util import validated
from .trit import Trit

__all__ = ["WeightDecoder", "TQ1_VALID_BYTES", "TQ1_INVALID_BYTES", "TRITS_PER_BYTE"]

TRITS_PER_BYTE = {"i2": 4, "tq1": 5}

#: The 243 byte values the TQ1_0 encoder produces, ``ceil(q * 256 / 243)`` for ``q`` in 0..242.
TQ1_VALID_BYTES = frozenset(-(-(q << 8) // 243) for q in range(243))
#: The 13 byte values it never produces (invalid in a tq1 stream).
TQ1_INVALID_BYTES = tuple(sorted(set(range(256)) - TQ1_VALID_BYTES))


def _digit_to_trit(m, digit, trit):
    m.d.comb += [
        trit.nz.eq(~digit[0]),
        trit.neg.eq(~digit[0] & ~digit[1]),
    ]


class WeightDecoder(wiring.Component):
    """Decode packed weight bytes into trit codes, one beat per cycle, with a sticky error flag.

    The output is registered (one pipeline stage); ``packed.ready = ~trits.valid | trits.ready``
    so a beat is accepted every cycle the consumer accepts one (line rate, full backpressure).

    Parameters
    ----------
    packing : str
        ``"i2"`` or ``"tq1"``.
    trits_per_beat : int
        Trits in one output beat (``rows * cols``). The input beat holds
        ``ceil(trits_per_beat / trits_per_byte)`` bytes; trits past ``trits_per_beat`` (padding)
        are dropped, but their bytes are still checked for invalid codes.

    Attributes
    ----------
    packed : In(stream.Signature(ArrayLayout(unsigned(8), bytes_per_beat)))
        Packed weight beats.
    trits : Out(stream.Signature(ArrayLayout(Trit, trits_per_beat)))
        Decoded beats. The trits decoded from an invalid byte are unspecified (``error`` says
        the beat is bad); the beat still flows, so the stream keeps its length.
    error : Out(1)
        Sticky: set after a beat with an invalid code (i2 code 3, tq1 byte outside the encoder's
        243-value image) was accepted; cleared only by reset.
    """

    @validated
    def __init__(self, *, packing, trits_per_beat):
        if packing not in TRITS_PER_BYTE:
            raise ValueError(f"packing must be one of {tuple(TRITS_PER_BYTE)}, got {packing!r}")
        _check_int("trits_per_beat", trits_per_beat, 1, 1 << 16)
        self._packing = packing
        self._trits_per_beat = trits_per_beat
        self._bytes_per_beat = -(-trits_per_beat // TRITS_PER_BYTE[packing])
        super().__init__({
            "packed": In(stream.Signature(data.ArrayLayout(unsigned(8), self._bytes_per_beat))),
            "trits": Out(stream.Signature(data.ArrayLayout(Trit, trits_per_beat))),
            "error": Out(1),
        })

    @classmethod
    def from_config(cls, config):
        return cls(packing=config.packing, trits_per_beat=config.trits_per_beat)

    packing = property(lambda self: self._packing)
    trits_per_beat = property(lambda self: self._trits_per_beat)
    bytes_per_beat = property(lambda self: self._bytes_per_beat)

    @property
    def latency(self):
        """Cycles from an accepted input beat to its output beat: 1 (registered output)."""
        return 1

    def _decode_byte_i2(self, m, byte, trits):
        bad = []
        for i in range(4):
            code = byte[2 * i:2 * i + 2]  # int-only
            bad.append(code[0] & code[1])
            if trits[i] is not None:
                _digit_to_trit(m, code, trits[i])
        return Cat(*bad).any()

    def _decode_byte_tq1(self, m, byte, trits):
        x = byte
        for i in range(5):
            x3 = Signal(10, name=f"x3_{i}")
            m.d.comb += x3.eq((x << 1) + x)        # 3 * x, shifts and adds only
            if trits[i] is not None:
                _digit_to_trit(m, x3[8:10], trits[i])
            x = x3[0:8]                            # (3 * x) mod 256
        # x is now r = (243 * byte) mod 256, and q = floor(243 * byte / 256) is the digit value.
        # byte == ceil(256 q / 243)  <=>  0 <= 243 byte - 256 q <= 242  <=>  r <= 242, so the
        # byte is outside the encoder's image exactly when r >= 243 (a 4-LUT check, instead of
        # comparing with the 13 invalid constants).
        return x >= 243

    def elaborate(self, platform):
        m = Module()
        per_byte = TRITS_PER_BYTE[self._packing]
        decode = self._decode_byte_i2 if self._packing == "i2" else self._decode_byte_tq1
        decoded = Signal(data.ArrayLayout(Trit, self._trits_per_beat))
        bad = []
        for j in range(self._bytes_per_beat):
            slots = [decoded[t] if t < self._trits_per_beat else None
                     for t in range(j * per_byte, (j + 1) * per_byte)]  # int-only
            bad.append(decode(m, self.packed.payload[j], slots))
        invalid = Signal()
        m.d.comb += invalid.eq(Cat(*bad).any())

        m.d.comb += self.packed.ready.eq(~self.trits.valid | self.trits.ready)
        with m.If(self.packed.ready):
            m.d.sync += self.trits.valid.eq(self.packed.valid)
        with m.If(self.packed.valid & self.packed.ready):
            m.d.sync += self.trits.payload.eq(decoded)
            with m.If(invalid):
                m.d.sync += self.error.eq(1)
        return m
