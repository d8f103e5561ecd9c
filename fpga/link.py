"""The gateware side of the host protocol (:mod:`fpga.protocol`): frame parser and dispatcher.

Bytes from the UART receiver are parsed into request frames. The whole payload goes into a
staging buffer (one EBR) while the CRC is computed; nothing is written to the weight or
activation memory before the frame's CRC, opcode, length and arguments have been checked, so
a bad frame never corrupts stored data. Exactly one reply frame is sent per request; framing
errors (length above :data:`~fpga.protocol.MAX_PAYLOAD`, a frame cut short) are answered once the
line has been idle for ``timeout`` cycles. While a request executes and its reply is sent the
link does not accept bytes (the host waits for the reply; a byte sent anyway is dropped and
counted as a UART overrun).

Only additions, comparisons and shifts by constants are used (no multiplier).
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fpga.memory import WORD_BYTES
from fpga.protocol import (
    ARG_LEN,
    DATA_OPS,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    REP_SYNC,
    REQ_SYNC,
    Info,
    Op,
    Status,
)

__all__ = ["Link", "crc16_step"]


def _crc16_taps():
    """For each bit of the next CRC register: the (crc bit, data bit) indices it XORs."""
    # symbolic bit-serial CRC: every register bit is a set of input variables (XOR = symmetric
    # difference); variables 0..15 are the CRC bits, 16..23 the data bits
    reg = [{i} for i in range(16)]
    for k in range(8):
        fb = reg[15] ^ {16 + 7 - k}   # data enters MSB first
        reg = [set()] + reg[:15]
        for tap in (0, 5, 12):        # x^16 + x^12 + x^5 + 1
            reg[tap] = reg[tap] ^ fb
    return [sorted(b) for b in reg]


_CRC16_TAPS = _crc16_taps()


def crc16_step(crc, byte):
    """Amaranth expression: CRC-16/CCITT-FALSE register after shifting in ``byte``
    (an XOR network derived from the bit-serial definition)."""
    inputs = Cat(crc[:16], byte[:8])
    bits = []
    for taps in _CRC16_TAPS:
        v = inputs[taps[0]]
        for t in taps[1:]:
            v = v ^ inputs[t]
        bits.append(v)
    return Cat(*bits)


class Link(wiring.Component):
    """Frame parser and dispatcher.

    Parameters
    ----------
    config : AccelConfig
    weight_depth : int
        Words (8 bytes) of the weight memory.
    act_rows : int
        Rows (``cols`` bytes) of the activation memory.
    result_depth : int
        int32 entries of the result memory.
    timeout : int
        Idle cycles after which a partial frame is answered with ``TRUNCATED`` (or a frame
        with a bad length with ``BAD_LENGTH``).
    clk_hz : int
        Reported in the INFO reply.

    Attributes
    ----------
    rx : stream in; tx : stream out
        Bytes from / to the UART.
    uart_overrun, uart_frame_error : in
        Pulses from the UART receiver (sticky STATUS flags).
    w_addr, w_en, w_we, w_wmask, w_wdata, w_rdata
        Weight memory port (when no run is in progress).
    act_waddr, act_wen, act_wdata
        Activation memory write port (``act_wen``: one enable per lane byte).
    res_raddr, res_ren, res_rdata
        Result memory read port.
    run_start, run_m, run_k, run_tokens, run_wbase; run_done, run_status, run_cycles
        The :class:`fpga.runner.LayerRunner` control.
    engine_reset : out
        Pulsed by a RESET request.
    engine_busy, engine_error : in
        Engine state for STATUS.
    """

    def __init__(self, *, config, weight_depth: int, act_rows: int, result_depth: int,
                 timeout: int, clk_hz: int):
        if not isinstance(timeout, int) or timeout < 1:
            self._MustUse__silence = True
            raise ValueError(f"timeout must be a positive int (cycles), got {timeout!r}")
        self._config = config
        self._weight_depth = weight_depth
        self._act_rows = act_rows
        self._result_depth = result_depth
        self._timeout = timeout
        self._clk_hz = clk_hz
        C = config.cols
        super().__init__({
            "rx": In(stream.Signature(unsigned(8))),
            "tx": Out(stream.Signature(unsigned(8))),
            "uart_overrun": In(1), "uart_frame_error": In(1),
            "w_addr": Out(range(weight_depth)), "w_en": Out(1), "w_we": Out(1),
            "w_wmask": Out(WORD_BYTES), "w_wdata": Out(8 * WORD_BYTES),
            "w_rdata": In(8 * WORD_BYTES),
            "act_waddr": Out(range(act_rows)), "act_wen": Out(C), "act_wdata": Out(8 * C),
            "res_raddr": Out(range(result_depth)), "res_ren": Out(1), "res_rdata": In(32),
            "run_start": Out(1), "run_m": Out(16), "run_k": Out(16), "run_tokens": Out(16),
            "run_wbase": Out(range(weight_depth)),
            "run_done": In(1), "run_status": In(3), "run_cycles": In(32),
            "engine_reset": Out(1), "engine_busy": In(1), "engine_error": In(1),
        })

    @property
    def info(self) -> Info:
        """The INFO reply this link sends."""
        cfg = self._config
        return Info(PROTOCOL_VERSION, cfg.rows, cfg.cols, cfg.act_bits, cfg.packing,
                    cfg.bytes_per_beat, cfg.max_k, cfg.max_m, self._weight_depth * WORD_BYTES,
                    self._act_rows * cfg.cols, self._result_depth, MAX_PAYLOAD, self._clk_hz)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        C = cfg.cols
        weight_bytes = self._weight_depth * WORD_BYTES
        info_bytes = self.info.pack()
        # address arithmetic is done in as few bits as the memories need (a u32 argument with
        # any bit at or above ``aw`` set is out of range by itself)
        aw = max(weight_bytes.bit_length(), self._result_depth.bit_length(), 5)
        plen = MAX_PAYLOAD.bit_length()     # payload lengths and byte counters: 0 .. 512

        m.submodules.staging = staging = Memory(shape=unsigned(8), depth=MAX_PAYLOAD, init=[])
        st_w = staging.write_port()
        st_r = staging.read_port()

        op = Signal(8)
        length = Signal(plen)
        cnt = Signal(plen)
        args = Signal(80)
        crc = Signal(16)
        rx_crc = Signal(16)
        idle = Signal(range(self._timeout + 1))

        # sticky flags and counters
        eng_err_seen = Signal()
        overrun_seen = Signal()
        frame_err_seen = Signal()
        good_frames = Signal(16)
        bad_frames = Signal(16)
        last_status = Signal(3)
        last_cycles = Signal(32)
        with m.If(self.uart_overrun):
            m.d.sync += overrun_seen.eq(1)
        with m.If(self.uart_frame_error):
            m.d.sync += frame_err_seen.eq(1)
        with m.If(self.engine_error):
            m.d.sync += eng_err_seen.eq(1)

        # reply registers: every payload byte is picked by a byte index (no wide shift
        # registers); the frame counters are advanced when the reply has been sent, so a
        # STATUS reply reports the frames before itself
        r_status = Signal(3)
        r_len = Signal(plen)
        r_bad = Signal()
        SRC_INFO, SRC_WEIGHTS, SRC_RESULTS, SRC_REGS = range(4)
        src = Signal(2)
        phase = Signal(2)        # 0 header, 1 payload, 2 crc
        tcnt = Signal(plen)
        tx_byte = Signal(8)
        tx_crc = Signal(16, init=0xFFFF)
        rd_addr = Signal(aw)     # byte index / weight byte address / result entry
        rd_lane = Signal(2)      # byte of the current result entry

        # copy loop (writes after the checks)
        ci = Signal(plen)        # staging index
        wa = Signal(aw)          # weight byte address
        arow = Signal(range(self._act_rows + 1))
        alane = Signal(range(C))
        dry = Signal()

        a_addr = args[0:aw]
        a_addr_high = args[aw:32] != 0
        a_count = args[32:48]
        a_act_row = args[0:16]
        a_m, a_k, a_tokens, a_wbase = args[0:16], args[16:32], args[32:48], args[48:80]
        a_index, a_rcount = args[0:16], args[16:32]
        m.d.comb += [self.run_m.eq(a_m), self.run_k.eq(a_k), self.run_tokens.eq(a_tokens),
                     self.run_wbase.eq(a_wbase[3:])]

        # argument checks per opcode (registered into arg_bad in the CHECK state)
        arg_bad = Signal()
        ww_bad = a_addr_high | (a_addr + (length - 4) > weight_bytes)
        rw_bad = (a_count > MAX_PAYLOAD) | a_addr_high | (a_addr + a_count[:plen] > weight_bytes)
        rr_bad = (a_rcount > MAX_PAYLOAD // 4) | (a_index + a_rcount > self._result_depth)
        wa_bad = a_act_row >= self._act_rows
        run_bad = ((a_m == 0) | (a_m > cfg.max_m) | (a_k == 0) | (a_k > cfg.max_k)
                   | (a_tokens == 0) | (a_wbase[:3] != 0) | (a_wbase >= weight_bytes))

        run_start = Signal()
        m.d.sync += run_start.eq(0)
        m.d.comb += self.run_start.eq(run_start)

        # the STATUS payload; a RUN reply is its last four bytes (last_cycles)
        flags = Cat(eng_err_seen | self.engine_error, self.engine_busy, overrun_seen,
                    frame_err_seen, Const(0, 4))
        regs = Cat(flags, last_status, Const(0, 5 + 16), good_frames, bad_frames, last_cycles)

        def reply(status, n=0, source=SRC_REGS, start=None):
            st = Const(int(status), 3) if isinstance(status, int) else status
            # phase, tcnt and tx_crc are already at their start values (init, and set again
            # when the previous reply ended), which keeps them out of this wide fan-in
            stmts = [r_status.eq(st), r_len.eq(n), src.eq(source)]
            if start is not None:
                stmts.append(rd_addr.eq(start))
            bad = isinstance(status, Status) and status in (
                Status.BAD_CRC, Status.BAD_LENGTH, Status.UNKNOWN_OP, Status.TRUNCATED)
            stmts.append(r_bad.eq(int(bad)))
            m.d.sync += stmts
            m.next = "TX_ADDR"

        rx_fire = self.rx.valid & self.rx.ready
        crc_in = crc16_step(crc, self.rx.payload)

        # "this is the last byte" flags, registered off the byte paths: cnt_last follows cnt
        # one cycle late, and UART bytes are >= 40 cycles apart; ci_last / t_last are set in
        # the state before the one that uses them
        cnt_last = Signal()
        ci_last = Signal()
        t_last = Signal()
        m.d.sync += cnt_last.eq(cnt + 1 == length)

        receiving = Signal()
        # timed_out == (idle == timeout) at all times, kept as a register so that the compare
        # is not in front of the FSM's next-state logic
        timed_out = Signal()
        with m.If(receiving & ~rx_fire):
            m.d.sync += [idle.eq(idle + 1), timed_out.eq(idle + 1 == self._timeout)]
        with m.Else():
            m.d.sync += [idle.eq(0), timed_out.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_fire & (self.rx.payload == REQ_SYNC)):
                    m.d.sync += [crc.eq(0xFFFF), op.eq(0), cnt.eq(0), args.eq(0)]
                    m.next = "OP"
            for state, nxt in (("OP", "LEN0"), ("LEN0", "LEN1"), ("LEN1", None),
                               ("PAYLOAD", None), ("CRC0", "CRC1"), ("CRC1", "CHECK")):
                with m.State(state):
                    m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                    with m.If(rx_fire):
                        byte = self.rx.payload
                        if state in ("OP", "LEN0", "LEN1", "PAYLOAD"):
                            m.d.sync += crc.eq(crc_in)
                        if state == "OP":
                            m.d.sync += op.eq(byte)
                        elif state == "LEN0":
                            m.d.sync += length[:8].eq(byte)
                        elif state == "LEN1":
                            m.d.sync += length[8:].eq(byte)   # the low bits; checked here
                            full = Cat(length[:8], byte)
                            with m.If(full > MAX_PAYLOAD):
                                m.next = "DRAIN"
                            with m.Elif(full == 0):
                                m.next = "CRC0"
                            with m.Else():
                                m.next = "PAYLOAD"
                        elif state == "PAYLOAD":
                            m.d.comb += [st_w.addr.eq(cnt), st_w.data.eq(byte), st_w.en.eq(1)]
                            with m.If(cnt < 10):
                                m.d.sync += args.word_select(cnt[:4], 8).eq(byte)
                            m.d.sync += cnt.eq(cnt + 1)
                            with m.If(cnt_last):
                                m.next = "CRC0"
                        elif state == "CRC0":
                            m.d.sync += rx_crc[:8].eq(byte)
                        elif state == "CRC1":
                            m.d.sync += rx_crc[8:].eq(byte)
                        if nxt is not None:
                            m.next = nxt
                    with m.Elif(timed_out):
                        reply(Status.TRUNCATED)
            with m.State("DRAIN"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(timed_out):
                    reply(Status.BAD_LENGTH)

            # CHECK registers every check of the frame, DECIDE acts on them (short paths)
            crc_bad = Signal()
            unknown = Signal()
            len_bad = Signal()
            with m.State("CHECK"):
                known = Signal()
                len_ok = Signal()
                for o in Op:
                    with m.If(op == o):
                        m.d.comb += known.eq(1)
                        if o in DATA_OPS:
                            m.d.comb += len_ok.eq(length > ARG_LEN[o])
                        else:
                            m.d.comb += len_ok.eq(length == ARG_LEN[o])
                # the argument checks of EXEC are registered here as well
                m.d.sync += [
                    crc_bad.eq(rx_crc != crc), unknown.eq(~known), len_bad.eq(~len_ok),
                    arg_bad.eq(Mux(op == Op.WRITE_WEIGHTS, ww_bad, 0)
                               | Mux(op == Op.READ_WEIGHTS, rw_bad, 0)
                               | Mux(op == Op.READ_RESULTS, rr_bad, 0)
                               | Mux(op == Op.WRITE_ACT, wa_bad, 0)
                               | Mux(op == Op.RUN, run_bad, 0)),
                ]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(crc_bad):
                    reply(Status.BAD_CRC)
                with m.Elif(unknown):
                    reply(Status.UNKNOWN_OP)
                with m.Elif(len_bad):
                    reply(Status.BAD_LENGTH)
                with m.Else():
                    m.next = "EXEC"

            with m.State("EXEC"):
                with m.Switch(op):
                    with m.Case(Op.INFO):
                        reply(Status.OK, len(info_bytes), SRC_INFO, start=0)
                    with m.Case(Op.STATUS):
                        reply(Status.OK, 12, SRC_REGS, start=0)
                    with m.Case(Op.RESET):
                        m.d.comb += self.engine_reset.eq(1)
                        m.d.sync += [eng_err_seen.eq(0), overrun_seen.eq(0),
                                     frame_err_seen.eq(0)]
                        reply(Status.OK)
                    with m.Case(Op.WRITE_WEIGHTS):
                        with m.If(arg_bad):
                            reply(Status.BAD_ARG)
                        with m.Else():
                            m.d.sync += [ci.eq(4), wa.eq(a_addr)]
                            m.next = "WW_READ"
                    with m.Case(Op.READ_WEIGHTS):
                        with m.If(arg_bad):
                            reply(Status.BAD_ARG)
                        with m.Else():
                            reply(Status.OK, a_count[:plen], SRC_WEIGHTS, start=a_addr)
                    with m.Case(Op.READ_RESULTS):
                        with m.If(arg_bad):
                            reply(Status.BAD_ARG)
                        with m.Else():
                            m.d.sync += rd_lane.eq(0)
                            reply(Status.OK, Cat(Const(0, 2), a_rcount[:plen - 2]),
                                  SRC_RESULTS, start=a_index)
                    with m.Case(Op.WRITE_ACT):
                        with m.If(arg_bad):
                            reply(Status.BAD_ARG)
                        with m.Else():
                            m.d.sync += [ci.eq(2), arow.eq(a_act_row), alane.eq(0), dry.eq(1)]
                            m.next = "WA_READ"
                    with m.Case(Op.RUN):
                        with m.If(arg_bad):
                            reply(Status.BAD_ARG)
                        with m.Else():
                            # registered start pulse (the runner starts next cycle)
                            m.d.sync += run_start.eq(1)
                            m.next = "RUN_WAIT"

            # -- weight write: staging[ci] -> weight byte wa
            with m.State("WW_READ"):
                m.d.comb += [st_r.addr.eq(ci), st_r.en.eq(1)]
                m.d.sync += ci_last.eq(ci + 1 == length)
                m.next = "WW_WRITE"
            with m.State("WW_WRITE"):
                m.d.comb += [
                    self.w_addr.eq(wa[3:]), self.w_en.eq(1), self.w_we.eq(1),
                    self.w_wmask.eq(Const(1, WORD_BYTES) << wa[:3]),
                    self.w_wdata.eq(st_r.data.replicate(WORD_BYTES)),
                ]
                m.d.sync += [ci.eq(ci + 1), wa.eq(wa + 1)]
                with m.If(ci_last):
                    reply(Status.OK)
                with m.Else():
                    m.next = "WW_READ"

            # -- activation write: a dry pass checks the range, then staging[ci] -> (arow, alane)
            with m.State("WA_READ"):
                m.d.comb += [st_r.addr.eq(ci), st_r.en.eq(1)]
                m.d.sync += ci_last.eq(ci + 1 == length)
                with m.If(dry & (arow == self._act_rows)):
                    reply(Status.BAD_ARG)
                with m.Else():
                    m.next = "WA_WRITE"
            with m.State("WA_WRITE"):
                with m.If(~dry):
                    m.d.comb += [
                        self.act_waddr.eq(arow),
                        self.act_wen.eq(Const(1, C) << alane),
                        self.act_wdata.eq(st_r.data.replicate(C)),
                    ]
                m.d.sync += ci.eq(ci + 1)
                with m.If(alane == C - 1):
                    m.d.sync += [alane.eq(0), arow.eq(arow + 1)]
                with m.Else():
                    m.d.sync += alane.eq(alane + 1)
                with m.If(ci_last):
                    with m.If(dry):
                        # every byte has a row: now write for real
                        m.d.sync += [ci.eq(2), arow.eq(a_act_row), alane.eq(0), dry.eq(0)]
                        m.next = "WA_READ"
                    with m.Else():
                        reply(Status.OK)
                with m.Else():
                    m.next = "WA_READ"

            with m.State("RUN_WAIT"):
                with m.If(self.run_done):
                    m.d.sync += [last_status.eq(self.run_status), last_cycles.eq(self.run_cycles)]
                    with m.If(self.run_status == Status.ENGINE_ERROR):
                        m.d.sync += eng_err_seen.eq(1)
                    with m.If(self.run_status == Status.OK):
                        reply(Status.OK, 4, SRC_REGS, start=8)    # regs[8:12] = last_cycles
                    with m.Else():
                        reply(self.run_status)

            # -- reply: every byte goes ADDR (issue memory read) -> LOAD (latch) -> SEND
            with m.State("TX_ADDR"):
                m.d.comb += [self.w_addr.eq(rd_addr[3:]), self.w_en.eq(src == SRC_WEIGHTS),
                             self.res_raddr.eq(rd_addr), self.res_ren.eq(src == SRC_RESULTS)]
                m.next = "TX_LOAD"
            with m.State("TX_LOAD"):
                m.d.sync += t_last.eq(tcnt + 1 == r_len)
                # constant and register bytes are read with variable word selects (shift
                # multiplexers; the INFO bytes become a 32-entry constant table)
                hdr = Cat(Const(REP_SYNC, 8), op, r_status, Const(0, 5), r_len,
                          Const(0, 16 - plen), Const(0, 24))
                info = Const(int.from_bytes(info_bytes, "little"), 8 * 32)
                regs16 = Cat(regs, Const(0, 32))
                with m.Switch(phase):
                    with m.Case(0):
                        m.d.sync += tx_byte.eq(hdr.word_select(tcnt[:3], 8))
                    with m.Case(1):
                        with m.Switch(src):
                            with m.Case(SRC_INFO):
                                m.d.sync += tx_byte.eq(info.word_select(rd_addr[:5], 8))
                            with m.Case(SRC_REGS):
                                m.d.sync += tx_byte.eq(regs16.word_select(rd_addr[:4], 8))
                            with m.Case(SRC_WEIGHTS):
                                m.d.sync += tx_byte.eq(self.w_rdata.word_select(rd_addr[:3], 8))
                            with m.Case(SRC_RESULTS):
                                m.d.sync += tx_byte.eq(self.res_rdata.word_select(rd_lane, 8))
                    with m.Case(2):
                        m.d.sync += tx_byte.eq(tx_crc.word_select(tcnt[0], 8))
                m.next = "TX_SEND"
            with m.State("TX_SEND"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tx_byte)]
                with m.If(self.tx.ready):
                    m.d.sync += tcnt.eq(tcnt + 1)
                    # the sync byte and the CRC itself are not covered
                    with m.If((phase == 1) | ((phase == 0) & (tcnt != 0))):
                        m.d.sync += tx_crc.eq(crc16_step(tx_crc, tx_byte))
                    m.next = "TX_ADDR"
                    with m.Switch(phase):
                        with m.Case(0):
                            with m.If(tcnt == 4):
                                m.d.sync += [tcnt.eq(0), phase.eq(Mux(r_len == 0, 2, 1))]
                        with m.Case(1):
                            with m.If(src == SRC_RESULTS):
                                m.d.sync += rd_lane.eq(rd_lane + 1)
                                with m.If(rd_lane == 3):
                                    m.d.sync += rd_addr.eq(rd_addr + 1)
                            with m.Else():
                                m.d.sync += rd_addr.eq(rd_addr + 1)
                            with m.If(t_last):
                                m.d.sync += [tcnt.eq(0), phase.eq(2)]
                        with m.Case(2):
                            with m.If(tcnt == 1):
                                # the reply is out: back to the start values for the next
                                m.d.sync += [tcnt.eq(0), phase.eq(0), tx_crc.eq(0xFFFF)]
                                with m.If(r_bad):
                                    m.d.sync += bad_frames.eq(bad_frames + 1)
                                with m.Else():
                                    m.d.sync += good_frames.eq(good_frames + 1)
                                m.next = "IDLE"
        return m
