"""Board memories: the weight store (UP5K SPRAM or a generic fallback) and its beat reader.

The weight store is 64 bits wide: on an iCE40 UP5K it is the four ``SB_SPRAM256KA`` 16K x 16
single-port RAMs side by side (16384 words x 8 bytes = 128 KiB), elsewhere (simulation, other
devices) a ``lib.memory.Memory`` of the same shape. Byte ``a`` of the weight address space is
byte ``a % 8`` (bits ``8*(a%8)+7 .. 8*(a%8)``) of word ``a // 8``.

A layer's weight stream (``docs/architecture.md`` section 4: ``beats x bytes_per_beat`` bytes,
``model.packing.pack_layer_stream``) is stored contiguously from an 8-byte aligned base address.
:class:`WeightReader` reads it back one 8-byte word per cycle. A beat of exactly one word (40
``tq1`` trits, the board shape 5 x 8) goes straight through a three-word queue, one beat per
cycle; other beat sizes are re-cut by a byte gearbox, so the engine gets ``8 / bytes_per_beat``
beats per cycle at most (e.g. 0.615 for a 13-byte 4 x 16 ``tq1`` beat): the weight bandwidth
bound of this board.
"""

from amaranth import Cat, ClockSignal, Module, Mux, Shape, Signal, unsigned
from amaranth.hdl import Instance
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from hw._util import ParamSignature, check_int, validated

__all__ = ["DepthSignature", "WeightMemory", "WeightPortSignature", "WeightWriteSignature",
           "WeightReader", "addr_width", "select_backend", "WORD_BYTES", "SPRAM_WORDS"]

#: Bytes per weight-memory word (4 SPRAMs x 16 bits).
WORD_BYTES = 8
#: Words of the four UP5K SPRAMs used side by side.
SPRAM_WORDS = 16384


def addr_width(depth: int) -> int:
    """Address bits of a memory of ``depth`` entries (the width of ``range(depth)``)."""
    return Shape.cast(range(depth)).width


class DepthSignature(ParamSignature):
    """A signature with one parameter, the ``depth`` (words) of the memory it reaches (the
    weight ports here, the runner's control)."""

    @property
    def depth(self):
        return self.param


class WeightPortSignature(DepthSignature):
    """The weight store's single port, seen from the memory (as ``lib.memory`` port signatures
    are): ``addr``, ``en``, ``we``, ``wmask``, ``wdata`` in, ``rdata`` out. A block that reads
    and writes the store has a member ``In(WeightPortSignature(depth))``.

    Parameters
    ----------
    depth : int
        Words of the store.
    """

    def __init__(self, depth: int):
        super().__init__(depth, {
            "addr": In(range(depth)),
            "en": In(1),
            "we": In(1),
            "wmask": In(WORD_BYTES),
            "wdata": In(8 * WORD_BYTES),
            "rdata": Out(8 * WORD_BYTES),
        })


class WeightWriteSignature(DepthSignature):
    """Byte writes into the weight store, seen from the writer: ``addr`` (word), ``en``,
    ``wmask`` (one bit per byte of the word), ``wdata`` out (the link's executor; the store's
    write enable is ``en``).

    Parameters
    ----------
    depth : int
        Words of the store.
    """

    def __init__(self, depth: int):
        super().__init__(depth, {
            "addr": Out(range(depth)),
            "en": Out(1),
            "wmask": Out(WORD_BYTES),
            "wdata": Out(8 * WORD_BYTES),
        })


def select_backend(backend: str, depth: int, platform) -> str:
    """The weight memory backend ``"auto"`` resolves to: ``"spram"`` on an iCE40 UP device
    when ``depth`` fits the four SPRAMs, else ``"generic"`` (also in simulation)."""
    if backend != "auto":
        return backend
    device = getattr(platform, "device", "") or ""
    if device.startswith("iCE40UP") and depth <= SPRAM_WORDS:
        return "spram"
    return "generic"


