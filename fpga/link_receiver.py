"""The link's receiver: request frames from the UART's bytes, their payload into the staging
buffer.

It parses ``0xA5 | op | length | payload | crc16`` (:mod:`fpga.protocol`), writes the payload
bytes into the staging buffer (one EBR, ``staging``) and keeps the first :data:`ARGS_BYTES`
of them as the arguments, and computes the CRC (``amaranth.lib.crc`` with
:data:`fpga.protocol.LINK_CRC`). A whole frame, or one cut short, becomes one transfer on
``frame`` (:class:`RequestLayout`): its ``status`` is ``OK``, ``BAD_CRC``, ``TRUNCATED`` (the
line went idle for ``timeout`` cycles mid-frame) or ``BAD_LENGTH`` (a length above
:data:`~fpga.protocol.MAX_PAYLOAD`: the rest is discarded until the line is idle).

``frame`` is consumed when the request is finished (its reply is out): the payload and the
staging buffer stay as they are until the transfer, and bytes that arrive before it are
dropped (``dropped`` pulses for each; the host waits for the reply, so a byte sent anyway is
an overrun).

Every received byte is registered together with the compares the parser makes on it, so no
byte compare sits in front of the parser's state logic (48 MHz on the UP5K).
"""

from amaranth import Cat, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from fpga.protocol import LINK_CRC, MAX_PAYLOAD, REQ_SYNC, Status
from hw._util import check_int, validated

__all__ = ["ARGS_BYTES", "FrameReceiver", "RequestLayout", "STAGING_ADDR_WIDTH"]

#: Payload bytes kept as the request's arguments (the longest, RUN's, is 10 bytes).
ARGS_BYTES = 10
#: Address width of the staging buffer (:data:`~fpga.protocol.MAX_PAYLOAD` bytes).
STAGING_ADDR_WIDTH = (MAX_PAYLOAD - 1).bit_length()


class RequestLayout(data.StructLayout):
    """Payload of the receiver's ``frame`` stream: one request as received.

    Fields
    ------
    op : unsigned(8)
        The opcode byte (0 if the frame was cut short before it).
    length : range(MAX_PAYLOAD + 1)
        The payload length (as received; only meaningful with ``status == OK``).
    args : unsigned(8 * ARGS_BYTES)
        The first payload bytes, little-endian (bytes past ``length`` are left from an earlier
        frame: the executor reads only the arguments its length check has admitted).
    status : Status
        ``OK``, ``BAD_CRC``, ``TRUNCATED`` or ``BAD_LENGTH``.
    """

    def __init__(self):
        super().__init__({"op": unsigned(8), "length": range(MAX_PAYLOAD + 1),
                          "args": unsigned(8 * ARGS_BYTES), "status": Status})


