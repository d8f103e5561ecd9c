"""Weight-stream decoder: packed bytes in, one beat of ``R x C`` trit codes out per transfer.

Packings (``docs/architecture.md`` section 3):

* ``i2``: byte ``j`` holds trits ``4j .. 4j+3``, trit ``4j+i`` in bits ``[2i+1:2i]`` as
  ``trit + 1``; code 3 is invalid.
* ``tq1``: byte ``j`` holds trits ``5j .. 5j+4`` in base 3, stored as ``ceil(q * 256 / 243)``
  (llama.cpp TQ1_0 ``qs``). Digit ``i`` is ``(3 x_i) >> 8`` with ``x_0 = byte`` and
  ``x_{i+1} = (3 x_i) mod 256``; ``3 x`` is ``(x << 1) + x``, so one 10-bit adder per digit gives
  both the digit (bits 8..9) and the next ``x`` (bits 0..7). No multiplier. The 13 byte values the
  encoder never produces are exactly those with ``x_5 = (243 byte) mod 256 >= 243``; ``x_5``
  falls out of the same shift-add chain. Two digits can come from one adder:
  ``9 x_i = (x_i << 3) + x_i = 256 (3 d_i + d_{i+1}) + x_{i+2}``, so the hardware decodes a byte
  with three dependent adders (``9x``, ``9x``, ``3x``) instead of five, and splits the 4-bit
  ``3 d_i + d_{i+1}`` (0..8) into two digits with a LUT each.

A digit / code ``d`` in {0, 1, 2} maps to the trit ``d - 1``: ``nz = ~d[0]``,
``neg = ~d[0] & ~d[1]``.

Decoding is a chain of **steps** (``DECODE_STEPS``: ``tq1`` has 3, one shift-add each, each
depending on the previous one; ``i2`` has 1). The partial result between steps is a
:func:`state_layout` value (per byte: the remaining ``x``, the trits decoded so far, the
invalid flag), so pipeline registers can go between any two steps: :func:`decode_steps` emits the
logic of a range of steps. :class:`WeightDecoder` is the stand-alone stream decoder with
``stages`` registers; the engine (:mod:`hw.engine`) splits the same steps around its one-beat
input buffer (``ENGINE_PRE_STEPS`` before it, the rest after the issue).
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.accel import TRITS_PER_BYTE

from ._util import check_int as _check_int
from ._util import validated
from .trit import Trit

__all__ = ["WeightDecoder", "DECODE_STEPS", "ENGINE_PRE_STEPS", "state_layout", "initial_state",
           "decode_steps", "state_trits", "state_bad"]

#: Dependent decoding steps per packing (the depth of the decode logic, in adders / LUT levels).
DECODE_STEPS = {"i2": 1, "tq1": 3}
#: Steps the engine decodes before its input buffer register; the rest run in the issue stage.
ENGINE_PRE_STEPS = {"i2": 1, "tq1": 1}


def _check_packing(packing):
    if packing not in TRITS_PER_BYTE:
        raise ValueError(f"packing must be one of {tuple(TRITS_PER_BYTE)}, got {packing!r}")


def state_layout(packing, n_bytes):
    """Layout of a partially decoded beat of ``n_bytes`` bytes.

    Per byte: ``x`` (the part not decoded yet: the byte for ``i2`` before its step, ``x_{2i}``
    for ``tq1`` after ``i`` steps), ``trits`` (``trits_per_byte`` codes, valid for the steps
    done) and ``bad`` (the byte is invalid; known after the last step).
    """
    _check_packing(packing)
    byte = data.StructLayout({
        "x": unsigned(8),
        "trits": data.ArrayLayout(Trit, TRITS_PER_BYTE[packing]),
        "bad": unsigned(1),
    })
    return data.ArrayLayout(byte, n_bytes)


def _digit_to_trit(digit):
    return Cat(~digit[0], ~digit[0] & ~digit[1])     # Trit layout: nz (bit 0), neg (bit 1)


def _pair_to_trit(v, which):
    """Trit code of digit ``v // 3`` (``which == 0``) or ``v % 3`` (1) of ``v`` in 0..8.

    Written as equalities with constants (LUT logic, no divider, no comparator chain).
    """
    groups = ([0, 1, 2], [3, 4, 5], [6, 7, 8]) if which == 0 else ([0, 3, 6], [1, 4, 7],
                                                                   [2, 5, 8])
    is_0, is_1 = (Cat(*[v == c for c in group]).any() for group in groups[:2])
    return Cat(~is_1, is_0)      # digit 0 -> -1 (nz, neg), 1 -> 0, 2 -> +1 (nz)


def initial_state(m, packing, packed, *, name="dec_s0"):
    """Return a state signal (no step done) driven from ``packed`` (an array of bytes)."""
    n_bytes = packed.shape().length
    state = Signal(state_layout(packing, n_bytes), name=name)
    for j in range(n_bytes):
        m.d.comb += state[j].x.eq(packed[j])
    return state


def decode_steps(m, packing, state, lo, hi, *, name):
    """Emit the combinational logic of decoding steps ``lo .. hi-1``; return the new state.

    Parameters
    ----------
    m : Module
        Module to add the logic to.
    packing : str
        ``"i2"`` or ``"tq1"``.
    state : View of :func:`state_layout`
        The state after ``lo`` steps.
    lo, hi : int
        Step range, ``0 <= lo <= hi <= DECODE_STEPS[packing]``.
    name : str
        Name prefix of the new signals.
    """
    _check_packing(packing)
    if not 0 <= lo <= hi <= DECODE_STEPS[packing]:
        raise ValueError(f"bad step range {lo}..{hi} for {packing}")
    n_bytes = state.shape().length
    out = Signal(state_layout(packing, n_bytes), name=name)
    for j in range(n_bytes):
        x = state[j].x
        trits = [state[j].trits[i].as_value() for i in range(TRITS_PER_BYTE[packing])]
        bad = state[j].bad
        for step in range(lo, hi):
            if packing == "i2":
                codes = [x[2 * i:2 * i + 2] for i in range(4)]  # int-only
                trits = [_digit_to_trit(code) for code in codes]
                bad = Cat(*[code[0] & code[1] for code in codes]).any()
            elif step < 2:
                # two digits per adder: 9 x_i = 256 (3 d_i + d_{i+1}) + x_{i+2}, because
                # 3 x_i = 256 d_i + x_{i+1} and 3 x_{i+1} = 256 d_{i+1} + x_{i+2}
                x9 = Signal(12, name=f"{name}_b{j}_x9_{step}")
                m.d.comb += x9.eq((x << 3) + x)      # 9 * x, shifts and adds only
                v = x9[8:12]                         # 3 d_i + d_{i+1}, 0..8
                trits[step << 1] = _pair_to_trit(v, 0)
                trits[(step << 1) + 1] = _pair_to_trit(v, 1)
                x = x9[0:8]                          # x_{i+2} = (9 * x_i) mod 256
            else:
                x3 = Signal(10, name=f"{name}_b{j}_x3_{step}")
                m.d.comb += x3.eq((x << 1) + x)      # 3 * x, shifts and adds only
                trits[4] = _digit_to_trit(x3[8:10])
                x = x3[0:8]                          # (3 * x) mod 256
                # x is now r = (243 * byte) mod 256, and q = floor(243 * byte / 256) is the
                # digit value. byte == ceil(256 q / 243)  <=>  0 <= 243 byte - 256 q <= 242
                # <=>  r <= 242: the byte is outside the encoder's image exactly when
                # r >= 243 (a 4-LUT check instead of comparing with 13 constants), written
                # as logic (r[7:4] all ones and r[3:0] >= 3) so it is LUTs, not a carry chain.
                bad = x[4:8].all() & (x[3] | x[2] | (x[1] & x[0]))
        m.d.comb += [out[j].x.eq(x), out[j].bad.eq(bad)]
        m.d.comb += [out[j].trits[i].eq(t) for i, t in enumerate(trits)]
    return out


def state_trits(state, trits_per_beat):
    """The first ``trits_per_beat`` trit codes of a fully decoded state, as a flat list."""
    layout = state.shape()
    per = layout.elem_shape["trits"].shape.length
    flat = [state[j].trits[i] for j in range(layout.length) for i in range(per)]
    return flat[:trits_per_beat]


def state_bad(state):
    """``Cat`` of the per-byte invalid flags of a fully decoded state."""
    return Cat(*[state[j].bad for j in range(state.shape().length)])


def _stage_bounds(steps, stages):
    """Step index after which each of ``stages`` registers sits (spread evenly, last = steps)."""
    return [-(-(k + 1) * steps // stages) for k in range(stages)]  # int-only


class WeightDecoder(wiring.Component):
    """Decode packed weight bytes into trit codes, one beat per cycle, with a sticky error flag.

    A pipeline of ``stages`` registers, the decoding steps spread evenly between them; the
    pipeline advances whenever its output register is empty or being read
    (``packed.ready = ~trits.valid | trits.ready``), so a beat is accepted every cycle the
    consumer accepts one (line rate, full backpressure, no beat lost or repeated).

    Parameters
    ----------
    packing : str
        ``"i2"`` or ``"tq1"``.
    trits_per_beat : int
        Trits in one output beat (``rows * cols``). The input beat holds
        ``ceil(trits_per_beat / trits_per_byte)`` bytes; trits past ``trits_per_beat`` (padding)
        are dropped, but their bytes are still checked for invalid codes.
    stages : int
        Pipeline registers, ``1 .. DECODE_STEPS[packing]`` (``tq1``: 3 dependent adders; 2
        stages put at most 2 in one cycle).

    Attributes
    ----------
    packed : In(stream.Signature(ArrayLayout(unsigned(8), bytes_per_beat)))
        Packed weight beats.
    trits : Out(stream.Signature(ArrayLayout(Trit, trits_per_beat)))
        Decoded beats. The trits decoded from an invalid byte are unspecified (``error`` says
        the beat is bad); the beat still flows, so the stream keeps its length.
    error : Out(1)
        Sticky: set in the cycle after a beat with an invalid code (i2 code 3, tq1 byte outside
        the encoder's 243-value image) is presented on ``trits``; cleared only by reset.
    """

    @validated
    def __init__(self, *, packing, trits_per_beat, stages=1):
        _check_packing(packing)
        _check_int("trits_per_beat", trits_per_beat, 1, 1 << 16)
        _check_int("stages", stages, 1, DECODE_STEPS[packing])
        self._packing = packing
        self._trits_per_beat = trits_per_beat
        self._stages = stages
        self._bytes_per_beat = -(-trits_per_beat // TRITS_PER_BYTE[packing])
        super().__init__({
            "packed": In(stream.Signature(data.ArrayLayout(unsigned(8), self._bytes_per_beat))),
            "trits": Out(stream.Signature(data.ArrayLayout(Trit, trits_per_beat))),
            "error": Out(1),
        })

    @classmethod
    def from_config(cls, config, *, stages=None):
        """The decoder for an ``AccelConfig``; ``tq1`` gets 2 stages, ``i2`` 1 by default."""
        if stages is None:
            stages = 2 if config.packing == "tq1" else 1
        return cls(packing=config.packing, trits_per_beat=config.trits_per_beat, stages=stages)

    @property
    def packing(self):
        """``"i2"`` or ``"tq1"``."""
        return self._packing

    @property
    def trits_per_beat(self):
        """Trits per output beat."""
        return self._trits_per_beat

    @property
    def bytes_per_beat(self):
        """Packed bytes per input beat, ``ceil(trits_per_beat / trits_per_byte)``."""
        return self._bytes_per_beat

    @property
    def stages(self):
        """Pipeline registers between the decoding steps."""
        return self._stages

    @property
    def latency(self):
        """Cycles from an accepted input beat to its output beat (``stages``)."""
        return self._stages

    def elaborate(self, platform):
        m = Module()
        adv = Signal()
        m.d.comb += [adv.eq(~self.trits.valid | self.trits.ready), self.packed.ready.eq(adv)]
        state = initial_state(m, self._packing, self.packed.payload)
        valid = self.packed.valid
        lo = 0
        for k, hi in enumerate(_stage_bounds(DECODE_STEPS[self._packing], self._stages)):
            comb = decode_steps(m, self._packing, state, lo, hi, name=f"dec_c{k}")
            reg = Signal(comb.shape(), name=f"dec_r{k}")
            valid_r = Signal(name=f"dec_v{k}")
            with m.If(adv):
                m.d.sync += [reg.eq(comb), valid_r.eq(valid)]
            state, valid, lo = reg, valid_r, hi
        m.d.comb += self.trits.valid.eq(valid)
        for t, code in enumerate(state_trits(state, self._trits_per_beat)):
            m.d.comb += self.trits.payload[t].eq(code)
        with m.If(valid & state_bad(state).any()):
            m.d.sync += self.error.eq(1)
        return m
