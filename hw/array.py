"""The ``R x C`` ternary MAC array: ``R`` rows sharing one broadcast activation vector."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ._util import check_int as _check_int
from ._util import validated
from .row import Row, tree_depth
from .trit import Trit

__all__ = ["MacArray"]


class MacArray(wiring.Component):
    """``rows x cols`` ternary multiply-accumulates per cycle.

    Activations ``x`` are broadcast to every row. No lane negates: ``-x`` is ``~x`` plus a carry-in
    of the row's adder tree (see :class:`hw.pe.TernaryLane`).
    Weight trits come as one flat beat, trit ``r * cols + c`` for row ``r``, lane ``c`` (the
    layout of ``docs/architecture.md`` section 4).

    Parameters
    ----------
    rows, cols : int
        Array shape ``R x C``.
    act_bits : int
        Activation code width (8 or 4 in this project; any 2..16 works).
    acc_width : int
        Accumulator width of every row.
    adder_stages : int
        Pipeline registers in each row's adder tree.

    Attributes
    ----------
    en, valid, first : In(1)
        As for :class:`hw.row.Row`, shared by all rows.
    x : In(ArrayLayout(signed(act_bits), cols))
        Broadcast activation codes.
    trits : In(ArrayLayout(Trit, rows * cols))
        One weight beat.
    acc : Out(ArrayLayout(signed(acc_width), rows))
        The row accumulators.
    """

    @validated
    def __init__(self, *, rows, cols, act_bits, acc_width, adder_stages=0):
        _check_int("rows", rows, 1, 1024)
        _check_int("cols", cols, 1, 1024)
        _check_int("act_bits", act_bits, 2, 16)
        _check_int("acc_width", acc_width, act_bits + 1, 64)
        _check_int("adder_stages", adder_stages, 0, tree_depth(cols))
        self._rows = rows
        self._cols = cols
        self._act_bits = act_bits
        self._acc_width = acc_width
        self._adder_stages = adder_stages
        super().__init__({
            "en": In(1),
            "valid": In(1),
            "first": In(1),
            "x": In(data.ArrayLayout(signed(act_bits), cols)),
            "trits": In(data.ArrayLayout(Trit, rows * cols)),  # int-only
            "acc": Out(data.ArrayLayout(signed(acc_width), rows)),
        })

    @classmethod
    def from_config(cls, config):
        """Build the array of an ``AccelConfig``."""
        return cls(rows=config.rows, cols=config.cols, act_bits=config.act_bits,
                   acc_width=config.acc_width, adder_stages=config.adder_stages)

    @property
    def rows(self):
        return self._rows

    @property
    def cols(self):
        return self._cols

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def acc_width(self):
        return self._acc_width

    @property
    def adder_stages(self):
        return self._adder_stages

    @property
    def macs_per_cycle(self):
        return self._rows * self._cols  # int-only

    @property
    def latency(self):
        """Enabled cycles from a beat at the inputs to its effect in ``acc``."""
        return self._adder_stages + 1

    def elaborate(self, platform):
        m = Module()
        for r in range(self._rows):
            row = Row(cols=self._cols, act_bits=self._act_bits, acc_width=self._acc_width,
                      adder_stages=self._adder_stages)
            m.submodules[f"row{r}"] = row
            m.d.comb += [
                row.en.eq(self.en),
                row.valid.eq(self.valid),
                row.first.eq(self.first),
                row.x.eq(self.x),
                self.acc[r].eq(row.acc),
            ]
            for c in range(self._cols):
                m.d.comb += [
                    row.trits[c].eq(self.trits[r * self._cols + c]),  # int-only
                ]
        return m