class FrameReceiver(wiring.Component):
    """Request frames from bytes (see the module docstring).

    Parameters
    ----------
    timeout : int
        Idle cycles after which a partial frame is reported ``TRUNCATED`` (``BAD_LENGTH`` for a
        frame with a length above the limit).

    Attributes
    ----------
    rx : In(stream.Signature(unsigned(8)))
        Bytes from the UART; always ready.
    frame : Out(stream.Signature(RequestLayout()))
        One transfer per request frame (consumed when the request is finished).
    staging : In(WritePort.Signature(addr_width=STAGING_ADDR_WIDTH, shape=unsigned(8)))
        Write port of the staging buffer: payload byte ``i`` at address ``i``.
    dropped : Out(1)
        One-cycle pulse: a byte arrived while ``frame`` was waiting and was discarded.
    """

    @validated
    def __init__(self, *, timeout: int):
        check_int("timeout", timeout, 1)
        self._timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(unsigned(8))),
            "frame": Out(stream.Signature(RequestLayout())),
            "staging": In(WritePort.Signature(addr_width=STAGING_ADDR_WIDTH,
                                               shape=unsigned(8))),
            "dropped": Out(1),
        })

    @property
    def timeout(self):
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        plen = MAX_PAYLOAD.bit_length()     # payload lengths and byte counters: 0 .. 512
        max_hi, max_lo = MAX_PAYLOAD >> 8, MAX_PAYLOAD & 0xFF

        # -- every byte from the UART is taken and registered, with the compares made on it
        m.d.comb += self.rx.ready.eq(1)
        rb = Signal(8)
        rv = Signal()            # rb is a new byte (one cycle)
        rb_sync = Signal()       # rb == REQ_SYNC
        rb_zero = Signal()
        rb_one = Signal()
        rb_gt_hi = Signal()      # rb > MAX_PAYLOAD >> 8 (as a length's high byte: too long)
        rb_eq_hi = Signal()      # rb == MAX_PAYLOAD >> 8
        rb_gt_lo = Signal()      # rb > MAX_PAYLOAD & 0xFF
        m.d.sync += rv.eq(self.rx.valid)
        with m.If(self.rx.valid):
            p = self.rx.payload
            m.d.sync += [rb.eq(p), rb_sync.eq(p == REQ_SYNC), rb_zero.eq(p == 0),
                         rb_one.eq(p == 1), rb_gt_hi.eq(p > max_hi), rb_eq_hi.eq(p == max_hi),
                         rb_gt_lo.eq(p > max_lo)]

        # -- the frame as received (stable from its transfer's valid to its ready)
        req = self.frame.payload
        frame_valid = Signal()
        m.d.comb += self.frame.valid.eq(frame_valid)
        rx_crc = Signal(16)
        # the CRC restarts by a reset of its register (its `start` input, tied low, would put a
        # multiplexer in front of every bit's XOR network)
        crc_restart = Signal()
        crc = LINK_CRC.create()
        m.submodules.crc = ResetInserter(crc_restart)(crc)
        m.d.comb += crc.data.eq(rb)

        # the idle timer counts up from 2**N - timeout; its top bit is the timeout (a carry
        # out, not a compare)
        tw = self._timeout.bit_length()
        idle_start = (1 << tw) - self._timeout
        idle = Signal(tw + 1, init=idle_start)
        timed_out = idle[tw]
        receiving = Signal()
        with m.If(receiving & ~rv & ~timed_out):
            m.d.sync += idle.eq(idle + 1)
        with m.Elif(~receiving | rv):
            m.d.sync += idle.eq(idle_start)

        cnt = Signal(plen)       # payload index = staging address
        rem = Signal(plen)       # payload bytes still to come
        rem_one = Signal()       # rem == 1
        argsel = Signal(ARGS_BYTES)  # one-hot: the argument byte the next payload byte is
        lo_zero = Signal()
        lo_one = Signal()
        lo_gt = Signal()
        m.d.comb += [self.staging.addr.eq(cnt), self.staging.data.eq(rb)]

        # the arguments: `argsel` is one-hot on the payload's first ARGS_BYTES bytes and zero
        # elsewhere (set on entering PAYLOAD, cleared with its last byte), so an argument
        # byte's enable is `rv & argsel[k]`, not a decode of the parser's state
        with m.If(rv):
            m.d.sync += argsel.eq(Mux(rem_one, 0, argsel << 1))
        for k in range(ARGS_BYTES):
            with m.If(rv & argsel[k]):
                m.d.sync += req.args[8 * k:8 * k + 8].eq(rb)

        # `frame.valid` is set by a registered pulse from the parser (`emit_r`) and cleared by
        # the transfer, so no decode of the parser's state reaches it
        emit_r = Signal()
        m.d.sync += emit_r.eq(0)
        with m.If(emit_r):
            m.d.sync += frame_valid.eq(1)
        with m.Elif(self.frame.ready):
            m.d.sync += frame_valid.eq(0)

        def emit(status):
            # (argsel is cleared: a frame cut short in its arguments keeps them as they are)
            m.d.sync += [emit_r.eq(1), req.status.eq(status), argsel.eq(0)]
            m.next = "HOLD"

        with m.FSM(name="rx_fsm"):
            with m.State("SYNC"):
                with m.If(rv & rb_sync):
                    m.d.comb += crc_restart.eq(1)
                    m.d.sync += [req.op.eq(0), cnt.eq(0), argsel.eq(0)]
                    m.next = "OP"
            for state, nxt in (("OP", "LEN0"), ("LEN0", "LEN1"), ("LEN1", None),
                               ("PAYLOAD", None), ("CRC0", "CRC1"), ("CRC1", "CHECK")):
                with m.State(state):
                    m.d.comb += receiving.eq(1)
                    with m.If(rv):
                        if state in ("OP", "LEN0", "LEN1", "PAYLOAD"):
                            m.d.comb += crc.valid.eq(1)
                        if state == "OP":
                            m.d.sync += req.op.eq(rb)
                        elif state == "LEN0":
                            m.d.sync += [req.length[:8].eq(rb), lo_zero.eq(rb_zero),
                                         lo_one.eq(rb_one), lo_gt.eq(rb_gt_lo)]
                        elif state == "LEN1":
                            m.d.sync += [req.length[8:].eq(rb), rem.eq(Cat(req.length[:8], rb)),
                                         rem_one.eq(lo_one & rb_zero)]
                            with m.If(rb_gt_hi | (rb_eq_hi & lo_gt)):
                                m.next = "DRAIN"
                            with m.Elif(lo_zero & rb_zero):
                                m.next = "CRC0"
                            with m.Else():
                                m.d.sync += argsel.eq(1)
                                m.next = "PAYLOAD"
                        elif state == "PAYLOAD":
                            m.d.comb += self.staging.en.eq(1)
                            m.d.sync += [cnt.eq(cnt + 1), rem.eq(rem - 1), rem_one.eq(rem == 2)]
                            with m.If(rem_one):
                                m.next = "CRC0"
                        elif state == "CRC0":
                            m.d.sync += rx_crc[:8].eq(rb)
                        elif state == "CRC1":
                            m.d.sync += rx_crc[8:].eq(rb)
                        if nxt is not None:
                            m.next = nxt
                    with m.Elif(timed_out):
                        emit(Status.TRUNCATED)
            with m.State("CHECK"):
                # the CRC of the last payload byte is in `crc.crc` since the cycle after it
                emit(Mux(rx_crc == crc.crc, Status.OK, Status.BAD_CRC))
            with m.State("DRAIN"):
                m.d.comb += receiving.eq(1)
                with m.If(timed_out):
                    emit(Status.BAD_LENGTH)
            with m.State("HOLD"):
                m.d.comb += self.dropped.eq(rv)
                with m.If(self.frame.ready):
                    m.next = "SYNC"
        return m
