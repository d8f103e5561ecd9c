"""The gateware side of the host protocol (:mod:`fpga.protocol`): frame parser and dispatcher.

Bytes from the UART receiver are parsed into request frames. The whole payload goes into a
staging buffer (one EBR) while the CRC is computed; nothing is written to the weight or
activation memory before the frame's CRC, opcode, length and arguments have been checked, so
a bad frame never corrupts stored data. A RUN is admitted only if its results, activation rows
and weight bytes fit the memories (``RANGE``) and both the weight and the activation memory
have been written since power-up (``NOT_LOADED``), so a refused RUN changes nothing either.
Exactly one reply frame is sent per request; framing errors (length above
:data:`~fpga.protocol.MAX_PAYLOAD`, a frame cut short) are answered once the line has been
idle for ``timeout`` cycles. While a request executes and its reply is sent the
link does not take bytes (the host waits for the reply; a byte sent anyway is dropped and
flagged as a UART overrun in STATUS).

The link is built for the engine's clock (48 MHz on the UP5K, where a LUT level and its
routing cost 2.5-3.5 ns), so no path has more than a few LUT levels:

- every received byte is registered together with the compares the parser makes on it;
- the receiver (sync, opcode, length, payload, CRC) and the executor (checks, memory copies,
  reply) are separate state machines that hand a frame over by registered pulses;
- the frame checks are spread over three registered steps; each reply byte is read, selected
  and sent in separate cycles; "last byte" conditions are registered flags or down counters.

A byte takes 10 bit times on the line (480 cycles at 1 Mbaud and 48 MHz), so the extra cycles
cost nothing. Only additions, comparisons and shifts by constants are used (no multiplier).
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from fpga.admission import RunAdmission
from fpga.memory import WORD_BYTES, WeightPortSignature, addr_width
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
from fpga.runner import RunControlSignature
from hw._util import check_int, validated

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
    weight_mem : In(WeightPortSignature(weight_depth))
        Weight memory port (when no run is in progress).
    act_mem : In(WritePort.Signature(...))
        Activation memory write port (``cols`` bytes per row, one enable per lane byte).
    res_mem : In(ReadPort.Signature(...))
        Result memory read port.
    run : Out(RunControlSignature(weight_depth))
        The :class:`fpga.runner.LayerRunner` control.
    engine_reset : out
        Pulsed by a RESET request.
    engine_busy, engine_error : in
        Engine state for STATUS.
    """

    @validated
    def __init__(self, *, config, weight_depth: int, act_rows: int, result_depth: int,
                 timeout: int, clk_hz: int):
        check_int("timeout", timeout, 1)
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
            "weight_mem": In(WeightPortSignature(weight_depth)),
            "act_mem": In(WritePort.Signature(addr_width=addr_width(act_rows),
                                              shape=unsigned(8 * C), granularity=8)),
            "res_mem": In(ReadPort.Signature(addr_width=addr_width(result_depth),
                                             shape=unsigned(32))),
            "run": Out(RunControlSignature(weight_depth)),
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
        ops = list(Op)

        # written by the receiver, read by the executor, never in the same cycle: no read/write
        # collision logic (``no_rw_check``)
        m.submodules.staging = staging = Memory(shape=unsigned(8), depth=MAX_PAYLOAD, init=[],
                                                attrs={"no_rw_check": 1})
        st_w = staging.write_port()
        st_r = staging.read_port()
        # the INFO reply's bytes as a 32 x 8 ROM (Yosys maps it to LUTs, fewer than a byte
        # select on a constant), read like the other reply sources: addressed in TX_ADDR, its
        # byte taken in TX_LOAD
        m.submodules.info_rom = info_rom = Memory(shape=unsigned(8), depth=32,
                                                  init=list(info_bytes))
        info_r = info_rom.read_port()

        # -- stage 1: every byte from the UART is taken and registered, with the few compares
        # the parser makes on it, so that no byte compare sits in front of the parser's state
        # logic. Bytes that arrive while a request executes are dropped and flagged as overrun.
        m.d.comb += self.rx.ready.eq(1)
        rb = Signal(8)
        rv = Signal()            # rb is a new byte (one cycle)
        rb_sync = Signal()       # rb == REQ_SYNC
        rb_zero = Signal()
        rb_one = Signal()
        rb_gt_hi = Signal()      # rb > MAX_PAYLOAD >> 8 (as a length's high byte: too long)
        rb_eq_hi = Signal()      # rb == MAX_PAYLOAD >> 8
        rb_gt_lo = Signal()      # rb > MAX_PAYLOAD & 0xFF
        max_hi, max_lo = MAX_PAYLOAD >> 8, MAX_PAYLOAD & 0xFF
        m.d.sync += rv.eq(self.rx.valid)
        with m.If(self.rx.valid):
            p = self.rx.payload
            m.d.sync += [rb.eq(p), rb_sync.eq(p == REQ_SYNC), rb_zero.eq(p == 0),
                         rb_one.eq(p == 1), rb_gt_hi.eq(p > max_hi), rb_eq_hi.eq(p == max_hi),
                         rb_gt_lo.eq(p > max_lo)]

        # -- the request as received (stable while it executes)
        op = Signal(8)
        length = Signal(plen)
        args = Signal(80)
        crc = Signal(16)
        rx_crc = Signal(16)

        # sticky flags and counters
        eng_err_seen = Signal()
        overrun_seen = Signal()
        frame_err_seen = Signal()
        dropped = Signal()       # a byte arrived while a request was executing
        # RESET: the sticky flags are held clear until its reply is out (the engine's error
        # output falls only once the registered engine reset has reached it)
        clear_flags = Signal()
        good_frames = Signal(16)
        bad_frames = Signal(16)
        run_err = Signal()
        for flag, setter in ((overrun_seen, self.uart_overrun | dropped),
                             (frame_err_seen, self.uart_frame_error),
                             (eng_err_seen, self.engine_error | run_err)):
            with m.If(clear_flags):
                m.d.sync += flag.eq(0)
            with m.Elif(setter):
                m.d.sync += flag.eq(1)

        # receiver -> executor handshake (registered pulses)
        frame_ok = Signal()      # a whole frame is in: check and execute it
        frame_abort = Signal()   # the frame is cut short or too long: reply abort_status
        abort_status = Signal(Status)
        exec_done = Signal()     # the reply is out: receive the next frame
        m.d.sync += [frame_ok.eq(0), frame_abort.eq(0), exec_done.eq(0)]

        # -- receiver. The idle timer counts up from 2**N - timeout; its top bit is the
        # timeout (a carry out, not a compare)
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
        argsel = Signal(10)      # one-hot: the argument byte the next payload byte is
        lo_zero = Signal()
        lo_one = Signal()
        lo_gt = Signal()
        crc_in = crc16_step(crc, rb)

        def abort(status):
            m.d.sync += [frame_abort.eq(1), abort_status.eq(int(status))]
            m.next = "HOLD"

        with m.FSM(name="rx_fsm"):
            with m.State("SYNC"):
                with m.If(rv & rb_sync):
                    m.d.sync += [crc.eq(0xFFFF), op.eq(0), cnt.eq(0), argsel.eq(1), args.eq(0)]
                    m.next = "OP"
            for state, nxt in (("OP", "LEN0"), ("LEN0", "LEN1"), ("LEN1", None),
                               ("PAYLOAD", None), ("CRC0", "CRC1"), ("CRC1", "HOLD")):
                with m.State(state):
                    m.d.comb += receiving.eq(1)
                    with m.If(rv):
                        if state in ("OP", "LEN0", "LEN1", "PAYLOAD"):
                            m.d.sync += crc.eq(crc_in)
                        if state == "OP":
                            m.d.sync += op.eq(rb)
                        elif state == "LEN0":
                            m.d.sync += [length[:8].eq(rb), lo_zero.eq(rb_zero),
                                         lo_one.eq(rb_one), lo_gt.eq(rb_gt_lo)]
                        elif state == "LEN1":
                            m.d.sync += [length[8:].eq(rb), rem.eq(Cat(length[:8], rb)),
                                         rem_one.eq(lo_one & rb_zero)]
                            with m.If(rb_gt_hi | (rb_eq_hi & lo_gt)):
                                m.next = "DRAIN"
                            with m.Elif(lo_zero & rb_zero):
                                m.next = "CRC0"
                            with m.Else():
                                m.next = "PAYLOAD"
                        elif state == "PAYLOAD":
                            m.d.comb += [st_w.addr.eq(cnt), st_w.data.eq(rb), st_w.en.eq(1)]
                            for k in range(10):
                                with m.If(argsel[k]):
                                    m.d.sync += args[8 * k:8 * k + 8].eq(rb)
                            m.d.sync += [argsel.eq(argsel << 1), cnt.eq(cnt + 1),
                                         rem.eq(rem - 1), rem_one.eq(rem == 2)]
                            with m.If(rem_one):
                                m.next = "CRC0"
                        elif state == "CRC0":
                            m.d.sync += rx_crc[:8].eq(rb)
                        elif state == "CRC1":
                            m.d.sync += [rx_crc[8:].eq(rb), frame_ok.eq(1)]
                        if nxt is not None:
                            m.next = nxt
                    with m.Elif(timed_out):
                        abort(Status.TRUNCATED)
            with m.State("DRAIN"):
                m.d.comb += receiving.eq(1)
                with m.If(timed_out):
                    abort(Status.BAD_LENGTH)
            with m.State("HOLD"):
                m.d.comb += dropped.eq(rv)
                with m.If(exec_done):
                    m.next = "SYNC"

        # -- executor: the checks are spread over CHECK1..3 (registered), DECIDE acts on them
        a_addr = args[0:aw]
        a_count = args[32:48]
        a_act_row = args[0:16]
        a_m, a_k, a_tokens, a_wbase = args[0:16], args[16:32], args[32:48], args[48:80]
        a_index, a_rcount = args[0:16], args[16:32]
        run_cmd = self.run.cmd
        m.d.comb += [run_cmd.payload.m.eq(a_m), run_cmd.payload.k.eq(a_k),
                     run_cmd.payload.tokens.eq(a_tokens), run_cmd.payload.wbase.eq(a_wbase[3:])]

        op_is = {o: Signal(name=f"op_is_{o.name.lower()}") for o in ops}
        known = Signal()
        crc_bad = Signal()
        len_ok_op = {o: Signal(name=f"len_ok_{o.name.lower()}") for o in ops}
        len_m1 = Signal(plen)
        addr_high = Signal()
        ww_end = Signal(aw + 1)
        rw_end = Signal(aw + 1)
        rr_end = Signal(17)
        cnt_big = Signal()
        rcnt_big = Signal()
        run_bits = Signal(7)
        bad_op = {o: Signal(name=f"bad_{o.name.lower()}") for o in ops}
        len_ok = Signal()
        fail = Signal()
        status = Signal(Status)

        # the run command: valid from ADMIT until the runner (idle) takes it
        run_valid = Signal()
        eng_reset = Signal()
        m.d.sync += [eng_reset.eq(0), run_err.eq(0)]
        with m.If(run_cmd.ready):
            m.d.sync += run_valid.eq(0)
        with m.If(exec_done):
            m.d.sync += clear_flags.eq(0)
        m.d.comb += [run_cmd.valid.eq(run_valid), self.engine_reset.eq(eng_reset)]

        # reply registers; every payload byte is picked by a byte index (no wide shift
        # registers); the frame counters are advanced when the reply has been sent, so a
        # STATUS reply reports the frames before itself
        r_status = Signal(Status)
        r_ok = Signal()
        r_len = Signal(plen)
        r_len_zero = Signal()
        r_len_m1 = Signal(plen)
        r_bad = Signal()
        s_info, s_regs, s_w, s_res = Signal(), Signal(), Signal(), Signal()   # payload source
        ph_hdr = Signal(init=1)  # phase of the reply: header, payload, crc (one-hot)
        ph_pay = Signal()
        ph_crc = Signal()
        tcnt = Signal(plen)
        tx_byte = Signal(8)
        tx_crc = Signal(16, init=0xFFFF)
        # byte index / weight byte address / result entry of the reply, and the weight byte a
        # WRITE_WEIGHTS copies to (the copy ends before its reply is set up)
        rd_addr = Signal(aw)
        rd_lane = Signal(2)      # byte of the current result entry
        b_hdr, b_info, b_regs, b_w, b_res, b_crc = (Signal(8, name=f"b_{n}") for n in
                                                    ("hdr", "info", "regs", "w", "res", "crc"))
        t_last = Signal()
        hdr_last = Signal()
        crc_last = Signal()
        covered = Signal()       # the byte goes into the reply CRC

        # copy loops (writes after the checks)
        # staging index: the reply's byte counter, which the copy loops use before the reply
        # (REPLY clears it)
        ci = tcnt
        # the staging read port follows ci (its enable stays at its default, 1): the byte read
        # in a *_READ state is still there in the states after it, until ci moves
        m.d.comb += st_r.addr.eq(ci)
        ci_last = Signal()
        arow = Signal(range(self._act_rows + 1))
        row_over = Signal()
        alane = Signal(range(C))
        dry = Signal()

        # RUN admission (fpga.admission): started from DECIDE, its verdict taken in ADMIT
        m.submodules.admission = adm = RunAdmission(
            config=cfg, weight_bytes=weight_bytes, act_rows=self._act_rows,
            result_depth=self._result_depth)
        adm_start = Signal()
        m.d.sync += adm_start.eq(0)
        m.d.comb += [adm.start.eq(adm_start), adm.m.eq(a_m), adm.k.eq(a_k),
                     adm.tokens.eq(a_tokens), adm.wbase.eq(a_wbase[:aw])]
        # loaded marks, one per memory: set by a write into it, cleared only by the board's
        # reset (the RESET request keeps the memories and the marks)
        w_loaded = Signal()
        a_loaded = Signal()

        # the STATUS payload; a RUN reply is its last four bytes (the cycles of the last run:
        # the runner's status and cycle count hold from the end of a run to the next start,
        # so they are read from the runner, not copied)
        flags = Cat(eng_err_seen, self.engine_busy, overrun_seen, frame_err_seen, Const(0, 4))
        regs = Cat(flags, self.run.status, Const(0, 4 + 16), good_frames, bad_frames,
                   self.run.cycles)

        def reply(st, ok=False):
            m.d.sync += [r_status.eq(st), r_ok.eq(ok)]
            m.next = "REPLY"

        # The weight memory's address, mask and data are set from registers in every state
        # (the memory only acts on them with `w_en`): `rd_addr`, which is the address of the
        # weight write or of the reply's read, the byte enable of the write, the staged byte
        # in every lane. So the executor's state only reaches `w_en` and `w_we`.
        wport = self.weight_mem
        m.d.comb += [
            wport.addr.eq(rd_addr[3:]),
            wport.wmask.eq(Const(1, WORD_BYTES) << rd_addr[:3]),
            wport.wdata.eq(st_r.data.replicate(WORD_BYTES)),
            # the read port's enable defaults to 1: the result memory is read in TX_ADDR only
            self.res_mem.en.eq(0),
        ]
        with m.FSM(name="fsm"):
            with m.State("IDLE"):
                with m.If(frame_ok):
                    m.next = "CHECK1"
                with m.Elif(frame_abort):
                    reply(abort_status)

            with m.State("CHECK1"):
                # compares on the received fields, each on its own
                m.d.sync += [op_is[o].eq(op == o) for o in ops]
                m.d.sync += [
                    crc_bad.eq(rx_crc != crc),
                    len_m1.eq(length - 1),
                    addr_high.eq(args[aw:32] != 0),
                    ww_end.eq(a_addr + (length - ARG_LEN[Op.WRITE_WEIGHTS])),
                    rw_end.eq(a_addr + a_count[:plen]),
                    rr_end.eq(a_index + a_rcount),
                    cnt_big.eq(a_count > MAX_PAYLOAD),
                    rcnt_big.eq(a_rcount > MAX_PAYLOAD // 4),
                    run_bits.eq(Cat(a_m == 0, a_m > cfg.max_m, a_k == 0, a_k > cfg.max_k,
                                    a_tokens == 0, a_wbase[:3] != 0, a_wbase >= weight_bytes)),
                ]
                for o in ops:
                    n = ARG_LEN[o]
                    m.d.sync += len_ok_op[o].eq(length > n if o in DATA_OPS else length == n)
                m.next = "CHECK2"
            with m.State("CHECK2"):
                m.d.sync += [
                    known.eq(Cat(*op_is.values()).any()),
                    len_ok.eq(Cat(*(op_is[o] & len_ok_op[o] for o in ops)).any()),
                    bad_op[Op.WRITE_WEIGHTS].eq(addr_high | (ww_end > weight_bytes)),
                    bad_op[Op.READ_WEIGHTS].eq(cnt_big | addr_high | (rw_end > weight_bytes)),
                    bad_op[Op.READ_RESULTS].eq(rcnt_big | (rr_end > self._result_depth)),
                    bad_op[Op.WRITE_ACT].eq(a_act_row >= self._act_rows),
                    bad_op[Op.RUN].eq(run_bits.any()),
                ]
                m.next = "CHECK3"
            with m.State("CHECK3"):
                arg_bad = Cat(*(op_is[o] & bad_op[o] for o in ops
                                if o in (Op.WRITE_WEIGHTS, Op.READ_WEIGHTS, Op.READ_RESULTS,
                                         Op.WRITE_ACT, Op.RUN))).any()
                m.d.sync += [
                    fail.eq(crc_bad | ~known | ~len_ok | arg_bad),
                    status.eq(Mux(crc_bad, Status.BAD_CRC,
                                  Mux(~known, Status.UNKNOWN_OP,
                                      Mux(~len_ok, Status.BAD_LENGTH,
                                          Mux(arg_bad, Status.BAD_ARG, Status.OK))))),
                ]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += [r_status.eq(status), r_ok.eq(~fail)]
                with m.If(fail):
                    m.next = "REPLY"
                with m.Elif(op_is[Op.WRITE_WEIGHTS]):
                    m.d.sync += [ci.eq(ARG_LEN[Op.WRITE_WEIGHTS]), rd_addr.eq(a_addr)]
                    m.next = "WW_READ"
                with m.Elif(op_is[Op.WRITE_ACT]):
                    m.d.sync += [ci.eq(ARG_LEN[Op.WRITE_ACT]), arow.eq(a_act_row),
                                 alane.eq(0), dry.eq(1)]
                    m.next = "WA_READ"
                with m.Elif(op_is[Op.RUN]):
                    m.d.sync += adm_start.eq(1)
                    m.next = "ADMIT"
                with m.Else():
                    with m.If(op_is[Op.RESET]):
                        m.d.sync += [eng_reset.eq(1), clear_flags.eq(1)]
                    m.next = "REPLY"   # INFO, STATUS, RESET, READ_WEIGHTS, READ_RESULTS

            # -- weight write: staging[ci] -> weight byte rd_addr
            with m.State("WW_READ"):
                m.d.sync += ci_last.eq(ci == len_m1)
                m.next = "WW_WRITE"
            with m.State("WW_WRITE"):
                m.d.comb += [wport.en.eq(1), wport.we.eq(1)]
                m.d.sync += [ci.eq(ci + 1), rd_addr.eq(rd_addr + 1), w_loaded.eq(1)]
                with m.If(ci_last):
                    m.next = "REPLY"
                with m.Else():
                    m.next = "WW_READ"

            # -- activation write: a dry pass checks the range, then staging[ci] -> (arow, alane)
            with m.State("WA_READ"):
                m.d.sync += [ci_last.eq(ci == len_m1), row_over.eq(arow == self._act_rows)]
                m.next = "WA_CHECK"
            with m.State("WA_CHECK"):
                with m.If(dry & row_over):
                    reply(Status.BAD_ARG)
                with m.Else():
                    m.next = "WA_WRITE"
            with m.State("WA_WRITE"):
                with m.If(~dry):
                    m.d.comb += [
                        self.act_mem.addr.eq(arow),
                        self.act_mem.en.eq(Const(1, C) << alane),
                        self.act_mem.data.eq(st_r.data.replicate(C)),
                    ]
                    m.d.sync += a_loaded.eq(1)
                m.d.sync += ci.eq(ci + 1)
                with m.If(alane == C - 1):
                    m.d.sync += [alane.eq(0), arow.eq(arow + 1)]
                with m.Else():
                    m.d.sync += alane.eq(alane + 1)
                with m.If(ci_last):
                    with m.If(dry):
                        # every byte has a row: now write for real
                        m.d.sync += [ci.eq(ARG_LEN[Op.WRITE_ACT]), arow.eq(a_act_row),
                                     alane.eq(0), dry.eq(0)]
                        m.next = "WA_READ"
                    with m.Else():
                        m.next = "REPLY"
                with m.Else():
                    m.next = "WA_READ"

            # -- RUN admission: the run starts only if it fits the memories (RANGE otherwise)
            # and both memories have been written since power-up (NOT_LOADED otherwise), so a
            # refused RUN changes nothing
            with m.State("ADMIT"):
                with m.If(adm.done):
                    with m.If(~adm.fits):
                        reply(Status.RANGE)
                    with m.Elif(~(w_loaded & a_loaded)):
                        reply(Status.NOT_LOADED)
                    with m.Else():
                        m.d.sync += run_valid.eq(1)     # the (idle) runner takes it next cycle
                        m.next = "RUN_WAIT"

            with m.State("RUN_WAIT"):
                with m.If(self.run.done):
                    m.d.sync += run_err.eq(self.run.status == Status.ENGINE_ERROR)
                    reply(self.run.status, self.run.status == Status.OK)

            # -- reply set-up: length, source and start address from the opcode and r_ok
            with m.State("REPLY"):
                ok_is = {o: r_ok & op_is[o] for o in ops}
                rlen = Const(0, plen)
                for o, n in ((Op.INFO, Const(len(info_bytes), plen)),
                             (Op.STATUS, Const(12, plen)), (Op.RUN, Const(4, plen)),
                             (Op.READ_WEIGHTS, a_count[:plen]),
                             (Op.READ_RESULTS, Cat(Const(0, 2), a_rcount[:plen - 2]))):
                    rlen = rlen | Mux(ok_is[o], n, 0)
                start = (Mux(ok_is[Op.READ_WEIGHTS], a_addr, 0)
                         | Mux(ok_is[Op.READ_RESULTS], a_index, 0)
                         | Mux(ok_is[Op.RUN], 8, 0))                   # regs[8:12]: run_cycles
                bad = Const(0, 1)
                for s in (Status.BAD_CRC, Status.BAD_LENGTH, Status.UNKNOWN_OP, Status.TRUNCATED):
                    bad = bad | (r_status == s)
                m.d.sync += [
                    r_len.eq(rlen), rd_addr.eq(start), rd_lane.eq(0), r_bad.eq(bad), tcnt.eq(0),
                    s_info.eq(ok_is[Op.INFO]), s_w.eq(ok_is[Op.READ_WEIGHTS]),
                    s_res.eq(ok_is[Op.READ_RESULTS]),
                    s_regs.eq(~(ok_is[Op.INFO] | ok_is[Op.READ_WEIGHTS]
                                | ok_is[Op.READ_RESULTS])),
                ]
                m.next = "REPLY_LEN"
            with m.State("REPLY_LEN"):
                m.d.sync += [r_len_zero.eq(r_len == 0), r_len_m1.eq(r_len - 1)]
                m.next = "TX_ADDR"

            # -- reply: every byte goes ADDR (memory read) -> LOAD (each source's byte) ->
            # MUX (the byte) -> SEND. tcnt counts within a phase; ph_* are one-hot
            with m.State("TX_ADDR"):
                m.d.comb += [wport.en.eq(s_w), info_r.addr.eq(rd_addr[:5]),
                             self.res_mem.addr.eq(rd_addr), self.res_mem.en.eq(s_res)]
                m.next = "TX_LOAD"
            with m.State("TX_LOAD"):
                hdr = Cat(Const(REP_SYNC, 8), op, r_status, Const(0, 4), r_len,
                          Const(0, 16 - plen), Const(0, 24))
                regs16 = Cat(regs, Const(0, 32))
                m.d.sync += [
                    b_hdr.eq(hdr.word_select(tcnt[:3], 8)),
                    b_info.eq(info_r.data),
                    b_regs.eq(regs16.word_select(rd_addr[:4], 8)),
                    b_w.eq(wport.rdata.word_select(rd_addr[:3], 8)),
                    b_res.eq(self.res_mem.data.word_select(rd_lane, 8)),
                    b_crc.eq(tx_crc.word_select(tcnt[0], 8)),
                    t_last.eq(tcnt == r_len_m1),
                    hdr_last.eq(tcnt[:3] == 4),
                    crc_last.eq(tcnt[0]),
                    # the sync byte and the CRC itself are not covered
                    covered.eq(ph_pay | (ph_hdr & (tcnt[:3] != 0))),
                ]
                m.next = "TX_MUX"
            with m.State("TX_MUX"):
                m.d.sync += tx_byte.eq(Mux(ph_hdr, b_hdr, 0) | Mux(ph_crc, b_crc, 0)
                                       | Mux(ph_pay & s_info, b_info, 0)
                                       | Mux(ph_pay & s_regs, b_regs, 0)
                                       | Mux(ph_pay & s_w, b_w, 0)
                                       | Mux(ph_pay & s_res, b_res, 0))
                m.next = "TX_SEND"
            with m.State("TX_SEND"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(tx_byte)]
                with m.If(self.tx.ready):
                    m.d.sync += tcnt.eq(tcnt + 1)
                    with m.If(covered):
                        m.d.sync += tx_crc.eq(crc16_step(tx_crc, tx_byte))
                    m.next = "TX_ADDR"
                    with m.If(ph_hdr & hdr_last):
                        m.d.sync += [tcnt.eq(0), ph_hdr.eq(0), ph_pay.eq(~r_len_zero),
                                     ph_crc.eq(r_len_zero)]
                    with m.If(ph_pay):
                        with m.If(s_res):
                            m.d.sync += rd_lane.eq(rd_lane + 1)
                            with m.If(rd_lane == 3):
                                m.d.sync += rd_addr.eq(rd_addr + 1)
                        with m.Else():
                            m.d.sync += rd_addr.eq(rd_addr + 1)
                        with m.If(t_last):
                            m.d.sync += [tcnt.eq(0), ph_pay.eq(0), ph_crc.eq(1)]
                    with m.If(ph_crc & crc_last):
                        # the reply is out: back to the start values for the next
                        m.d.sync += [tcnt.eq(0), ph_crc.eq(0), ph_hdr.eq(1),
                                     tx_crc.eq(0xFFFF), exec_done.eq(1)]
                        m.next = "IDLE"
        # the frame counters advance on the registered end-of-reply pulse (the sink's `ready`
        # does not reach their enables); r_bad holds until the next reply is set up
        with m.If(exec_done):
            with m.If(r_bad):
                m.d.sync += bad_frames.eq(bad_frames + 1)
            with m.Else():
                m.d.sync += good_frames.eq(good_frames + 1)
        return m
