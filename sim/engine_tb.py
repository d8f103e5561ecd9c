"""Testbench for ``hw.engine.BitLinearEngine``: drivers on ``cmd``/``act``/``weights``, a monitor
on ``result`` feeding an in-order scoreboard, golden values from ``model/``.

Used by :mod:`sim.tb.engine` (the tests) and by :class:`sim.fast.FastEngine` (the
stream path). Everything width-related is read from the DUT and checked against the config.
"""

from __future__ import annotations

import random

import numpy as np

from model.accel import AccelConfig
from model.bitlinear import ternary_matmul
from model.packing import act_stream, pack_layer_stream, result_order
from sim.golden import beats_of_layer, pack_trits
from sim.scoreboard import Scoreboard
from sim.streams import ClockedTB, StreamSink, StreamSource, port_layout

__all__ = ["EngineTB", "act_chunks", "check_layer_args", "golden_acc", "layer_stream"]


def golden_acc(xq, trits) -> np.ndarray:
    """``acc = xq @ trits.T`` from ``model.bitlinear.ternary_matmul`` (int32, ``(T, M)``),
    cross-checked against a plain int64 numpy product: both are computed and must agree.
    """
    xq = np.asarray(xq)
    trits = np.asarray(trits)
    ref = (xq.astype(np.int64) @ trits.astype(np.int64).T)
    acc = np.asarray(ternary_matmul(xq, trits))
    if acc.shape != ref.shape or not np.array_equal(acc.astype(np.int64), ref):
        raise AssertionError("model.bitlinear.ternary_matmul disagrees with xq @ trits.T")
    return acc.astype(np.int32)


def check_layer_args(config: AccelConfig, xq, trits):
    """Validate one layer call ``acc = xq @ trits.T`` for an engine of ``config``.

    Returns ``(xq, trits_int8, t, m, k)``. Raises ``ValueError`` for shapes that do not match,
    a layer that does not fit ``config``, ``T`` outside ``[1, 65535]`` (the ``cmd`` field),
    activation codes outside the ``act_bits`` range or trits outside {-1, 0, 1}.
    """
    xq, trits = np.asarray(xq), np.asarray(trits)
    if xq.ndim != 2 or trits.ndim != 2 or xq.shape[1] != trits.shape[1]:
        raise ValueError(f"need xq (T, K) and trits (M, K), got {xq.shape} and {trits.shape}")
    t, k = xq.shape
    m = trits.shape[0]
    config.check_layer(m, k)
    if not 1 <= t <= 65535:
        raise ValueError(f"tokens T={t} outside [1, 65535]")
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    if xq.min() < lo or xq.max() > hi:
        raise ValueError(f"activation codes outside [{lo}, {hi}]")
    if (not np.issubdtype(trits.dtype, np.integer) or trits.min() < -1
            or trits.max() > 1):
        raise ValueError("trits must be in {-1, 0, 1}")
    return xq, trits.astype(np.int8, copy=False), t, m, k


def act_chunks(xq, config: AccelConfig, pad_rng=None) -> np.ndarray:
    """``(tokens, K)`` codes -> the activation stream as bytes, ``(transfers, bytes)``: the
    transfers of ``model.packing.act_stream`` (one chunk per transfer for ``T = 1``, chunk
    ``kt`` of each of a group's ``T`` tokens for ``T > 1``), lane ``i`` at bits
    ``i * act_bits`` (``ArrayLayout(signed(act_bits), act_lanes)``, little-endian); ignored
    lanes are random codes if ``pad_rng`` is given, else 0."""
    c, b = config.act_lanes, config.act_bits
    full = act_stream(xq, config, pad_rng)
    u = (full & ((1 << b) - 1)).astype(np.uint8)
    if b == 8:
        return u
    if b == 4:
        if c % 2:
            u = np.concatenate([u, np.zeros((u.shape[0], 1), np.uint8)], axis=1)
        return (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8)
    raise ValueError(f"act_bits={b} not supported")


def layer_stream(trits, config: AccelConfig) -> np.ndarray:
    """One token pass of weight beats ``(beats, bytes_per_beat)`` uint8 from
    ``model.packing.pack_layer_stream``, cross-checked against :mod:`sim.golden`."""
    tiles = beats_of_layer(trits, config.rows, config.cols)
    ref = np.stack([pack_trits(t, config.packing) for t in tiles]).astype(np.uint8)
    stream = np.asarray(pack_layer_stream(np.asarray(trits, dtype=np.int8), config))
    if stream.shape != ref.shape or not np.array_equal(stream, ref):
        raise AssertionError("model.packing.pack_layer_stream disagrees with the section 4 "
                             "stream layout of docs/architecture.md")
    return stream.astype(np.uint8)


