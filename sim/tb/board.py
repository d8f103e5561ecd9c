"""cocotb tests of ``fpga.top.BoardCore`` at its serial pins (run by ``sim/test_board.py``).

The host library of ``fpga/host.py`` runs unchanged in a cocotb bridge thread and talks to the
simulated board through :class:`SimSerial`, a serial-port object (``write`` / ``read`` with a
timeout, as pyserial's) whose bytes are driven bit by bit on ``rx`` and decoded from ``tx`` by
cocotb coroutines.

Parameters (``$SIM_PARAMS``)::

    {"config": AccelConfig dict, "divisor": int, "period_ns": int, "seed": int,
     "layer": [M, K, T], "model_layer": name or null, "checkpoint": path}
"""

from __future__ import annotations

import collections
import struct

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, Timer

from fpga.host import Board, BoardMatmul, check_layer
from fpga.protocol import Op, Status, encode_request
from model.accel import AccelConfig
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream
from sim.runner import sim_params


class SimSerial:
    """A serial port on the simulated board's ``rx`` / ``tx`` pins (8N1, ``divisor`` clocks
    per bit). ``read`` returns fewer bytes than asked once ``timeout_bits`` bit times pass
    without a byte, like a pyserial port with a timeout."""

    def __init__(self, dut, divisor: int, period_ns: int, timeout_bits: int = 20_000):
        self.dut = dut
        self.bit_ns = divisor * period_ns
        self.timeout_bits = timeout_bits
        self.rx_bytes = collections.deque()
        self.framing_errors = 0
        self.sent = 0
        self.received = 0
        dut.rx.value = 1
        self._monitor = cocotb.start_soon(self._monitor_tx())

    async def _monitor_tx(self):
        while True:
            await FallingEdge(self.dut.tx)
            await Timer(self.bit_ns // 2, "ns")          # middle of the start bit
            if int(self.dut.tx.value):
                self.framing_errors += 1
                continue
            byte = 0
            for i in range(8):
                await Timer(self.bit_ns, "ns")
                byte |= int(self.dut.tx.value) << i
            await Timer(self.bit_ns, "ns")
            if not int(self.dut.tx.value):
                self.framing_errors += 1
            self.rx_bytes.append(byte)

    async def _send(self, data: bytes):
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.dut.rx.value = bit
                await Timer(self.bit_ns, "ns")
        self.sent += len(data)

    async def _recv(self, n: int) -> bytes:
        waited = 0
        while len(self.rx_bytes) < n and waited < self.timeout_bits:
            await Timer(self.bit_ns * 10, "ns")
            waited += 10
        out = bytes(self.rx_bytes.popleft() for _ in range(min(n, len(self.rx_bytes))))
        self.received += len(out)
        return out

    # the blocking pyserial-like interface used by fpga.host (from a bridge thread)
    def write(self, data: bytes) -> int:
        resume(self._send)(bytes(data))
        return len(data)

    def read(self, n: int) -> bytes:
        return resume(self._recv)(n)

    def stop(self):
        self._monitor.cancel()


async def _setup(dut):
    p = sim_params()
    config = AccelConfig.from_dict(p["config"])
    period = p["period_ns"]
    cocotb.start_soon(Clock(dut.clk, period, "ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    return config, p, SimSerial(dut, p["divisor"], period)


@cocotb.test()
async def host_runs_layers(dut):
    """The host library's layer check (seeded random + all +1 / -1 / 0, extreme codes) on the
    simulated board, every accumulator compared bit-exactly with the golden product."""
    config, p, port = await _setup(dut)
    m, k, t = p["layer"]
    log = []

    class Log:
        def write(self, s):
            log.append(s)

    def host():
        board = Board(port)
        info = board.info()
        assert info.rows == config.rows and info.cols == config.cols
        check_layer(board, config, m, k, t, p["seed"], out=Log())

    await bridge(host)()
    for line in "".join(log).splitlines():
        dut._log.info(line)
    assert port.framing_errors == 0 and not port.rx_bytes
    assert int(dut.error.value) == 0
    port.stop()


@cocotb.test()
async def host_runs_model_layer(dut):
    """One BitLinear of the shipped checkpoint through the board via the ``matmul`` hook
    object, against ``model/``'s integer product; then a corrupted frame must not change it."""
    config, p, port = await _setup(dut)
    name = p.get("model_layer")
    if not name:
        port.stop()
        return
    from model import checkpoint as ckpt

    ck = ckpt.load(p["checkpoint"])
    trits = ck.ternary[name].trits
    rng = np.random.default_rng(p["seed"])
    lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
    xq = rng.integers(lo, hi + 1, (p.get("model_tokens", 1), trits.shape[1]))
    xq[0, :4] = [lo, hi, 0, -1]
    result = {}

    def host():
        board = Board(port)
        hook = BoardMatmul(board, config, verify_weights=True)
        result["acc"] = hook(name, xq, trits)
        result["cycles"] = hook.cycles[-1]
        # a frame with a bad CRC that would overwrite the stored stream: rejected, no effect
        stream = pack_layer_stream(trits, config).tobytes()
        frame = bytearray(encode_request(Op.WRITE_WEIGHTS, struct.pack("<I", 0) + bytes(64)))
        frame[-1] ^= 0xFF
        rep = board.transact(bytes(frame), Op.WRITE_WEIGHTS, check=False)
        assert rep.status == Status.BAD_CRC, rep
        assert board.read_weights(0, 64) == stream[:64]
        result["acc2"] = hook(name, xq, trits)
        st = board.status()
        result["status"] = st

    await bridge(host)()
    want = ternary_matmul(xq, trits)
    np.testing.assert_array_equal(result["acc"], want)
    np.testing.assert_array_equal(result["acc2"], want)
    st = result["status"]
    assert st.bad_frames == 1 and not st.engine_error and not st.overrun
    dut._log.info("%s %s x %s: bit-exact, %d engine cycles", name, trits.shape, xq.shape,
                  result["cycles"])
    assert port.framing_errors == 0
    port.stop()


@cocotb.test()
async def refused_runs_change_nothing(dut):
    """RUNs that do not fit the memories (``RANGE``) or come before any weights or activations
    were written since power-up (``NOT_LOADED``) are refused before anything is written, with
    the real engine:
    afterwards every weight byte and result entry reads back unchanged and the next RUN on the
    same activations is bit-exact."""
    config, p, port = await _setup(dut)
    result = {}

    def host():
        board = Board(port)
        info = board.info()
        wbytes, act_rows, depth = info.weight_bytes, info.act_bytes // config.cols, \
            info.result_depth

        def run(m, k, t, base):
            return board.request(Op.RUN, struct.pack("<HHHI", m, k, t, base), check=False)

        rng = np.random.default_rng(p["seed"])
        kt = 8
        k = kt * config.cols
        m = 8 * config.rows
        t = min(depth // m, act_rows // kt - 1)    # fits, with activation rows left over
        w = rng.integers(-1, 2, (m, k)).astype(np.int8)
        x = rng.integers(-128, 128, (t, k))
        stream = pack_layer_stream(w, config).tobytes()
        base = wbytes - len(stream)                # the layer ends at the memory's end
        want = ternary_matmul(x, w)
        statuses = [run(m, k, t, base).status]     # nothing written yet
        board.write_weights(base, stream)
        statuses.append(run(m, k, t, base).status)  # no activations yet
        board.write_act(0, x.astype(np.int8).tobytes())
        board.run(m, k, t, base)
        result["first"] = board.read_results(0, m * t).reshape(t, m)
        # results no refused run would write
        board.run(m // 2, k, t, base)
        res_before = board.read_results(0, depth)
        w_before = board.read_weights(0, wbytes)
        refusals = [
            (m, k, depth // m + 1, base),          # results beyond the result memory
            (m, k + config.cols, 1, base),         # weight bytes past the end of memory
            (1, k, act_rows // kt + 1, base),      # activation rows beyond the memory
            (1, 1, depth + 1, base),               # one result entry too many
        ]
        for args in refusals:
            statuses.append(run(*args).status)
        result["statuses"] = statuses
        result["w_same"] = board.read_weights(0, wbytes) == w_before
        result["res_same"] = np.array_equal(board.read_results(0, depth), res_before)
        board.run(m, k, t, base)
        result["again"] = board.read_results(0, m * t).reshape(t, m)
        result["want"] = want

    await bridge(host)()
    R, N = Status.RANGE, Status.NOT_LOADED
    assert result["statuses"] == [N, N, R, R, R, R], result["statuses"]
    assert result["w_same"] and result["res_same"]
    np.testing.assert_array_equal(result["first"], result["want"])
    np.testing.assert_array_equal(result["again"], result["want"])
    assert port.framing_errors == 0 and not port.rx_bytes
    port.stop()


@cocotb.test()
async def host_runs_a48_projections(dut):
    """The a4.8 model's own codes through the board: layer 0's q_proj input (INT4 absmean
    codes in [-8, 7]) and o_proj input (top-50 % sparsified INT8 codes) of a short prompt, as
    the golden a4.8 model computes them, each product bit-exact and its engine cycles equal to
    the cycle model."""
    config, p, port = await _setup(dut)
    path = p.get("a48_checkpoint")
    if not path:
        port.stop()
        return
    from model import checkpoint as ckpt
    from model.accel_cycles import cycles as model_cycles

    ck = ckpt.load(path)
    assert ck.config.quant == "a4.8"
    wanted = ("layers.0.self_attn.q_proj.weight", "layers.0.self_attn.o_proj.weight")
    seen = {}

    def capture(name, xq, trits):
        if name in wanted and name not in seen:
            seen[name] = (xq.copy(), trits)
        return ternary_matmul(xq, trits, 8)

    ck.transformer(matmul=capture).forward(np.frombuffer(b"And God", np.uint8))
    q_codes, o_codes = seen[wanted[0]][0], seen[wanted[1]][0]
    assert q_codes.min() >= -8 and q_codes.max() <= 7 and q_codes.min() < 0 < q_codes.max()
    assert (o_codes == 0).mean() >= 0.5                    # the top-K mask: half the channels
    result = {}

    def host():
        hook = BoardMatmul(Board(port), config, verify_weights=True)
        for name in wanted:
            xq, trits = seen[name]
            before = len(hook.cycles)
            acc = hook(name, xq, trits)
            # one RUN per group of tokens whose results fit the result memory
            result[name] = (acc, hook.cycles[before:], hook.tokens_per_run(*trits.shape))

    await bridge(host)()
    for name in wanted:
        xq, trits = seen[name]
        acc, runs, per_run = result[name]
        np.testing.assert_array_equal(acc, ternary_matmul(xq, trits, 8))
        groups = [min(per_run, len(xq) - t0) for t0 in range(0, len(xq), per_run)]
        assert runs == [model_cycles(config, *trits.shape, t) for t in groups], name
        dut._log.info("a4.8 %s %s x %s: bit-exact, %d RUNs, %d engine cycles", name,
                      trits.shape, xq.shape, len(runs), sum(runs))
    assert port.framing_errors == 0
    port.stop()
