"""The link's reply sender: one reply frame per request, from the executor's :class:`ReplyLayout`.

It sends ``0x5A | op | status | length | payload | crc16`` (:mod:`fpga.protocol`); the payload
comes from one of four sources: the INFO ROM, the status registers (``regs``: a STATUS reply,
or the last four bytes of it for a RUN), the weight memory (READ_WEIGHTS) or the result memory
(READ_RESULTS). The CRC is ``amaranth.lib.crc`` with :data:`fpga.protocol.LINK_CRC`.

``reply`` is consumed when the frame's last byte has been sent, so the executor holds the
request (and the receiver the frame) until then.

Every byte goes ADDR (memory read) -> LOAD (each source's byte, registered) -> MUX (the byte) ->
SEND, so no path has more than a few LUT levels at 48 MHz; a byte takes 10 bit times on the
line (480 cycles at 1 Mbaud and 48 MHz), so the extra cycles cost nothing.
"""

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from fpga.memory import WORD_BYTES, addr_width
from fpga.protocol import LINK_CRC, MAX_PAYLOAD, REP_SYNC, Status, StatusInfo
from hw._util import check_int, validated

__all__ = ["REGS_BYTES", "REPLY_SOURCES", "ReplyLayout", "ReplySender"]

#: Bytes of the status registers (the STATUS reply's payload).
REGS_BYTES = StatusInfo.SIZE
#: The payload sources of a reply, one bit each of :class:`ReplyLayout` ``source``.
REPLY_SOURCES = ("regs", "info", "weights", "results")


class ReplyLayout(data.StructLayout):
    """Payload of the ``reply`` stream: the reply to send.

    Fields
    ------
    op : unsigned(8)
        The request's opcode (echoed in the header).
    status : Status
    length : range(MAX_PAYLOAD + 1)
        Payload bytes (0 for an error reply).
    source : StructLayout of one bit per :data:`REPLY_SOURCES` name
        One-hot: where the payload comes from (``regs`` for a payload-less reply too).
    start : unsigned(start_width)
        The first payload byte: a byte index into ``regs`` (8 for a RUN: the cycles), a weight
        byte address, or a result index (results are sent as 4 little-endian bytes each).
    """

    def __init__(self, start_width: int):
        check_int("start_width", start_width, 1)
        super().__init__({
            "op": unsigned(8), "status": Status, "length": range(MAX_PAYLOAD + 1),
            "source": data.StructLayout({name: 1 for name in REPLY_SOURCES}),
            "start": unsigned(start_width),
        })


