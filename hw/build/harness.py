"""Synthesis harness: feed a component's wide input ports from one pin, reduce outputs to one pin.

The engine's streams are hundreds of bits wide and cannot go to package pins. The harness drives
every input port bit from a shift register loaded serially from one input pin (``din``) and
XOR-reduces every output port bit into one registered output pin (``dout``). Because every input
bit depends on the pin and every output bit reaches a pin, Yosys cannot optimise the design away.
Harness overhead: one flip-flop per input port bit (the shift register), one per output bit
(registered before the XOR tree), and the XOR tree (about ``out_bits / 3`` LUT4):
:func:`harness_overhead`, the report's ``harness_overhead`` section.

:class:`BoardHarness` puts the two pins on a board's button and LED (or UART); :func:`make_dut`
makes the component a ``--top`` names.
"""

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

from .checks import BuildError

__all__ = ["Harness", "BoardHarness", "port_bits", "harness_overhead", "make_dut", "TOPS"]

#: Components :func:`make_dut` makes (the board top ``fpga`` is :mod:`fpga.top`'s).
TOPS = ("engine", "array", "baseline")


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
    "lut4_approx"}`` (a flip-flop per port bit and one for ``dout``; the XOR tree's LUT4)."""
    ins, outs = port_bits(component)
    in_bits = sum(len(Value.cast(v)) for v in ins)
    out_bits = sum(len(Value.cast(v)) for v in outs)
    return {"input_bits": in_bits, "output_bits": out_bits,
            "ff": in_bits + out_bits + 1, "lut4_approx": -(-(out_bits - 1) // 3)}


class Harness(Elaboratable):
    """Wrap ``dut`` (a ``wiring.Component``) so it needs two data pins.

    Parameters
    ----------
    dut : wiring.Component
        Design under synthesis; all its ports are driven by / reduced into the harness.
    din, dout : Signal(1)
        Serial input bit and reduced output bit (connected to pins by the caller).
    """

    def __init__(self, dut, *, din, dout):
        self.dut = dut
        self.din = din
        self.dout = dout

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        ins, outs = port_bits(self.dut)
        in_width = sum(len(Value.cast(v)) for v in ins)
        chain = Signal(in_width)
        m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
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