class EngineTB(ClockedTB):
    """Drive one ``BitLinearEngine`` DUT.

    Parameters
    ----------
    dut : cocotb handle
    config : AccelConfig
    seed : int
    idle_prob : float
        Random idle probability on every input stream (``cmd``, ``act``, ``weights``).
    stall_prob : float
        Random backpressure probability on ``result``.
    """

    def __init__(self, dut, config: AccelConfig, *, seed: int = 0, idle_prob: float = 0.0,
                 stall_prob: float = 0.0):
        from hw.engine import BitLinearEngine

        super().__init__(dut, seed=seed)
        self.config = config
        self.model = BitLinearEngine(config=config)
        # read the parameters back from the RTL: config and RTL must agree
        checks = {
            "act__payload": config.act_bits * config.act_lanes,
            "weights__payload": 8 * config.bytes_per_beat,
            "cmd__payload": 48,
            "result__payload": 33,
        }
        for name, width in checks.items():
            got = len(getattr(dut, name))
            assert got == width, f"{name} is {got} bits in the RTL, config says {width}"
        self.sb = Scoreboard("result")
        lay = {n: port_layout(self.model, n) for n in ("cmd", "act", "weights", "result")}
        self.cmd = StreamSource(dut, "cmd", self.clk, layout=lay["cmd"], idle_prob=idle_prob,
                                rng=random.Random(seed + 1))
        self.act = StreamSource(dut, "act", self.clk, idle_prob=idle_prob,
                                rng=random.Random(seed + 2))
        self.weights = StreamSource(dut, "weights", self.clk, idle_prob=idle_prob,
                                    rng=random.Random(seed + 3))
        self.result = StreamSink(dut, "result", self.clk, layout=lay["result"],
                                 stall_prob=stall_prob, rng=random.Random(seed + 4),
                                 callback=lambda item: self.sb.actual(item))
        self.pad_rng = np.random.default_rng(seed + 5)

    # -- helpers -------------------------------------------------------------------------------
    def set_stalls(self, idle_prob: float, stall_prob: float) -> None:
        for s in (self.cmd, self.act, self.weights):
            s.idle_prob = idle_prob
        self.result.stall_prob = stall_prob

    def act_words(self, xq) -> list[int]:
        """Activation transfers (raw payload ints), ``ceil(K/C)`` per token group; lanes past
        ``K`` carry random junk, which the engine must ignore."""
        return self.act_words_of(xq, self.config, self.pad_rng)

    @staticmethod
    def act_words_of(xq, config: AccelConfig, pad_rng=None) -> list[int]:
        """``(T, K)`` activation codes -> ``T * ceil(K/C)`` raw chunk payloads
        (:func:`act_chunks` as integers)."""
        return [int.from_bytes(row.tobytes(), "little")
                for row in act_chunks(xq, config, pad_rng)]

    @staticmethod
    def beat_words(stream: np.ndarray) -> list[int]:
        """Weight beats ``(beats, bytes)`` -> raw little-endian payload ints (byte j at bits
        ``8j..8j+7``, the ``ArrayLayout(unsigned(8), n)`` order)."""
        return [int.from_bytes(bytes(row), "little") for row in np.asarray(stream, np.uint8)]

    def queue_layer(self, xq, trits, *, weights=None, expect: bool = True) -> np.ndarray:
        """Queue one command with its activations and weight stream; return the golden acc.

        ``weights`` overrides the packed stream (one pass, ``(beats, bytes)``), to inject
        malformed beats; it is sent once per token group (per token for ``T = 1``). The
        results are expected in the order of ``model.packing.result_order``.
        """
        xq = np.asarray(xq)
        trits = np.asarray(trits)
        t, k = xq.shape
        m, k2 = trits.shape
        assert k == k2, "xq and trits disagree on K"
        acc = golden_acc(xq, trits)
        stream = layer_stream(trits, self.config) if weights is None else weights
        if expect:
            self.sb.expect_many({"acc": int(acc[i, j]), "last": int(last)}
                                for i, j, last in result_order(self.config, m, t))
        self.cmd.send_nowait([{"m": m, "k": k, "tokens": t}])
        self.act.send_nowait(self.act_words(xq))
        self.weights.send_nowait(self.beat_words(stream) * len(self.config.token_groups(t)))
        return acc

    async def run_layer(self, xq, trits, *, timeout_factor: int = 20) -> int:
        """Queue a layer, wait for its results, check them; return the measured cycles
        (``cmd`` transfer edge to final ``result`` transfer edge, as ``model.accel_cycles``)."""
        n_before = len(self.result.items)
        cmd_before = len(self.cmd.transfer_cycles)
        xq = np.asarray(xq)
        t, m = xq.shape[0], np.asarray(trits).shape[0]
        self.queue_layer(xq, trits)
        n = n_before + t * m
        groups = len(self.config.token_groups(t))
        budget = timeout_factor * (self.config.beats(m, xq.shape[1]) * groups + t * m + 50)
        ok = await self.result.wait_for(n, budget)
        assert ok, (f"timeout: {len(self.result.items) - n_before} of {t * m} results for "
                    f"M={m} K={xq.shape[1]} T={t} after {budget} cycles")
        self.sb.check_done()
        return self.result.transfer_cycles[n - 1] - self.cmd.transfer_cycles[cmd_before]

    def discard(self) -> None:
        """Forget received results and start a fresh scoreboard (after unchecked traffic)."""
        self.sb = Scoreboard("result")
        self.result.clear()

    async def abort(self, cycles: int = 2) -> None:
        """Drop everything queued, reset the DUT, start with a fresh scoreboard."""
        for s in (self.cmd, self.act, self.weights):
            s.clear()
        await self.reset(cycles)
        self.discard()

    def stop(self) -> None:
        for s in (self.cmd, self.act, self.weights, self.result):
            s._task.cancel()