class ReplySender(wiring.Component):
    """Sends one reply frame per ``reply`` transfer (see the module docstring).

    Parameters
    ----------
    info : bytes
        The INFO reply's payload (at most 32 bytes, held in a ROM).
    weight_depth, result_depth : int
        Words of the weight memory, entries of the result memory.
    start_width : int
        Width of :class:`ReplyLayout` ``start``.

    Attributes
    ----------
    reply : In(stream.Signature(ReplyLayout(start_width)))
        The reply to send; ready for one cycle after its last byte.
    tx : Out(stream.Signature(unsigned(8)))
        Bytes to the UART.
    regs : In(8 * REGS_BYTES)
        The status registers (read while the reply is sent).
    weight_mem : In(ReadPort.Signature(...))
        Reads of the weight memory (64-bit words, one cycle latency), driven only while a
        READ_WEIGHTS reply is sent.
    res_mem : In(ReadPort.Signature(...))
        Reads of the result memory (int32 entries, one cycle latency).
    """

    @validated
    def __init__(self, *, info: bytes, weight_depth: int, result_depth: int, start_width: int):
        if not isinstance(info, (bytes, bytearray)) or len(info) > 32:
            raise ValueError(f"info must be at most 32 bytes, got {info!r}")
        check_int("weight_depth", weight_depth, 1)
        check_int("result_depth", result_depth, 1)
        check_int("start_width", start_width, max(addr_width(result_depth),
                                                  (weight_depth * WORD_BYTES - 1).bit_length()))
        self._info = bytes(info)
        self._start_width = start_width
        super().__init__({
            "reply": In(stream.Signature(ReplyLayout(start_width))),
            "tx": Out(stream.Signature(unsigned(8))),
            "regs": In(8 * REGS_BYTES),
            "weight_mem": In(ReadPort.Signature(addr_width=addr_width(weight_depth),
                                                 shape=unsigned(8 * WORD_BYTES))),
            "res_mem": In(ReadPort.Signature(addr_width=addr_width(result_depth),
                                              shape=unsigned(32))),
        })

    def elaborate(self, platform):
        m = Module()
        plen = MAX_PAYLOAD.bit_length()
        rep = self.reply.payload
        src = rep.source

        # the INFO reply's bytes as a 32 x 8 ROM (Yosys maps it to LUTs, fewer than a byte
        # select on a constant), read like the other sources: addressed in TX_ADDR, its byte
        # taken in TX_LOAD
        m.submodules.info_rom = info_rom = Memory(shape=unsigned(8), depth=32,
                                                  init=list(self._info))
        info_r = info_rom.read_port()
        # the CRC restarts by a reset of its register (as in the receiver)
        crc_restart = Signal()
        crc = LINK_CRC.create()
        m.submodules.crc = ResetInserter(crc_restart)(crc)

        len_zero = Signal()
        len_m1 = Signal(plen)
        ph_hdr = Signal(init=1)  # phase of the reply: header, payload, crc (one-hot)
        ph_pay = Signal()
        ph_crc = Signal()
        tcnt = Signal(plen)      # byte index within the phase
        tx_byte = Signal(8)
        rd_addr = Signal(self._start_width)  # regs byte / weight byte / result entry
        rd_lane = Signal(2)      # byte of the current result entry
        b_hdr, b_info, b_regs, b_w, b_res, b_crc = (Signal(8, name=f"b_{n}") for n in
                                                    ("hdr", "info", "regs", "w", "res", "crc"))
        t_last = Signal()
        hdr_last = Signal()
        crc_last = Signal()
        covered = Signal()       # the byte goes into the reply CRC

        m.d.comb += [
            self.weight_mem.addr.eq(rd_addr[3:]),
            self.res_mem.addr.eq(rd_addr),
            # the read ports' enables are raised in TX_ADDR only
            self.weight_mem.en.eq(0), self.res_mem.en.eq(0),
            crc.data.eq(tx_byte),
        ]
        with m.FSM(name="tx_fsm"):
            with m.State("IDLE"):
                with m.If(self.reply.valid):
                    m.d.sync += [len_zero.eq(rep.length == 0), len_m1.eq(rep.length - 1),
                                 rd_addr.eq(rep.start), rd_lane.eq(0), tcnt.eq(0)]
                    m.d.comb += crc_restart.eq(1)
                    m.next = "TX_ADDR"
            with m.State("TX_ADDR"):
                m.d.comb += [self.weight_mem.en.eq(src.weights), info_r.addr.eq(rd_addr[:5]),
                             self.res_mem.en.eq(src.results)]
                m.next = "TX_LOAD"
            with m.State("TX_LOAD"):
                hdr = Cat(Const(REP_SYNC, 8), rep.op, rep.status, Const(0, 4), rep.length,
                          Const(0, 16 - plen), Const(0, 24))
                regs16 = Cat(self.regs, Const(0, 32))
                m.d.sync += [
                    b_hdr.eq(hdr.word_select(tcnt[:3], 8)),
                    b_info.eq(info_r.data),
                    b_regs.eq(regs16.word_select(rd_addr[:4], 8)),
                    b_w.eq(self.weight_mem.data.word_select(rd_addr[:3], 8)),
                    b_res.eq(self.res_mem.data.word_select(rd_lane, 8)),
                    b_crc.eq(crc.crc.word_select(tcnt[0], 8)),
                    t_last.eq(tcnt == len_m1),
                    hdr_last.eq(tcnt[:3] == 4),
                    crc_last.eq(tcnt[0]),
                    # the sync byte and the CRC itself are not covered
                    covered.eq(ph_pay | (ph_hdr & (tcnt[:3] != 0))),
                ]
                m.next = "TX_MUX"
            with m.State("TX_MUX"):
                m.d.sync += tx_byte.eq(Mux(ph_hdr, b_hdr, 0) | Mux(ph_crc, b_crc, 0)
                                       | Mux(ph_pay & src.info, b_info, 0)
                                       | Mux(ph_pay & src.regs, b_regs, 0)
                                       | Mux(ph_pay & src.weights, b_w, 0)
                                       | Mux(ph_pay & src.results, b_res, 0))
                m.next = "TX_SEND"
            with m.State("TX_SEND"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tx_byte)]
                with m.If(self.tx.ready):
                    m.d.comb += crc.valid.eq(covered)
                    m.d.sync += tcnt.eq(tcnt + 1)
                    m.next = "TX_ADDR"
                    with m.If(ph_hdr & hdr_last):
                        m.d.sync += [tcnt.eq(0), ph_hdr.eq(0), ph_pay.eq(~len_zero),
                                     ph_crc.eq(len_zero)]
                    with m.If(ph_pay):
                        with m.If(src.results):
                            m.d.sync += rd_lane.eq(rd_lane + 1)
                            with m.If(rd_lane == 3):
                                m.d.sync += rd_addr.eq(rd_addr + 1)
                        with m.Else():
                            m.d.sync += rd_addr.eq(rd_addr + 1)
                        with m.If(t_last):
                            m.d.sync += [tcnt.eq(0), ph_pay.eq(0), ph_crc.eq(1)]
                    with m.If(ph_crc & crc_last):
                        # the reply is out: back to the start values for the next
                        m.d.sync += [ph_crc.eq(0), ph_hdr.eq(1)]
                        m.next = "DONE"
            with m.State("DONE"):
                # the read address is 0 between replies: `Link` ORs it with the executor's
                m.d.comb += self.reply.ready.eq(1)
                m.d.sync += rd_addr.eq(0)
                m.next = "IDLE"
        return m
