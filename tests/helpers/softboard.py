"""TEST-ONLY software model of the board's protocol (a serial-port-like object), so the host
library's chunking, layer storage and model hook can be tested without a simulator. The gateware
is tested against the real protocol in ``test_fpga_link.py`` and ``sim/test_board.py``."""

import struct

import numpy as np

from fpga.protocol import MAX_PAYLOAD, Info, Op, Status, crc16, encode_reply
from model.packing import unpack_layer_stream


class SoftBoard:
    def __init__(self, config, weight_bytes=4096, act_rows=64, result_depth=128):
        self.cfg = config
        self.weights = bytearray(weight_bytes)
        self.act = bytearray(act_rows * config.cols)
        self.results = np.zeros(result_depth, np.int32)
        self.info = Info(1, config.rows, config.cols, config.act_bits, config.packing,
                         config.bytes_per_beat, config.max_k, config.max_m, weight_bytes,
                         len(self.act), result_depth, MAX_PAYLOAD, 12_000_000)
        self.out = b""
        self.runs = []

    def read(self, n):
        data, self.out = self.out[:n], self.out[n:]
        return data

    def write(self, frame):
        op, length = frame[1], struct.unpack_from("<H", frame, 2)[0]
        payload = frame[4:4 + length]
        assert struct.unpack_from("<H", frame, 4 + length)[0] == crc16(frame[1:4 + length])
        status, reply = self._execute(op, payload)
        self.out += encode_reply(op, status, reply if status == Status.OK else b"")
        return len(frame)

    def _execute(self, op, p):
        cfg = self.cfg
        if op == Op.INFO:
            return Status.OK, self.info.pack()
        if op == Op.WRITE_WEIGHTS:
            (addr,) = struct.unpack_from("<I", p)
            data = p[4:]
            if addr + len(data) > len(self.weights):
                return Status.BAD_ARG, b""
            self.weights[addr:addr + len(data)] = data
            return Status.OK, b""
        if op == Op.READ_WEIGHTS:
            addr, n = struct.unpack("<IH", p)
            return Status.OK, bytes(self.weights[addr:addr + n])
        if op == Op.WRITE_ACT:
            (row,) = struct.unpack_from("<H", p)
            off = row * cfg.cols
            if off + len(p) - 2 > len(self.act):
                return Status.BAD_ARG, b""
            self.act[off:off + len(p) - 2] = p[2:]
            return Status.OK, b""
        if op == Op.RUN:
            m, k, t, base = struct.unpack("<HHHI", p)
            kt, mt = cfg.k_tiles(k), cfg.m_tiles(m)
            if t * kt * cfg.cols > len(self.act) or t * m > len(self.results):
                return Status.RANGE, b""
            nbytes = mt * kt * cfg.bytes_per_beat
            beats = np.frombuffer(bytes(self.weights[base:base + nbytes]), np.uint8)
            w = unpack_layer_stream(beats.reshape(mt * kt, cfg.bytes_per_beat), cfg, m, k)
            x = np.frombuffer(bytes(self.act[:t * kt * cfg.cols]), np.int8).reshape(t, -1)
            acc = x[:, :k].astype(np.int64) @ w.T.astype(np.int64)
            self.results[:t * m] = acc.reshape(-1)
            self.runs.append((m, k, t, base))
            return Status.OK, struct.pack("<I", nbytes)
        if op == Op.READ_RESULTS:
            i, n = struct.unpack("<HH", p)
            return Status.OK, self.results[i:i + n].astype("<i4").tobytes()
        if op in (Op.STATUS, Op.RESET):
            return Status.OK, bytes(12) if op == Op.STATUS else b""
        return Status.UNKNOWN_OP, b""
