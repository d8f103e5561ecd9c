"""The board design: UART + link + memories + layer runner + BitLinear engine.

:class:`BoardCore` is a ``wiring.Component`` with the serial pins as ports (``rx`` in, ``tx``
out), simulated as is. :class:`BoardTop` puts it on an ``amaranth-boards`` iCE40 platform
(``uart`` resource 0, the board clock, optionally a PLL); ``python -m hw.build --target ice40
--top fpga`` builds it. See ``docs/fpga.md``.
"""

import dataclasses
import math
import struct

from amaranth import ClockDomain, Elaboratable, Module, ResetSignal, Signal
from amaranth.hdl import Instance, ResetInserter
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from fpga.link import Link
from fpga.memory import SPRAM_WORDS, WORD_BYTES, WeightMemory
from fpga.protocol import INFO_FMT, Info
from fpga.runner import LayerRunner
from fpga.uart import UARTRx, UARTTx, baud_divisor
from hw._util import validated
from hw.skid import SkidBuffer
from model.accel import AccelConfig

__all__ = ["BoardCore", "BoardTop", "ice40_pll_params", "board_top", "check_board_params",
           "default_act_rows", "DEFAULT_BAUD", "DEFAULT_RESULT_DEPTH", "INFO_LIMITS",
           "BOARD_CONFIG", "BOARD_PLL_MHZ", "BOARD_CLOCK_MHZ"]

#: Default line rate: 1 Mbaud, exactly 12 clocks per bit at 12 MHz (0 % error) and a rate the
#: iCEBreaker's FT2232H generates exactly (3 MHz / 3).
DEFAULT_BAUD = 1_000_000

#: The engine shape built for the iCEBreaker (UP5K): 5 x 8 = 40 ternary MACs per cycle. A
#: ``tq1`` beat of 40 trits is exactly 8 bytes, one 64-bit word of the four SPRAMs, so the
#: weight memory feeds one beat per cycle with no gearbox: the board's weight bandwidth
#: (8 bytes x 5 trits per cycle) is used in full. Larger arrays cannot go faster on this board
#: (the engine streams the weights once per token), only bigger. See ``docs/fpga.md``.
BOARD_CONFIG = AccelConfig(rows=5, cols=8, act_bits=8, packing="tq1", max_k=1024, max_m=4096,
                           adder_stages=2)
#: The PLL output the board design runs from (``SB_PLL40_PAD`` on the 12 MHz oscillator:
#: DIVR 0, DIVF 63, DIVQ 4, FILTER_RANGE 1 -> VCO 768 MHz / 16 = exactly 48 MHz, 48 clocks per
#: bit at 1 Mbaud). The device is 93 % full and nextpnr's result varies with its seed by about
#: +-2 MHz around 48, so the build tries seeds until one meets the clock (docs/fpga.md,
#: "Clock and line rate").
BOARD_PLL_MHZ = 48
#: The clock frequency (MHz) of the default board build.
BOARD_CLOCK_MHZ = 48.0


def board_top(platform=None, *, config=None, pll_mhz=None, **kwargs):
    """The default board design: :class:`BoardTop` with :data:`BOARD_CONFIG` at
    :data:`BOARD_PLL_MHZ` (what ``python -m hw.build --target ice40 --top fpga`` builds).

    Parameters
    ----------
    platform : str or Platform, optional
        Accepted for symmetry with other top constructors; the platform is given to
        ``platform.build`` by the caller (any iCE40 board of ``amaranth-boards``).
    config : AccelConfig, optional
        Overrides :data:`BOARD_CONFIG`.
    pll_mhz : float, optional
        Overrides :data:`BOARD_PLL_MHZ` (``0`` runs from the board clock without a PLL).
    **kwargs
        Passed to :class:`BoardTop` (``baud``, ``weight_depth``, ...).

    Returns
    -------
    BoardTop
    """
    del platform
    pll = BOARD_PLL_MHZ if pll_mhz is None else (pll_mhz or None)
    return BoardTop(config=config or BOARD_CONFIG, pll_mhz=pll, **kwargs)


def _default_engine(config):
    from hw.engine import BitLinearEngine

    return BitLinearEngine(config=config)


#: Largest value of each integer field of the INFO reply, from its format
#: (:data:`fpga.protocol.INFO_FMT`, one code per :class:`fpga.protocol.Info` field).
INFO_LIMITS = {f.name: (1 << (8 * struct.calcsize("<" + code))) - 1
               for f, code in zip(dataclasses.fields(Info), INFO_FMT.lstrip("<>=!@"), strict=True)
               if f.type in (int, "int")}


