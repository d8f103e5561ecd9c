"""The int8 baseline: an ``R x C`` multiply-accumulate array written the ordinary way with ``*``.

This is the one module in ``hw/`` allowed a ``*`` on data (the comparison point for the reports:
same shape, same control ports and the same pipelined adder tree and accumulator as
:class:`hw.array.MacArray`, but full int8 weights multiplied by the activations).
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ._util import check_int as _check_int
from ._util import validated
from .row import register_levels, tree_depth

__all__ = ["Int8MacArray"]


class Int8MacArray(wiring.Component):
    """``rows x cols`` int8 x activation multiply-accumulates per cycle.

    ``acc[r] <- (first ? 0 : acc[r]) + sum_c weights[r*cols + c] * x[c]``. Products are
    registered (so Yosys can map them into SB_MAC16 when asked), then summed by a binary adder
    tree with ``adder_stages`` pipeline registers placed as in :func:`hw.row.register_levels`.

    Parameters
    ----------
    rows, cols, act_bits, acc_width, adder_stages : int
        As for :class:`hw.array.MacArray`; ``weight_bits`` (default 8) is the weight width.

    Attributes
    ----------
    en, valid, first : In(1)
        Advance the pipeline / the inputs carry a beat / the beat restarts the accumulators.
    x : In(ArrayLayout(signed(act_bits), cols))
        Broadcast activation codes.
    weights : In(ArrayLayout(signed(weight_bits), rows * cols))
        One beat of weights, element ``r * cols + c`` for row ``r``, lane ``c``.
    acc : Out(ArrayLayout(signed(acc_width), rows))
        Row accumulators; a beat is in ``acc`` ``latency`` enabled cycles after it is presented.
    """

    @validated
    def __init__(self, *, rows, cols, act_bits, acc_width, adder_stages=0, weight_bits=8):
        _check_int("rows", rows, 1, 1024)
        _check_int("cols", cols, 1, 1024)
        _check_int("act_bits", act_bits, 2, 16)
        _check_int("weight_bits", weight_bits, 2, 16)
        _check_int("acc_width", acc_width, act_bits + 1, 64)
        _check_int("adder_stages", adder_stages, 0, tree_depth(cols))
        self._shape = (rows, cols, act_bits, acc_width, adder_stages, weight_bits)
        super().__init__({
            "en": In(1),
            "valid": In(1),
            "first": In(1),
            "x": In(data.ArrayLayout(signed(act_bits), cols)),
            "weights": In(data.ArrayLayout(signed(weight_bits), rows * cols)),
            "acc": Out(data.ArrayLayout(signed(acc_width), rows)),
        })

    @classmethod
    def from_config(cls, config):
        """Build the baseline of the same shape as an ``AccelConfig``'s ternary array."""
        return cls(rows=config.rows, cols=config.cols, act_bits=config.act_bits,
                   acc_width=config.acc_width, adder_stages=config.adder_stages)

    @property
    def rows(self):
        return self._shape[0]

    @property
    def cols(self):
        return self._shape[1]

    @property
    def macs_per_cycle(self):
        return self._shape[0] * self._shape[1]

    @property
    def latency(self):
        """Enabled cycles from a beat at the inputs to its effect in ``acc``."""
        return self._shape[4] + 2

    def elaborate(self, platform):
        rows, cols, act_bits, acc_width, adder_stages, weight_bits = self._shape
        m = Module()
        levels = register_levels(cols, adder_stages)
        valid, first = Signal(), Signal()
        with m.If(self.en):
            m.d.sync += [valid.eq(self.valid), first.eq(self.first)]
        ctl = [(valid, first)]
        for level in range(1, tree_depth(cols) + 1):
            if level in levels:
                v, f = Signal(name=f"valid_l{level}"), Signal(name=f"first_l{level}")
                with m.If(self.en):
                    m.d.sync += [v.eq(ctl[-1][0]), f.eq(ctl[-1][1])]
                ctl.append((v, f))
        valid, first = ctl[-1]
        for r in range(rows):
            terms = []
            for c in range(cols):
                prod = Signal(signed(act_bits + weight_bits), name=f"prod_r{r}_c{c}")
                with m.If(self.en):
                    m.d.sync += prod.eq(self.x[c] * self.weights[r * cols + c])
                terms.append(prod)
            for level in range(1, tree_depth(cols) + 1):
                nxt = []
                for i in range(0, len(terms), 2):
                    pair = terms[i:i + 2]
                    total = pair[0] + pair[1] if len(pair) == 2 else pair[0]
                    if level in levels:
                        reg = Signal(signed(len(total)), name=f"sum_r{r}_l{level}_{i}")
                        with m.If(self.en):
                            m.d.sync += reg.eq(total)
                        total = reg
                    nxt.append(total)
                terms = nxt
            acc = Signal(signed(acc_width), name=f"acc_r{r}")
            with m.If(self.en & valid):
                m.d.sync += acc.eq(terms[0])
                with m.If(~first):
                    m.d.sync += acc.eq(acc + terms[0])
            m.d.comb += self.acc[r].eq(acc)
        return m