class WeightMemory(wiring.Component):
    """Single-port 64-bit weight store with byte write enables and one cycle read latency.

    Parameters
    ----------
    depth : int
        Words (of 8 bytes). The SPRAM backend requires ``depth <= 16384``.
    backend : str
        ``"spram"``: four ``SB_SPRAM256KA`` instances (iCE40 UP5K only); ``"generic"``: a
        ``lib.memory.Memory`` (simulation, other devices); ``"auto"``: SPRAM when the platform
        is an iCE40 UP device, generic otherwise (always generic in simulation).

    Attributes
    ----------
    addr, en, we, wmask, wdata : in
        Word address; access enable; write (else read); per-byte write enables; write data.
    rdata : out
        Read data of the word addressed on the previous enabled read cycle.

    The component's signature is :class:`WeightPortSignature` ``(depth)``.
    """

    @validated
    def __init__(self, *, depth: int = SPRAM_WORDS, backend: str = "auto"):
        check_int("depth", depth, 1)
        if backend not in ("auto", "spram", "generic"):
            raise ValueError(f"backend must be 'auto', 'spram' or 'generic', got {backend!r}")
        if backend == "spram" and depth > SPRAM_WORDS:
            raise ValueError(f"the SPRAM backend holds at most {SPRAM_WORDS} words")
        self._depth = depth
        self._backend = backend
        super().__init__(WeightPortSignature(depth))

    @property
    def depth(self):
        return self._depth

    @property
    def size(self):
        """Capacity in bytes."""
        return self._depth * WORD_BYTES

    def resolved_backend(self, platform) -> str:
        return select_backend(self._backend, self._depth, platform)

    def elaborate(self, platform):
        m = Module()
        if self.resolved_backend(platform) == "spram":
            for i in range(4):
                lo = 16 * i
                m.submodules[f"spram{i}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=self.addr,
                    i_DATAIN=self.wdata[lo:lo + 16],
                    # one MASKWREN bit per nibble: two per byte enable
                    i_MASKWREN=Cat(self.wmask[2 * i], self.wmask[2 * i],
                                   self.wmask[2 * i + 1], self.wmask[2 * i + 1]),
                    i_WREN=self.we,
                    i_CHIPSELECT=self.en,
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=0,
                    i_SLEEP=0,
                    i_POWEROFF=1,
                    o_DATAOUT=self.rdata[lo:lo + 16],
                )
        else:
            m.submodules.mem = mem = Memory(shape=unsigned(8 * WORD_BYTES), depth=self._depth,
                                            init=[])
            wr = mem.write_port(granularity=8)
            rd = mem.read_port()
            m.d.comb += [
                wr.addr.eq(self.addr), wr.data.eq(self.wdata),
                wr.en.eq(self.wmask & (self.en & self.we).replicate(WORD_BYTES)),
                rd.addr.eq(self.addr), rd.en.eq(self.en & ~self.we),
                self.rdata.eq(rd.data),
            ]
        return m


