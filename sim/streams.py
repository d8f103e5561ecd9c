"""Reusable cocotb drivers and monitors for ``amaranth.lib.stream`` ports.

Amaranth names the Verilog ports of a stream member ``<name>__valid``, ``<name>__ready`` and
``<name>__payload``; the payload is the flat bit vector of its ``lib.data`` layout (fields at
their layout offsets, array element ``i`` at ``i * elem_width``). :class:`PayloadCodec` packs and
unpacks payloads from the layout *of the component object*, so a testbench never hard-codes a
width: build the component in the cocotb process with the same parameters and pass
``component.signature.members[name].signature.payload_shape`` (or use :func:`port_layout`).

* :class:`StreamSource` drives ``valid``/``payload`` from a queue, with seeded random idle cycles
  (valid and payload hold until the transfer, valid never depends on ready).
* :class:`StreamSink` drives ``ready`` with seeded random backpressure and records every
  transfer (payload and cycle number).
* :class:`ClockedTB` owns the clock and the synchronous reset and counts cycles.

All of them sample handshakes in the ``ReadOnly`` phase before a rising edge (a transfer happens
on that edge) and drive new values right after the edge.
"""

from __future__ import annotations

import collections
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, Timer

__all__ = [
    "ClockedTB",
    "PayloadCodec",
    "StreamSink",
    "StreamSource",
    "port_layout",
]

CLOCK_PERIOD_NS = 10
_CLOCKS: dict = {}


def port_layout(component, name: str):
    """The payload shape of the stream member ``name`` of an Amaranth ``component``."""
    member = component.signature.members[name]
    return member.signature.members["payload"].shape


