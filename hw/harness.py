"""Synthesis harness: feed a component's wide input ports from one pin, reduce outputs to one pin.

The engine's streams are hundreds of bits wide and cannot go to package pins. The harness drives
every input port bit from a shift register loaded serially from one input pin (``din``) and
XOR-reduces every output port bit into one registered output pin (``dout``). Because every input
bit depends on the pin and every output bit reaches a pin, Yosys cannot optimise the design away.
Harness overhead: one flip-flop per input port bit (the shift register), one per output bit
(registered before the XOR tree), and the XOR tree (about ``out_bits / 3`` LUT4). Build the
harness alone (``HarnessTop(None, ...)``: a pass-through of the same widths) to measure it.
"""

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

__all__ = ["Harness", "port_bits"]


def port_bits(component):
    """Return ``(inputs, outputs)``: lists of the flat port signals of ``component``."""
    ins, outs = [], []
    for _path, member, value in component.signature.flatten(component):
        (ins if member.flow == wiring.In else outs).append(value)
    return ins, outs


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