class WeightReader(wiring.Component):
    """Streams a stored layer as weight beats, ``tokens`` passes over the same bytes.

    After ``start`` (with ``base`` word address, layer ``m x k`` and ``tokens``), each pass
    reads words from ``base`` on and cuts them into ``bytes_per_beat``-byte beats (one word per
    beat: a three-word queue; otherwise a byte gearbox); a pass ends after
    ``ceil(m/R) * ceil(k/C)`` beats (counted with nested row/column counters, no multiplier)
    and the next pass restarts at ``base``. With one-word beats the counters follow the memory
    reads, which are requested from registered state only (never from the sink's ``ready``):
    the read after a pass's last word is at ``base``, and only the queue sees ``ready``. With a
    gearbox the counters follow the beats handed out and a pass end flushes the words read
    ahead. A pass that would need a word beyond the memory raises ``range_error`` and stops
    (after the beats before it have been handed out).

    Parameters
    ----------
    config : AccelConfig
        Gives ``rows``, ``cols`` and ``bytes_per_beat``.
    depth : int
        Words of the weight memory.

    Attributes
    ----------
    start : in
        One-cycle pulse; ``base``, ``m``, ``k``, ``tokens`` are sampled then. The layer must
        fit the engine (``1 <= m <= max_m``, ``1 <= k <= max_k``: the link's RUN check), the
        counters are as wide as that.
    stop : in
        Abandons the current read (``busy`` falls on the next cycle).
    busy : out
        A read is in progress (words remain to be read, are in flight or are queued).
    range_error : out
        Sticky until the next ``start``: the layer runs past the end of the memory.
    mem : In(ReadPort.Signature(addr_width=addr_width(depth), shape=64))
        Reads of the :class:`WeightMemory` (``data`` is the word of the previous enabled
        cycle).
    beats : stream out
        ``ArrayLayout(unsigned(8), bytes_per_beat)`` weight beats.
    """

    def __init__(self, *, config, depth: int):
        self._config = config
        self._depth = depth
        self._beat = config.bytes_per_beat
        # gearbox buffer bytes; one-word beats use a three-word queue instead
        self._cap = 3 * WORD_BYTES if self._beat == WORD_BYTES else self._beat + 2 * WORD_BYTES - 1
        super().__init__({
            "start": In(1),
            "stop": In(1),
            "base": In(range(depth)),
            "m": In(16),
            "k": In(16),
            "tokens": In(16),
            "busy": Out(1),
            "range_error": Out(1),
            "mem": In(ReadPort.Signature(addr_width=addr_width(depth),
                                         shape=unsigned(8 * WORD_BYTES))),
            "beats": Out(stream.Signature(data.ArrayLayout(unsigned(8), self._beat))),
        })

    @property
    def buffer_bytes(self):
        """Buffer capacity in bytes (``bytes_per_beat + 15``; 24 for one-word beats)."""
        return self._cap

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        B, W, CAP = self._beat, WORD_BYTES, self._cap

        # the layer's counters and flags are all loaded by `start` and only used while `busy`:
        # they need no reset (a reset would reach every enable that updates them)
        rl = {"reset_less": True}
        addr = Signal(range(self._depth + 1), **rl)
        base = Signal(range(self._depth), **rl)
        # as wide as the layer sizes the board admits (m <= max_m, k <= max_k)
        m_lim = Signal(range(cfg.max_m + 1), **rl)
        k_lim = Signal(range(cfg.max_k + 1), **rl)
        passes_left = Signal(16, **rl)
        # rows / columns of the layer from the current beat's tile on
        row_rem = Signal(range(cfg.max_m + 1), **rl)
        col_rem = Signal(range(cfg.max_k + 1), **rl)
        m_single = Signal(**rl)  # m <= rows
        k_single = Signal(**rl)  # k <= cols
        m_le2 = Signal(**rl)  # m <= 2 * rows
        k_le2 = Signal(**rl)  # k <= 2 * cols
        row_le2 = Signal(**rl)  # row_rem <= 2 * rows: the next row tile is the last
        col_le2 = Signal(**rl)  # col_rem <= 2 * cols: the next beat ends its tile row
        addr_end = Signal(**rl)  # addr == depth (registered with addr, no compare on the way)
        pending = Signal()
        flush = Signal()   # drop the buffered words (end of a pass, stop, start)
        fire = self.beats.valid & self.beats.ready
        # One word per beat: the layer counters follow the memory *reads* (each word read is
        # the next beat), so they advance with `issue` (registers only) and a pass ends by
        # reading `base` next; the queue alone sees the sink's `ready`. `active`: reads remain;
        # `busy` also covers the words in flight and queued. Otherwise (a gearbox) the
        # counters follow the beats handed out, and a pass end drops the words read ahead.
        by_read = B == W
        active = Signal() if by_read else self.busy

        if by_read:
            # one word per beat: no gearbox, a three-word queue (q[0] drives the stream). The
            # read request depends on registers only (not on the sink's ``ready``), so a read
            # is issued when the queue has room for it and the one in flight: three words
            # keep one beat per cycle going.
            q = [Signal(8 * W, name=f"q{i}", **rl) for i in range(3)]
            count = Signal(range(4))     # words held
            # count != 0, registered with it: the stream's `valid` (the queue only ever holds
            # words of the layer; `stop` and `start` flush it)
            count_nz = Signal()
            held = Signal(range(4))      # words held after this cycle's transfer
            m.d.comb += [self.beats.payload.eq(q[0]),
                         self.beats.valid.eq(count_nz),
                         held.eq(count - fire)]
            issue = Signal()
            # room for one more word after those held and in flight, registered: the next
            # cycle's count and in-flight read, computed now
            room = Signal(init=1)
            m.d.comb += [issue.eq(active & room & ~addr_end),
                         self.busy.eq(active | pending | count_nz)]
            m.d.sync += room.eq(Mux(flush, 0, held + pending) + (issue & ~self.stop) <= 2)
            with m.If(fire):
                m.d.sync += [q[0].eq(q[1]), q[1].eq(q[2])]
            with m.If(pending):
                with m.Switch(held):
                    for i in range(3):
                        with m.Case(i):
                            m.d.sync += q[i].eq(self.mem.data)
            m.d.sync += [count.eq(held + pending),
                         count_nz.eq(pending | count[1] | (count[0] & ~fire))]
            starved = ~count_nz
            with m.If(flush):
                m.d.sync += [count.eq(0), count_nz.eq(0)]
        else:
            buf = Signal(8 * CAP)
            level = Signal(range(CAP + 1))
            m.d.comb += [self.beats.payload.eq(buf[:8 * B]),
                         self.beats.valid.eq(self.busy & (level >= B))]
            level1 = Signal.like(level)
            buf1 = Signal.like(buf)
            with m.If(fire):
                m.d.comb += [level1.eq(level - B), buf1.eq(buf >> (8 * B))]
            with m.Else():
                m.d.comb += [level1.eq(level), buf1.eq(buf)]
            level2 = Signal.like(level)
            buf2 = Signal.like(buf)
            with m.If(pending):
                m.d.comb += [level2.eq(level1 + W),
                             buf2.eq(buf1 | (self.mem.data << (level1 << 3))[:8 * CAP])]
            with m.Else():
                m.d.comb += [level2.eq(level1), buf2.eq(buf1)]
            issue = Signal()
            m.d.comb += issue.eq(self.busy & (level2 + W <= CAP) & ~addr_end)
            m.d.sync += [buf.eq(buf2), level.eq(level2)]
            starved = level < B
            with m.If(flush):
                m.d.sync += [buf.eq(0), level.eq(0)]

        m.d.comb += [self.mem.en.eq(issue), self.mem.addr.eq(addr)]
        m.d.sync += pending.eq(issue)
        with m.If(issue):
            m.d.sync += [addr.eq(addr + 1), addr_end.eq(addr == self._depth - 1)]

        with m.If(active & addr_end & ~pending & starved):
            m.d.sync += [self.range_error.eq(1), active.eq(0)]

        # "this beat ends its tile row / the pass" flags are registered, so the sink's
        # ``ready`` only gates register enables (no adder between it and the counters); the
        # tile counters count down, and each flag is set from the one "a tile further" (a
        # compare of a register with a constant, in parallel with the counter's subtraction)
        R, C = cfg.rows, cfg.cols
        col_last = Signal(**rl)  # col_rem <= C
        row_last = Signal(**rl)  # row_rem <= R
        last_beat = Signal(**rl)  # col_last & row_last, as its own register
        final_pass = Signal(**rl)  # passes_left == 1, as its own register
        with m.If(issue if by_read else fire):
            with m.If(last_beat):
                # last beat of this pass: restart at base (and without a gearbox, drop what
                # was read ahead)
                if not by_read:
                    m.d.comb += flush.eq(1)
                    m.d.sync += pending.eq(0)
                m.d.sync += [col_rem.eq(k_lim), col_last.eq(k_single), col_le2.eq(k_le2),
                             row_rem.eq(m_lim), row_last.eq(m_single), row_le2.eq(m_le2),
                             last_beat.eq(k_single & m_single),
                             addr.eq(base), addr_end.eq(base >= self._depth),
                             passes_left.eq(passes_left - 1), final_pass.eq(passes_left == 2)]
                with m.If(final_pass):
                    m.d.sync += active.eq(0)
            with m.Elif(col_last):
                m.d.sync += [col_rem.eq(k_lim), col_last.eq(k_single), col_le2.eq(k_le2),
                             row_rem.eq(row_rem - R), row_last.eq(row_le2),
                             row_le2.eq(row_rem <= 3 * R),
                             last_beat.eq(k_single & row_le2)]
            with m.Else():
                m.d.sync += [col_rem.eq(col_rem - C), col_last.eq(col_le2),
                             col_le2.eq(col_rem <= 3 * C),
                             last_beat.eq(col_le2 & row_last)]

        with m.If(self.stop):
            m.d.comb += flush.eq(1)
            m.d.sync += [active.eq(0), pending.eq(0)]
        with m.If(self.start):
            m.d.comb += flush.eq(1)
            m1, k1 = self.m <= R, self.k <= C            # one tile row / one column tile
            m2, k2 = self.m <= 2 * R, self.k <= 2 * C
            m.d.sync += [
                base.eq(self.base), addr.eq(self.base), addr_end.eq(self.base >= self._depth),
                m_lim.eq(self.m), k_lim.eq(self.k), passes_left.eq(self.tokens),
                row_rem.eq(self.m), col_rem.eq(self.k),
                m_single.eq(m1), k_single.eq(k1), m_le2.eq(m2), k_le2.eq(k2),
                row_last.eq(m1), col_last.eq(k1), row_le2.eq(m2), col_le2.eq(k2),
                last_beat.eq(k1 & m1),
                final_pass.eq(self.tokens == 1),
                pending.eq(0), self.range_error.eq(0),
                active.eq((self.tokens != 0) & (self.m != 0) & (self.k != 0)),
            ]
        return m