class PayloadCodec:
    """Pack Python values into a flat payload integer and back, following a ``lib.data`` layout.

    Values mirror the layout: a dict for a ``StructLayout``, a sequence for an ``ArrayLayout``,
    an int for a plain shape (signed shapes unpack to negative ints). Nested layouts work.

    Parameters
    ----------
    shape : amaranth ShapeLike or lib.data.Layout
    """

    def __init__(self, shape):
        from amaranth.hdl import Shape
        from amaranth.lib import data

        self.shape = shape
        if not isinstance(shape, data.Layout):
            try:  # a data.Struct / data.Union class, or another layout-castable
                shape = data.Layout.cast(shape)
            except TypeError:
                pass
        if isinstance(shape, data.Layout):
            self.width = shape.size
            self.signed = False
            if isinstance(shape, data.ArrayLayout):
                self.kind = "array"
                self.elem = PayloadCodec(shape.elem_shape)
                self.length = shape.length
            else:
                self.kind = "struct"
                self.fields = {key: (field.offset, PayloadCodec(field.shape))
                               for key, field in shape}
        else:
            s = Shape.cast(shape)
            self.kind = "int"
            self.width = s.width
            self.signed = s.signed
        self.mask = (1 << self.width) - 1

    def pack(self, value) -> int:
        """Python value -> unsigned payload integer (range-checked)."""
        if self.kind == "int":
            v = int(value)
            lo = -(1 << (self.width - 1)) if self.signed else 0
            hi = (1 << (self.width - 1)) - 1 if self.signed else self.mask
            if not lo <= v <= hi:
                raise ValueError(f"{v} does not fit {'s' if self.signed else 'u'}{self.width}")
            return v & self.mask
        if self.kind == "array":
            if len(value) != self.length:
                raise ValueError(f"array payload needs {self.length} elements, got {len(value)}")
            w = self.elem.width
            out = 0
            for i, v in enumerate(value):
                out |= self.elem.pack(v) << (i * w)
            return out
        missing = set(self.fields) - set(value)
        extra = set(value) - set(self.fields)
        if missing or extra:
            raise ValueError(f"struct payload fields: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
        out = 0
        for key, (offset, codec) in self.fields.items():
            out |= codec.pack(value[key]) << offset
        return out

    def unpack(self, raw: int):
        """Unsigned payload integer -> Python value."""
        raw = int(raw) & self.mask
        if self.kind == "int":
            if self.signed and raw >> (self.width - 1):
                return raw - (1 << self.width)
            return raw
        if self.kind == "array":
            w = self.elem.width
            return [self.elem.unpack(raw >> (i * w)) for i in range(self.length)]
        return {key: codec.unpack(raw >> offset) for key, (offset, codec) in self.fields.items()}


def _high(signal) -> bool:
    """``True`` if a 1-bit signal is 1; X/Z (before reset, in 4-state simulators) count as 0."""
    try:
        return bool(signal.value)
    except ValueError:
        return False


def _sig(dut, name: str, part: str):
    try:
        return getattr(dut, f"{name}__{part}")
    except AttributeError:
        raise AttributeError(f"DUT has no stream port signal {name}__{part}") from None


class ClockedTB:
    """Base class of a testbench: owns the clock, the synchronous reset and the cycle count.

    Parameters
    ----------
    dut : cocotb handle
        Top level with ``clk`` and ``rst`` (Amaranth's default ``sync`` domain names).
    seed : int
        Seed of :attr:`rng`, the testbench's one random source (pass it on to drivers).
    """

    def __init__(self, dut, *, seed: int = 0, clk: str = "clk", rst: str = "rst"):
        self.dut = dut
        self.clk = getattr(dut, clk)
        self.rst = getattr(dut, rst)
        self.rng = random.Random(seed)
        self.period_ns = CLOCK_PERIOD_NS
        self._clock_task = None

    def cycle(self) -> int:
        """The current cycle number (rising edges since time 0)."""
        from cocotb.simtime import get_sim_time

        return int(get_sim_time("ns")) // self.period_ns

    async def start(self, reset_cycles: int = 2) -> None:
        """Start the clock (once) and apply reset."""
        # one clock per clock signal, shared by every testbench object of a cocotb test run
        key = self.clk._path
        if key not in _CLOCKS or _CLOCKS[key].done():
            _CLOCKS[key] = Clock(self.clk, self.period_ns, "ns").start(start_high=False)
        self._clock_task = _CLOCKS[key]
        await self.reset(reset_cycles)

    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` high for ``cycles`` rising edges; drivers should be idle (call their
        :meth:`clear`)."""
        self.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
        await Timer(1, "ps")  # past the edge: registers read back their reset values
        self.rst.value = 0

    async def cycles(self, n: int) -> None:
        for _ in range(n):
            await RisingEdge(self.clk)


class StreamSource:
    """Drive an ``In`` stream port of the DUT from a queue.

    Parameters
    ----------
    dut : cocotb handle
    name : str
        Stream member name (``act`` drives ``act__valid``/``act__payload``, reads ``act__ready``).
    clk : cocotb handle
    layout : payload shape, optional
        If given, queued items are Python values packed with :class:`PayloadCodec`; otherwise
        queued items must be raw payload integers.
    idle_prob : float
        Probability of inserting an idle cycle before each beat (seeded by ``rng``).
    rng : random.Random
    """

    def __init__(self, dut, name: str, clk, *, layout=None, idle_prob: float = 0.0,
                 rng: random.Random | None = None):
        self.name = name
        self.clk = clk
        self.valid = _sig(dut, name, "valid")
        self.ready = _sig(dut, name, "ready")
        self.payload = _sig(dut, name, "payload")
        self.codec = PayloadCodec(layout) if layout is not None else None
        if self.codec is not None and self.codec.width != len(self.payload):
            raise ValueError(f"{name}: layout is {self.codec.width} bits, the DUT port is "
                             f"{len(self.payload)} bits: model and RTL disagree")
        self.idle_prob = idle_prob
        self.rng = rng or random.Random(0)
        self.queue: collections.deque = collections.deque()
        self.sent = 0
        self.transfer_cycles: list[int] = []
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send_nowait(self, items) -> None:
        """Queue items (values if a layout was given, else raw ints)."""
        for item in items:
            self.queue.append(self.codec.pack(item) if self.codec is not None else int(item))

    async def wait_empty(self) -> None:
        """Wait until every queued item has been transferred."""
        while self.queue or self._current is not None:
            await RisingEdge(self.clk)

    def clear(self) -> None:
        """Drop queued items and deassert valid (use around a reset)."""
        self.queue.clear()
        self._current = None
        self.valid.value = 0

    _current = None

    async def _run(self) -> None:
        period = CLOCK_PERIOD_NS
        from cocotb.simtime import get_sim_time

        edge = RisingEdge(self.clk)
        ro = ReadOnly()
        fired = False
        while True:
            await edge
            if fired and self._current is not None:
                self._current = None
                self.sent += 1
                self.transfer_cycles.append(int(get_sim_time("ns")) // period)
            if self._current is None:
                if self.queue and (self.idle_prob <= 0 or self.rng.random() >= self.idle_prob):
                    self._current = self.queue.popleft()
                    self.payload.value = self._current
                    self.valid.value = 1
                else:
                    self.valid.value = 0
            await ro
            fired = self._current is not None and _high(self.ready)


class StreamSink:
    """Accept an ``Out`` stream port of the DUT with random backpressure and record transfers.

    Parameters
    ----------
    dut, name, clk : as for :class:`StreamSource`
    layout : payload shape, optional
        If given, received payloads are unpacked to Python values, else kept as raw ints.
    stall_prob : float
        Probability that ``ready`` is low in a cycle (seeded by ``rng``).
    callback : callable, optional
        Called with each received item (e.g. :meth:`sim.scoreboard.Scoreboard.actual`).
    """

    def __init__(self, dut, name: str, clk, *, layout=None, stall_prob: float = 0.0,
                 rng: random.Random | None = None, callback=None):
        self.name = name
        self.clk = clk
        self.valid = _sig(dut, name, "valid")
        self.ready = _sig(dut, name, "ready")
        self.payload = _sig(dut, name, "payload")
        self.codec = PayloadCodec(layout) if layout is not None else None
        if self.codec is not None and self.codec.width != len(self.payload):
            raise ValueError(f"{name}: layout is {self.codec.width} bits, the DUT port is "
                             f"{len(self.payload)} bits: model and RTL disagree")
        self.stall_prob = stall_prob
        self.rng = rng or random.Random(0)
        self.items: list = []
        self.transfer_cycles: list[int] = []
        self.callback = callback
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def clear(self) -> None:
        self.items.clear()
        self.transfer_cycles.clear()

    async def _run(self) -> None:
        from cocotb.simtime import get_sim_time

        period = CLOCK_PERIOD_NS
        edge = RisingEdge(self.clk)
        ro = ReadOnly()
        while True:
            await edge
            ready = self.stall_prob <= 0 or self.rng.random() >= self.stall_prob
            self.ready.value = int(ready)
            await ro
            if ready and _high(self.valid):
                raw = int(self.payload.value)
                item = self.codec.unpack(raw) if self.codec is not None else raw
                self.items.append(item)
                self.transfer_cycles.append(int(get_sim_time("ns")) // period + 1)
                if self.callback is not None:
                    self.callback(item)

    async def wait_for(self, n: int, timeout_cycles: int) -> bool:
        """Wait until ``n`` items arrived; ``False`` on timeout (the caller asserts)."""
        for _ in range(timeout_cycles):
            if len(self.items) >= n:
                return True
            await RisingEdge(self.clk)
        return len(self.items) >= n


async def settle() -> None:
    """Let a zero-time write propagate (for combinational checks)."""
    await Timer(1, "ps")

