"""The link's executor: checks a received request, carries it out and sets up its reply.

A request (:class:`fpga.link_receiver.RequestLayout`, its payload in the staging buffer) is
checked before anything is written: CRC (done by the receiver), opcode, length and
arguments, in three registered steps (CHECK1..3) decided in DECIDE. Only then does a
WRITE_WEIGHTS or WRITE_ACT copy the staged bytes into the weight or activation memory, so a
bad frame never corrupts stored data. A RUN is admitted only if its results, activation rows
and weight bytes fit the memories (``RANGE``, :mod:`fpga.admission`) and both memories have
been written since power-up (``NOT_LOADED``), so a refused RUN changes nothing either. Every
request, good or bad, gets exactly one reply (:class:`fpga.link_reply.ReplyLayout` on
``reply``); when the reply is out the request's ``frame`` is consumed and the frame counters
advance (so a STATUS reply reports the frames before itself).

The executor keeps the link's state: the sticky STATUS flags (engine error, UART overrun,
UART framing error; cleared by RESET), the good and bad frame counters and the two "loaded"
marks, and shows them as the status registers ``regs`` (the STATUS reply's payload).
Only additions, comparisons and shifts by constants are used (no multiplier).
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from fpga.admission import RunAdmission
from fpga.link_receiver import STAGING_ADDR_WIDTH, RequestLayout
from fpga.link_reply import REGS_BYTES, ReplyLayout
from fpga.memory import WORD_BYTES, WeightWriteSignature, addr_width
from fpga.protocol import ARG_LEN, DATA_OPS, MAX_PAYLOAD, Info, Op, Status
from fpga.runner import RunControlSignature
from hw._util import validated

__all__ = ["Executor"]


class Executor(wiring.Component):
    """Checks and executes requests (see the module docstring).

    Parameters
    ----------
    config : AccelConfig
    weight_depth : int
        Words (8 bytes) of the weight memory.
    act_rows : int
        Rows (``cols`` bytes) of the activation memory.
    result_depth : int
        int32 entries of the result memory.

    Attributes
    ----------
    frame : In(stream.Signature(RequestLayout()))
        The received request; consumed when its reply is out.
    staging : In(ReadPort.Signature(...))
        Read port of the staging buffer (the request's payload).
    reply : Out(stream.Signature(ReplyLayout(start_width)))
        The reply to send.
    regs : Out(8 * REGS_BYTES)
        The status registers: flags, run status, good and bad frames, run cycles
        (:class:`fpga.protocol.StatusInfo`).
    weight_mem : Out(WeightWriteSignature(weight_depth))
        Writes of WRITE_WEIGHTS.
    act_mem : In(WritePort.Signature(...))
        Activation memory writes (``cols`` bytes per row, one enable per lane byte).
    run : Out(RunControlSignature(weight_depth))
        The :class:`fpga.runner.LayerRunner` control.
    engine_reset : out
        Pulsed by a RESET request.
    engine_busy, engine_error, uart_overrun, uart_frame_error, dropped : in
        For the STATUS flags (``dropped``: the receiver discarded a byte).
    """

    @validated
    def __init__(self, *, config, weight_depth: int, act_rows: int, result_depth: int):
        self._config = config
        self._weight_depth = weight_depth
        self._act_rows = act_rows
        self._result_depth = result_depth
        C = config.cols
        super().__init__({
            "frame": In(stream.Signature(RequestLayout())),
            "staging": In(ReadPort.Signature(addr_width=STAGING_ADDR_WIDTH,
                                              shape=unsigned(8))),
            "reply": Out(stream.Signature(ReplyLayout(self.start_width))),
            "regs": Out(8 * REGS_BYTES),
            "weight_mem": Out(WeightWriteSignature(weight_depth)),
            "act_mem": In(WritePort.Signature(addr_width=addr_width(act_rows),
                                               shape=unsigned(8 * C), granularity=8)),
            "run": Out(RunControlSignature(weight_depth)),
            "engine_reset": Out(1), "engine_busy": In(1), "engine_error": In(1),
            "uart_overrun": In(1), "uart_frame_error": In(1), "dropped": In(1),
        })

    @property
    def start_width(self):
        """Bits of byte addresses and result indices: as few as the memories need (a u32
        argument with any bit at or above it set is out of range by itself)."""
        return max((self._weight_depth * WORD_BYTES).bit_length(),
                   self._result_depth.bit_length(), 5)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        C = cfg.cols
        weight_bytes = self._weight_depth * WORD_BYTES
        aw = self.start_width
        plen = MAX_PAYLOAD.bit_length()     # payload lengths and byte counters: 0 .. 512
        ops = list(Op)

        req = self.frame.payload
        op, length, args = req.op, req.length, req.args
        a_addr = args[0:aw]
        a_count = args[32:48]
        a_act_row = args[0:16]
        a_m, a_k, a_tokens, a_wbase = args[0:16], args[16:32], args[32:48], args[48:80]
        a_index, a_rcount = args[0:16], args[16:32]
        run_cmd = self.run.cmd
        m.d.comb += [run_cmd.payload.m.eq(a_m), run_cmd.payload.k.eq(a_k),
                     run_cmd.payload.tokens.eq(a_tokens), run_cmd.payload.wbase.eq(a_wbase[3:])]

        # sticky flags and counters
        eng_err_seen = Signal()
        overrun_seen = Signal()
        frame_err_seen = Signal()
        # RESET: the sticky flags are held clear until its reply is out (the engine's error
        # output falls only once the registered engine reset has reached it)
        clear_flags = Signal()
        good_frames = Signal(16)
        bad_frames = Signal(16)
        run_err = Signal()
        for flag, setter in ((overrun_seen, self.uart_overrun | self.dropped),
                             (frame_err_seen, self.uart_frame_error),
                             (eng_err_seen, self.engine_error | run_err)):
            with m.If(clear_flags):
                m.d.sync += flag.eq(0)
            with m.Elif(setter):
                m.d.sync += flag.eq(1)
        exec_done = Signal()     # the reply is out (registered pulse): `frame` is taken
        m.d.sync += exec_done.eq(0)
        m.d.comb += self.frame.ready.eq(exec_done)
        # the STATUS payload; a RUN reply is its last four bytes (the cycles of the last run:
        # the runner's status and cycle count hold from the end of a run to the next start,
        # so they are read from the runner, not copied)
        flags = Cat(eng_err_seen, self.engine_busy, overrun_seen, frame_err_seen, Const(0, 4))
        m.d.comb += self.regs.eq(Cat(flags, self.run.status, Const(0, 4 + 16), good_frames,
                                     bad_frames, self.run.cycles))

        # the checks' registers (CHECK1..3)
        op_is = {o: Signal(name=f"op_is_{o.name.lower()}") for o in ops}
        known = Signal()
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

        # the reply (held from REPLY until the sender has sent it)
        rep = self.reply.payload
        rep_valid = Signal()
        m.d.comb += self.reply.valid.eq(rep_valid)
        r_status = Signal(Status)
        r_ok = Signal()
        r_bad = Signal()         # the reply counts as a bad frame
        # length, source and start of the reply from the opcode and r_ok: combinational, from
        # the request (held until the reply is out) and r_ok, set before REPLY
        ok_is = {o: r_ok & op_is[o] for o in ops}
        rlen = Const(0, plen)
        for o, n in ((Op.INFO, Const(Info.SIZE, plen)),
                     (Op.STATUS, Const(REGS_BYTES, plen)), (Op.RUN, Const(4, plen)),
                     (Op.READ_WEIGHTS, a_count[:plen]),
                     (Op.READ_RESULTS, Cat(Const(0, 2), a_rcount[:plen - 2]))):
            rlen = rlen | Mux(ok_is[o], n, 0)
        m.d.comb += [
            rep.op.eq(op), rep.status.eq(r_status), rep.length.eq(rlen),
            rep.start.eq(Mux(ok_is[Op.READ_WEIGHTS], a_addr, 0)
                         | Mux(ok_is[Op.READ_RESULTS], a_index, 0)
                         | Mux(ok_is[Op.RUN], 8, 0)),                  # regs[8:12]: run_cycles
            rep.source.info.eq(ok_is[Op.INFO]),
            rep.source.weights.eq(ok_is[Op.READ_WEIGHTS]),
            rep.source.results.eq(ok_is[Op.READ_RESULTS]),
            rep.source.regs.eq(~(ok_is[Op.INFO] | ok_is[Op.READ_WEIGHTS]
                                 | ok_is[Op.READ_RESULTS])),
        ]

        # copy loops (writes after the checks): staging[ci] -> weight byte w_addr, or -> act
        # row arow, lane alane. The staging read port follows ci (its enable stays at its
        # default, 1): the byte read in a *_READ state is still there in the states after it,
        # until ci moves
        ci = Signal(plen)
        m.d.comb += self.staging.addr.eq(ci)
        ci_last = Signal()
        w_addr = Signal(aw)
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

        def reply(st, ok=False):
            m.d.sync += [r_status.eq(st), r_ok.eq(ok)]
            m.next = "REPLY"

        # The weight write's address, mask and data are set from registers in every state
        # (the memory only acts on them with `en`): `w_addr`, the byte enable of its lane, the
        # staged byte in every lane. So the executor's state only reaches `en`.
        wport = self.weight_mem
        m.d.comb += [
            wport.addr.eq(w_addr[3:]),
            wport.wmask.eq(Const(1, WORD_BYTES) << w_addr[:3]),
            wport.wdata.eq(self.staging.data.replicate(WORD_BYTES)),
        ]
        with m.FSM(name="fsm"):
            with m.State("IDLE"):
                with m.If(self.frame.valid):
                    with m.If(req.status == Status.OK):
                        m.next = "CHECK1"
                    with m.Else():
                        # a bad CRC, or a frame cut short or too long: no checks to make
                        reply(req.status)

            with m.State("CHECK1"):
                # compares on the received fields, each on its own
                m.d.sync += [op_is[o].eq(op == o) for o in ops]
                m.d.sync += [
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
                    fail.eq(~known | ~len_ok | arg_bad),
                    status.eq(Mux(~known, Status.UNKNOWN_OP,
                                  Mux(~len_ok, Status.BAD_LENGTH,
                                      Mux(arg_bad, Status.BAD_ARG, Status.OK)))),
                ]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += [r_status.eq(status), r_ok.eq(~fail)]
                with m.If(fail):
                    m.next = "REPLY"
                with m.Elif(op_is[Op.WRITE_WEIGHTS]):
                    m.d.sync += [ci.eq(ARG_LEN[Op.WRITE_WEIGHTS]), w_addr.eq(a_addr)]
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

            # -- weight write: staging[ci] -> weight byte w_addr
            with m.State("WW_READ"):
                m.d.sync += ci_last.eq(ci == len_m1)
                m.next = "WW_WRITE"
            with m.State("WW_WRITE"):
                m.d.comb += wport.en.eq(1)
                m.d.sync += [ci.eq(ci + 1), w_addr.eq(w_addr + 1), w_loaded.eq(1)]
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
                        self.act_mem.data.eq(self.staging.data.replicate(C)),
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

            # -- the reply: its fields (below) are functions of registers that hold until it
            # has been sent; r_bad says whether it counts as a bad frame
            with m.State("REPLY"):
                bad = Const(0, 1)
                for s in (Status.BAD_CRC, Status.BAD_LENGTH, Status.UNKNOWN_OP, Status.TRUNCATED):
                    bad = bad | (r_status == s)
                # the weight write address is 0 while the reply is sent: `Link` ORs it with
                # the sender's read address
                m.d.sync += [r_bad.eq(bad), rep_valid.eq(1), w_addr.eq(0)]
                m.next = "REPLY_WAIT"
            with m.State("REPLY_WAIT"):
                with m.If(self.reply.ready):
                    m.d.sync += [rep_valid.eq(0), exec_done.eq(1)]
                    m.next = "RELEASE"
            with m.State("RELEASE"):
                # the request is finished: `frame` is taken in this cycle (its ready is the
                # registered `exec_done`), IDLE sees the receiver's next frame
                m.next = "IDLE"

        # the frame counters advance on the registered end-of-reply pulse; r_bad holds until
        # the next reply is set up
        with m.If(exec_done):
            with m.If(r_bad):
                m.d.sync += bad_frames.eq(bad_frames + 1)
            with m.Else():
                m.d.sync += good_frames.eq(good_frames + 1)
        return m