#: Result memory entries (int32) of a board design unless given.
DEFAULT_RESULT_DEPTH = 1024


def default_act_rows(config):
    """Activation memory rows of a board design unless given: at least one token of ``max_k``
    codes, and at least 2 KiB."""
    return max(config.k_tiles(config.max_k), 2048 // config.cols, 1)


def _check_core_params(config, *, weight_depth, act_rows, result_depth, clk_hz=None):
    """The checks of :class:`BoardCore`'s constructor that :class:`BoardTop` makes early.

    ``act_rows=None`` is the default (:func:`default_act_rows`); ``clk_hz=None`` skips the
    clock (a board top knows it only from the platform). Raises ``TypeError`` for a ``config``
    that is not an :class:`AccelConfig`, ``ValueError`` for a size out of range or one that
    the INFO reply (:class:`fpga.protocol.Info`) cannot carry, naming the field and its limit.
    """
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config must be an AccelConfig, got {type(config).__name__}")
    if config.tokens_per_beat != 1:
        raise ValueError(
            f"tokens_per_beat = {config.tokens_per_beat}: the board's runner streams one "
            "token per weight pass (tokens_per_beat = 1); the engine with more tokens per beat "
            "builds as --top engine")
    act_rows = default_act_rows(config) if act_rows is None else act_rows
    for name, v in (("weight_depth", weight_depth), ("act_rows", act_rows),
                    ("result_depth", result_depth)) + (
                        (("clk_hz", clk_hz),) if clk_hz is not None else ()):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    per_byte = config.trits_per_byte
    fields = [
        ("rows", config.rows, ""), ("cols", config.cols, ""),
        ("act_bits", config.act_bits, ""),
        ("bytes_per_beat", config.bytes_per_beat,
         f" (rows * cols = {config.trits_per_beat} trits at {per_byte} per byte)"),
        ("max_k", config.max_k, ""), ("max_m", config.max_m, ""),
        ("weight_bytes", weight_depth * WORD_BYTES, f" (weight_depth {weight_depth} x "
                                                    f"{WORD_BYTES})"),
        ("act_bytes", act_rows * config.cols, f" (act_rows {act_rows} x cols {config.cols})"),
        ("result_depth", result_depth, ""),
    ] + ([("clk_hz", clk_hz, "")] if clk_hz is not None else [])
    for name, v, how in fields:
        limit = INFO_LIMITS[name]
        if v > limit:
            raise ValueError(
                f"{name} = {v}{how} exceeds {limit}, the largest value of its "
                f"{limit.bit_length()}-bit field in the board's INFO reply "
                "(fpga.protocol.INFO_FMT)")


def check_board_params(*, config, baud: int = DEFAULT_BAUD, pll_mhz: float | None = None,
                       weight_depth: int = SPRAM_WORDS, act_rows: int | None = None,
                       result_depth: int = DEFAULT_RESULT_DEPTH) -> None:
    """Raise ``TypeError`` / ``ValueError`` if :class:`BoardTop` cannot be built from these.

    The checks :class:`BoardTop`'s constructor makes, with its defaults, for callers that want
    them without creating the design (``hw.build`` runs them before anything is elaborated):
    ``config`` an :class:`AccelConfig`; ``baud`` an int >= 1; ``pll_mhz`` ``None`` or a finite
    number > 0 whose clock in Hz fits the INFO reply's ``clk_hz``; positive memory sizes; and
    every field of the INFO reply within its width (``rows``, ``cols``, ``act_bits`` and
    ``bytes_per_beat`` are u8, ``max_k``, ``max_m``, ``act_bytes`` and ``result_depth`` u16,
    ``weight_bytes`` and ``clk_hz`` u32; see :class:`fpga.protocol.Info`).
    """
    if not isinstance(baud, int) or isinstance(baud, bool) or baud < 1:
        raise ValueError(f"baud must be an int >= 1, got {baud!r}")
    if pll_mhz is not None:
        if (not isinstance(pll_mhz, (int, float)) or isinstance(pll_mhz, bool)
                or not math.isfinite(pll_mhz) or pll_mhz <= 0):
            raise ValueError(f"pll_mhz must be None or a finite number > 0, got {pll_mhz!r}")
        if round(pll_mhz * 1e6) > INFO_LIMITS["clk_hz"]:
            raise ValueError(f"pll_mhz = {pll_mhz} exceeds {INFO_LIMITS['clk_hz'] / 1e6:g}, the "
                             "largest clock the INFO reply's 32-bit clk_hz field carries")
    _check_core_params(config, weight_depth=weight_depth, act_rows=act_rows,
                       result_depth=result_depth)


class BoardCore(wiring.Component):
    """Everything on the board except pins and clocking.

    Parameters
    ----------
    config : AccelConfig
        The engine configuration.
    divisor : int
        UART clock cycles per bit (>= 4). Simulation uses 4-8; a board ``clk_hz / baud``.
    weight_depth : int
        Weight memory words of 8 bytes (16384 = the UP5K's 4 SPRAMs, 128 KiB).
    act_rows : int
        Activation memory rows of ``cols`` codes (one byte each), in EBR.
    result_depth : int
        Result memory entries (int32), in EBR.
    timeout : int
        Idle cycles after which a partial frame is rejected (``TRUNCATED``).
    clk_hz : int
        Clock frequency, reported to the host.
    memory_backend : str
        Weight memory backend: ``"auto"``, ``"spram"`` or ``"generic"`` (:class:`WeightMemory`).
    engine_factory : callable, optional
        ``engine_factory(config) -> engine`` whose signature is
        :class:`hw.engine.EngineSignature` ``(config)`` (``docs/architecture.md`` section 5);
        default ``hw.engine.BitLinearEngine``. Tests may pass a stand-in.

    Raises
    ------
    TypeError
        ``config`` is not an :class:`AccelConfig`.
    ValueError
        A size below its minimum, or a value the INFO reply cannot carry (its field and
        limit named; the fields of :func:`check_board_params` and ``clk_hz``, u32).

    Attributes
    ----------
    rx : in
        Serial input (idle high).
    tx : out
        Serial output.
    busy, error : out
        A layer is running; the engine's error flag (for LEDs).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)
    error: Out(1)

    @validated
    def __init__(self, *, config, divisor: int, weight_depth: int = SPRAM_WORDS,
                 act_rows: int | None = None, result_depth: int = DEFAULT_RESULT_DEPTH,
                 timeout: int | None = None, clk_hz: int = 12_000_000,
                 memory_backend: str = "auto", engine_factory=None):
        _check_core_params(config, weight_depth=weight_depth, act_rows=act_rows,
                           result_depth=result_depth, clk_hz=clk_hz)
        if act_rows is None:
            act_rows = default_act_rows(config)
        if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
            raise ValueError(f"divisor must be an int >= 4, got {divisor!r}")
        self._config = config
        self._divisor = divisor
        self._weight_depth = weight_depth
        self._act_rows = act_rows
        self._result_depth = result_depth
        # default: 64 bit times of silence end a frame
        self._timeout = timeout if timeout is not None else 64 * divisor
        self._clk_hz = clk_hz
        self._memory_backend = memory_backend
        self._engine_factory = engine_factory or _default_engine
        super().__init__()

    @property
    def config(self):
        return self._config

    @property
    def divisor(self):
        return self._divisor

    @property
    def weight_bytes(self):
        return self._weight_depth * WORD_BYTES

    @property
    def act_rows(self):
        return self._act_rows

    @property
    def result_depth(self):
        return self._result_depth

    @property
    def timeout(self):
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        C = cfg.cols

        m.submodules.uart_rx = rx = UARTRx(divisor=self._divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor=self._divisor)
        m.submodules.link = link = Link(
            config=cfg, weight_depth=self._weight_depth, act_rows=self._act_rows,
            result_depth=self._result_depth, timeout=self._timeout, clk_hz=self._clk_hz)
        m.submodules.runner = runner = LayerRunner(
            config=cfg, weight_depth=self._weight_depth, act_rows=self._act_rows,
            result_depth=self._result_depth)
        m.submodules.wmem = wmem = WeightMemory(depth=self._weight_depth,
                                                backend=self._memory_backend)

        engine_reset = Signal()
        engine = self._engine_factory(cfg)
        m.submodules.engine = ResetInserter({"sync": engine_reset})(engine)
        # registered: the requests come out of the link's and the runner's FSMs, and the reset
        # reaches every register of the engine (a cycle's delay is nothing next to a UART frame)
        m.d.sync += engine_reset.eq(link.engine_reset | runner.engine_reset)

        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx),
                     link.uart_overrun.eq(rx.overrun), link.uart_frame_error.eq(rx.frame_error)]
        # the link takes every received byte into a register (always ready); its FSM decides
        # valid of the reply bytes, and a skid buffer keeps that decision away from the UART
        # transmitter's own state
        wiring.connect(m, rx.data, link.rx)
        m.submodules.skid_tx = skid_tx = SkidBuffer(shape=8)
        wiring.connect(m, link.tx, skid_tx.i)
        wiring.connect(m, skid_tx.o, tx.data)

        # activation memory: C bytes per row, byte write enables, read by the runner
        # ``no_rw_check``: the link writes this memory and the runner reads it, never in the
        # same cycle (the link waits for the run), so Yosys need not emulate the read-old-data
        # behaviour of a same-address read and write (an address compare and a bypass register
        # per bit, in front of the runner's read path). Likewise for the result memory.
        m.submodules.act_mem = act_mem = Memory(shape=8 * C, depth=self._act_rows, init=[],
                                                attrs={"no_rw_check": 1})
        wiring.connect(m, link.act_mem, act_mem.write_port(granularity=8))
        wiring.connect(m, runner.act_mem, act_mem.read_port())

        # result memory: written by the runner, read by the link
        m.submodules.res_mem = res_mem = Memory(shape=32, depth=self._result_depth, init=[],
                                                attrs={"no_rw_check": 1})
        wiring.connect(m, runner.res_mem, res_mem.write_port())
        wiring.connect(m, link.res_mem, res_mem.read_port())

        # weight memory: the runner reads while it runs, the link otherwise. Only the address
        # and the enable are switched: the link writes only outside a run (it waits for the
        # run in its RUN_WAIT state), so `we`, `wmask` and `wdata` come from it directly
        with m.If(runner.busy):
            m.d.comb += [wmem.addr.eq(runner.weight_mem.addr), wmem.en.eq(runner.weight_mem.en)]
        with m.Else():
            m.d.comb += [wmem.addr.eq(link.weight_mem.addr), wmem.en.eq(link.weight_mem.en)]
        m.d.comb += [wmem.we.eq(link.weight_mem.we), wmem.wmask.eq(link.weight_mem.wmask),
                     wmem.wdata.eq(link.weight_mem.wdata)]
        m.d.comb += [runner.weight_mem.data.eq(wmem.rdata), link.weight_mem.rdata.eq(wmem.rdata)]

        # runner control
        wiring.connect(m, link.run, runner.control)
        m.d.comb += [
            link.engine_error.eq(engine.error), link.engine_busy.eq(engine.busy),
            self.busy.eq(runner.busy), self.error.eq(engine.error),
        ]

        # the engine, driven by the runner (`runner.engine` is the engine's signature flipped).
        # act and weights pass through skid buffers (registered valid, payload and ready):
        # the runner's activation feeder and weight reader sit by their memories, the engine's
        # issue and sequencer by the array, and a direct handshake would be one path from one
        # block's registers through the other's ready/valid logic and back (a transfer is seen
        # by both sides in the same cycle). With the buffers every path between the blocks
        # starts and ends at a register. They are reset with the engine, so an aborted run
        # leaves no beat behind; their cycle of latency is covered by the engine's start-up
        # (the RUN cycle count is unchanged).
        wiring.connect(m, runner.engine.cmd, engine.cmd)
        wiring.connect(m, engine.result, runner.engine.result)
        m.d.comb += runner.engine.error.eq(engine.error)
        for name in ("act", "weights"):
            skid = SkidBuffer(shape=getattr(engine, name).payload.shape())
            m.submodules[f"skid_{name}"] = ResetInserter({"sync": engine_reset})(skid)
            wiring.connect(m, getattr(runner.engine, name), skid.i)
            wiring.connect(m, skid.o, getattr(engine, name))
        return m


def ice40_pll_params(f_in_mhz: float, f_out_mhz: float) -> dict:
    """``SB_PLL40`` divider settings closest to ``f_out_mhz`` (the search ``icepll`` does).

    ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)`` with the phase detector at
    10..133 MHz and the VCO at 533..1066 MHz (iCE40 sysCLOCK PLL design guide, TN1251).
    Returns the parameters and the achieved frequency ``f_out_mhz``.
    """
    best = None
    for divr in range(16):
        f_pfd = f_in_mhz / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                f_out = f_vco / (1 << divq)
                err = abs(f_out - f_out_mhz)
                if best is None or err < best[0]:
                    best = (err, divr, divf, divq, f_pfd, f_out)
    if best is None:
        raise ValueError(f"no PLL setting for {f_in_mhz} MHz -> {f_out_mhz} MHz")
    _, divr, divf, divq, f_pfd, f_out = best
    # loop filter range by phase detector frequency (as icepll chooses it)
    filt = next(i for i, lim in enumerate((17, 26, 44, 66, 101, 133), start=1) if f_pfd < lim)
    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filt,
            "f_out_mhz": f_out}


class BoardTop(Elaboratable):
    """:class:`BoardCore` on an iCE40 board of ``amaranth-boards`` (iCEBreaker and others).

    Parameters
    ----------
    config : AccelConfig
        The engine configuration.
    baud : int
        UART line rate (default 1 Mbaud).
    pll_mhz : float, optional
        If given, an ``SB_PLL40_PAD`` on the clock pin multiplies the board clock to (about)
        this frequency and the design runs from it (held in reset until the PLL locks);
        default: the board clock itself (12 MHz on iCEBreaker).
    weight_depth, act_rows, result_depth, memory_backend, engine_factory
        Passed to :class:`BoardCore`.

    The platform must have ``uart`` 0 and a default clock; the green/red user LEDs (if
    present) show ``busy`` / ``error``. The constructor raises ``TypeError`` / ``ValueError``
    for parameters the board cannot take (:func:`check_board_params`), not ``elaborate``.
    """

    @validated
    def __init__(self, *, config, baud: int = DEFAULT_BAUD, pll_mhz: float | None = None,
                 weight_depth: int = SPRAM_WORDS, act_rows: int | None = None,
                 result_depth: int = DEFAULT_RESULT_DEPTH, memory_backend: str = "auto",
                 engine_factory=None):
        check_board_params(config=config, baud=baud, pll_mhz=pll_mhz, weight_depth=weight_depth,
                           act_rows=act_rows, result_depth=result_depth)
        self.config = config
        self.baud = baud
        self.pll_mhz = pll_mhz
        self._core_kw = dict(weight_depth=weight_depth, act_rows=act_rows,
                             result_depth=result_depth, memory_backend=memory_backend,
                             engine_factory=engine_factory)

    def clock_hz(self, platform) -> int:
        if self.pll_mhz is None:
            return int(platform.default_clk_frequency)
        p = ice40_pll_params(platform.default_clk_frequency / 1e6, self.pll_mhz)
        return int(round(p["f_out_mhz"] * 1e6))

    def elaborate(self, platform):
        clk_hz = self.clock_hz(platform)
        divisor = baud_divisor(clk_hz, self.baud)   # raises before any Module is created
        m = Module()
        if self.pll_mhz is not None:
            p = ice40_pll_params(platform.default_clk_frequency / 1e6, self.pll_mhz)
            clk_in = platform.request(platform.default_clk, dir="-")
            m.domains.sync = cd_sync = ClockDomain("sync")
            lock = Signal()
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"],
                i_PACKAGEPIN=clk_in.io,
                i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=cd_sync.clk,
                o_LOCK=lock,
            )
            # hold the design in reset until the PLL has locked
            m.d.comb += ResetSignal("sync").eq(~lock)
            # no explicit constraint: nextpnr-ice40 derives the PLL output's (clk_hz) from the
            # board clock's and the PLL dividers ("Derived frequency constraint of 30.0 MHz");
            # a named one would be lost, the clock net carries an arbitrary alias after flatten
        m.submodules.core = core = BoardCore(config=self.config, divisor=divisor,
                                             clk_hz=clk_hz, timeout=clk_hz // 10,
                                             **self._core_kw)
        uart = platform.request("uart", 0, dir="-")    # every pin of it: the ULX3S's has rts/dtr
        m.submodules.uart_rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]
        for name, sig in (("led_g", core.busy), ("led_r", core.error)):
            try:
                led = platform.request(name, 0, dir="-")
            except Exception:  # noqa: BLE001 - boards without that LED
                continue
            m.submodules[f"{name}_buf"] = buf = io.Buffer("o", led)
            m.d.sync += buf.o.eq(sig)    # registered: the pins are far from the logic
        return m
