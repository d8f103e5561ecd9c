"""The gateware side of the host protocol (:mod:`fpga.protocol`): receiver, executor, reply
sender.

:class:`Link` joins three blocks by streams:

- :class:`~fpga.link_receiver.FrameReceiver` parses the UART's bytes into request frames, puts
  each payload into the staging buffer (one EBR) and checks the CRC
  (``amaranth.lib.crc``); a frame, whole or cut short, is one ``frame`` transfer;
- :class:`~fpga.link_executor.Executor` checks the request (opcode, length, arguments, RUN
  admission) and only then writes the staged bytes into the weight or activation memory or
  starts the runner, so a bad or refused request changes no stored data; it holds the
  STATUS flags and frame counters, and hands one ``reply`` per request on;
- :class:`~fpga.link_reply.ReplySender` sends the reply frame (header, payload from the INFO
  ROM, the status registers, the weight or the result memory, CRC).

Each stream is consumed when the work behind it is finished: the sender takes ``reply`` after
the reply's last byte, the executor then takes ``frame``, and the receiver parses the next
frame. Exactly one reply is sent per request; framing errors (a length above
:data:`~fpga.protocol.MAX_PAYLOAD`, a frame cut short) are answered once the line has been
idle for ``timeout`` cycles. While a request executes and its reply is sent the link does not
take bytes (the host waits for the reply; a byte sent anyway is dropped and flagged as a UART
overrun in STATUS).

The blocks are built for the engine's clock (48 MHz on the UP5K, where a LUT level and its
routing cost 2.5-3.5 ns): every received byte is registered with the compares made on it, the
frame checks are spread over three registered steps, each reply byte is read, selected and
sent in separate cycles, and "last byte" conditions are registered flags or down counters. A
byte takes 10 bit times on the line (480 cycles at 1 Mbaud and 48 MHz), so the extra cycles
cost nothing.
"""

from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import In, Out

from fpga.link_executor import Executor
from fpga.link_receiver import FrameReceiver
from fpga.link_reply import ReplySender
from fpga.memory import WORD_BYTES, WeightPortSignature, addr_width
from fpga.protocol import MAX_PAYLOAD, PROTOCOL_VERSION, Info
from fpga.runner import RunControlSignature
from hw._util import check_int, validated

__all__ = ["Link"]


class Link(wiring.Component):
    """The host link: frame receiver, executor and reply sender (see the module docstring).

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
        Weight memory port (when no run is in progress): the executor's writes, the reply
        sender's reads.
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
        m.submodules.receiver = rx = FrameReceiver(timeout=self._timeout)
        m.submodules.executor = ex = Executor(
            config=self._config, weight_depth=self._weight_depth, act_rows=self._act_rows,
            result_depth=self._result_depth)
        m.submodules.sender = tx = ReplySender(
            info=self.info.pack(), weight_depth=self._weight_depth,
            result_depth=self._result_depth, start_width=ex.start_width)

        # the staging buffer: written by the receiver, read by the executor, never in the same
        # cycle (the receiver holds while a request executes): no read/write collision logic
        m.submodules.staging = staging = Memory(shape=unsigned(8), depth=MAX_PAYLOAD, init=[],
                                                attrs={"no_rw_check": 1})
        wiring.connect(m, rx.staging, staging.write_port())
        wiring.connect(m, ex.staging, staging.read_port())

        wiring.connect(m, wiring.flipped(self.rx), rx.rx)
        wiring.connect(m, rx.frame, ex.frame)
        wiring.connect(m, ex.reply, tx.reply)
        wiring.connect(m, tx.tx, wiring.flipped(self.tx))
        m.d.comb += [tx.regs.eq(ex.regs), ex.dropped.eq(rx.dropped)]

        wiring.connect(m, ex.act_mem, wiring.flipped(self.act_mem))
        wiring.connect(m, tx.res_mem, wiring.flipped(self.res_mem))
        wiring.connect(m, ex.run, wiring.flipped(self.run))
        m.d.comb += [
            self.engine_reset.eq(ex.engine_reset), ex.engine_busy.eq(self.engine_busy),
            ex.engine_error.eq(self.engine_error), ex.uart_overrun.eq(self.uart_overrun),
            ex.uart_frame_error.eq(self.uart_frame_error),
        ]

        # the weight memory's one port: the executor writes before the reply is set up, the
        # sender reads while the reply is sent; each holds its address at 0 while the other
        # uses the port, so the addresses are ORed (no multiplexer)
        wport = self.weight_mem
        m.d.comb += [
            wport.addr.eq(tx.weight_mem.addr | ex.weight_mem.addr),
            wport.en.eq(ex.weight_mem.en | tx.weight_mem.en),
            wport.we.eq(ex.weight_mem.en),
            wport.wmask.eq(ex.weight_mem.wmask),
            wport.wdata.eq(ex.weight_mem.wdata),
            tx.weight_mem.data.eq(wport.rdata),
        ]
        return m
