"""8N1 UART receiver and transmitter with ``lib.stream`` byte ports.

``divisor`` is clock cycles per bit (the baud rate is ``clk_hz / divisor``). The receiver
oversamples the line at the clock rate: after a two-flop synchronizer it detects the start
edge, re-checks the start bit at mid-bit and takes each data bit as the majority of three
samples around the middle of the bit; a stop bit read as 0 is a framing error and the byte is
dropped. The line has no flow control: a byte that completes while the previous one is still
unaccepted is dropped and ``overrun`` is raised.
"""

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hw._util import check_int, validated

__all__ = ["UARTRx", "UARTTx", "baud_divisor"]


def baud_divisor(clk_hz: int, baud: int, *, max_error: float = 0.02) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; raises if the rate error exceeds
    ``max_error`` (2 % by default, well inside 8N1's tolerance)."""
    if clk_hz <= 0 or baud <= 0:
        raise ValueError("clk_hz and baud must be positive")
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"{clk_hz} Hz is too slow for {baud} baud (needs >= 4 cycles/bit)")
    err = abs(clk_hz / div - baud) / baud
    if err > max_error:
        raise ValueError(f"{baud} baud from {clk_hz} Hz: {err:.2%} error exceeds {max_error:.0%}")
    return div


class UARTRx(wiring.Component):
    """8N1 receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Attributes
    ----------
    rx : Signal, in
        The serial line (idle high).
    data : stream, out
        Received bytes.
    overrun : Signal, out
        One-cycle pulse (a register, the cycle after the stop bit's decision): a byte was
        dropped because ``data`` was still full.
    frame_error : Signal, out
        One-cycle pulse (likewise registered): a stop bit read 0; the byte was dropped.
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(unsigned(8)))
    overrun: Out(1)
    frame_error: Out(1)

    @validated
    def __init__(self, *, divisor: int):
        check_int("divisor", divisor, 4)    # clock cycles per bit
        self._divisor = divisor
        super().__init__()

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        mid = div // 2
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        cnt = Signal(range(div))
        bit = Signal(range(10))
        shreg = Signal(8)
        votes = Signal(2)  # ones among the first two samples of the current bit
        # `cnt` counts the clocks of a bit (0 .. div-1, wrapping). What the FSM asks of it is
        # kept in registered flags, each set a cycle ahead from `cnt` (a compare with a
        # constant), so no counter compare sits in front of the FSM's decisions.
        at_mid = Signal()     # cnt == mid (start bit: glitch check)
        at_vote = Signal()    # cnt in (mid - 1, mid): sample for the vote
        at_decide = Signal()  # cnt == mid + 1: decide the bit
        at_end = Signal()     # cnt == div - 1: the bit ends
        stop_bit = Signal()   # bit == 8

        def load(value):
            return [cnt.eq(value), at_mid.eq(value == mid),
                    at_vote.eq(value in (mid - 1, mid)), at_decide.eq(value == mid + 1),
                    at_end.eq(value == div - 1)]

        def step():
            # the next clock of the bit: `cnt + 1`, or 0 after the last one
            with m.If(at_end):
                m.d.sync += load(0)
            with m.Else():
                m.d.sync += [cnt.eq(cnt + 1), at_mid.eq(cnt == mid - 1),
                             at_vote.eq((cnt == mid - 2) | (cnt == mid - 1)),
                             at_decide.eq(cnt == mid), at_end.eq(cnt == div - 2)]

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        # the error pulses are registered (one cycle after the decision)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += [*load(1), votes.eq(0)]
                    m.next = "START"
            with m.State("START"):
                step()
                with m.If(at_mid):
                    with m.If(line):  # glitch, not a start bit
                        m.next = "IDLE"
                with m.If(at_end):
                    m.d.sync += [bit.eq(0), stop_bit.eq(0), votes.eq(0)]
                    m.next = "BITS"
            with m.State("BITS"):
                step()
                with m.If(at_vote):
                    m.d.sync += votes.eq(votes + line)
                value = Signal()
                # majority of 3 samples: two ones before, or one and this sample
                m.d.comb += value.eq(votes[1] | (votes[0] & line))
                with m.If(at_decide):
                    with m.If(stop_bit):  # stop bit: decide at mid-bit, then hunt again
                        with m.If(~value):
                            m.d.sync += self.frame_error.eq(1)
                            m.next = "WAIT_IDLE"
                        with m.Else():
                            with m.If(self.data.valid & ~self.data.ready):
                                m.d.sync += self.overrun.eq(1)
                            with m.Else():
                                m.d.sync += [self.data.payload.eq(shreg),
                                             self.data.valid.eq(1)]
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += shreg.eq(Cat(shreg[1:], value))
                with m.If(at_end):
                    m.d.sync += [votes.eq(0), bit.eq(bit + 1), stop_bit.eq(bit == 7)]
            with m.State("WAIT_IDLE"):
                # a framing error may leave the line low (break): wait for it to go high
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Attributes
    ----------
    data : stream, in
        Bytes to send; one is accepted whenever the transmitter is idle.
    tx : Signal, out
        The serial line (idle high).
    """

    data: In(stream.Signature(unsigned(8)))
    tx: Out(1, init=1)

    @validated
    def __init__(self, *, divisor: int):
        check_int("divisor", divisor, 4)    # clock cycles per bit
        self._divisor = divisor
        super().__init__()

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        cnt = Signal(range(div))
        shreg = Signal(10, init=0x3FF)
        bits = Signal(range(11))

        m.d.comb += self.tx.eq(shreg[0])
        with m.If(bits == 0):
            m.d.comb += self.data.ready.eq(1)
            with m.If(self.data.valid):
                m.d.sync += [shreg.eq(Cat(0, self.data.payload, 1)), bits.eq(10), cnt.eq(0)]
        with m.Else():
            m.d.sync += cnt.eq(cnt + 1)
            with m.If(cnt == div - 1):
                m.d.sync += [cnt.eq(0), bits.eq(bits - 1), shreg.eq(Cat(shreg[1:], 1))]
        return m
