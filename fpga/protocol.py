"""The host <-> board frame format (shared by the host library, the gateware, tests and docs).

Every multi-byte field is little-endian. The checksum is **CRC-16/CCITT-FALSE** (polynomial
0x1021, initial value 0xFFFF, no reflection, no final XOR; check value ``crc16(b"123456789") ==
0x29B1``), computed over every byte after the sync byte and sent little-endian.

Request (host -> board)::

    0xA5 | opcode u8 | length u16 | payload (length bytes) | crc16 u16

Reply (board -> host), exactly one per request (or per detected bad frame)::

    0x5A | opcode u8 | status u8 | length u16 | payload (length bytes) | crc16 u16

``status`` is :class:`Status`; an error reply carries no payload. A request whose ``length``
exceeds :data:`MAX_PAYLOAD` is answered with ``BAD_LENGTH`` once the line has been idle for the
board's timeout (the rest of the frame is discarded); a frame that stops mid-way is answered with
``TRUNCATED`` after the same timeout. A frame with a bad CRC changes nothing on the board.
Writes are staged in a buffer and committed only after the CRC checked.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from amaranth.lib import enum as hdl_enum
from amaranth.lib.crc import catalog as crc_catalog

__all__ = [
    "REQ_SYNC", "REP_SYNC", "MAX_PAYLOAD", "PROTOCOL_VERSION", "Op", "Status", "ProtocolError",
    "BoardError", "crc16", "encode_request", "encode_reply", "decode_reply", "ReplyDecoder",
    "Reply", "Info", "StatusInfo", "RunReply", "ARG_LEN", "PACKING_CODES", "LINK_CRC",
]

REQ_SYNC = 0xA5
REP_SYNC = 0x5A
#: Largest payload of one request (the board's staging buffer).
MAX_PAYLOAD = 512
PROTOCOL_VERSION = 1
PACKING_CODES = {"i2": 0, "tq1": 1}


class Op(enum.IntEnum):
    """Request opcodes."""

    INFO = 0x01           #: no payload; reply: :class:`Info`
    WRITE_WEIGHTS = 0x02  #: addr u32 (byte address) + data; reply: empty
    READ_WEIGHTS = 0x03   #: addr u32 + count u16; reply: ``count`` bytes
    WRITE_ACT = 0x04      #: row u16 + data (byte i: row + i // cols, lane i % cols); reply: -
    RUN = 0x05            #: m u16, k u16, tokens u16, wbase u32 (8-byte aligned); reply: cycles
    READ_RESULTS = 0x06   #: index u16 + count u16; reply: ``count`` int32
    STATUS = 0x07         #: no payload; reply: :class:`StatusInfo`
    RESET = 0x08          #: no payload; resets the engine and clears sticky flags; reply: empty


#: Fixed argument bytes at the start of each request payload (``None``: data may follow).
ARG_LEN = {Op.INFO: 0, Op.WRITE_WEIGHTS: 4, Op.READ_WEIGHTS: 6, Op.WRITE_ACT: 2, Op.RUN: 10,
           Op.READ_RESULTS: 4, Op.STATUS: 0, Op.RESET: 0}
#: Opcodes whose payload carries data bytes after the arguments.
DATA_OPS = (Op.WRITE_WEIGHTS, Op.WRITE_ACT)


class Status(hdl_enum.IntEnum, shape=4):
    """Reply status codes: a Python ``IntEnum`` (``Status(3)``, ``Status.OK == 0``) that is also
    an Amaranth shape (4 bits), so gateware signals that carry it are ``Signal(Status)``."""

    OK = 0
    BAD_CRC = 1         #: checksum mismatch; nothing was changed
    BAD_LENGTH = 2      #: length above MAX_PAYLOAD, or wrong for the opcode
    UNKNOWN_OP = 3      #: opcode not in :class:`Op`
    TRUNCATED = 4       #: the line went idle in the middle of a frame
    BAD_ARG = 5         #: an address/size outside the memories or a layer that does not fit
    ENGINE_ERROR = 6    #: the engine raised ``error`` (e.g. an invalid weight code)
    RANGE = 7           #: a RUN needs weights/activations/results beyond the memories
    NOT_LOADED = 8      #: a RUN reads weight or activation memory not written since power-up


class ProtocolError(Exception):
    """A malformed reply (bad sync, CRC or length) reached the host."""


class BoardError(Exception):
    """The board answered with a non-OK status."""

    def __init__(self, op: int, status: int, message: str = ""):
        self.op = op
        self.status = Status(status) if status in Status._value2member_map_ else status
        name = self.status.name if isinstance(self.status, Status) else str(status)
        extra = f": {message}" if message else ""
        super().__init__(f"board replied {name} to opcode 0x{op:02x}{extra}")


#: The frame checksum for the gateware: ``amaranth.lib.crc`` parameters of CRC-16/CCITT-FALSE
#: over bytes (``LINK_CRC.create()`` is a one-byte-per-cycle :class:`amaranth.lib.crc.Processor`);
#: :func:`crc16` is the same checksum in software.
LINK_CRC = crc_catalog.CRC16_CCITT_FALSE(data_width=8)


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF, unreflected, no final XOR)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode_request(op: int, payload: bytes = b"") -> bytes:
    """One request frame. Raises ``ValueError`` for an opcode outside a byte or a payload
    above :data:`MAX_PAYLOAD` (the board would answer ``BAD_LENGTH``)."""
    if not 0 <= op <= 0xFF:
        raise ValueError(f"opcode {op} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes above the {MAX_PAYLOAD}-byte limit")
    body = bytes([op]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([REQ_SYNC]) + body + struct.pack("<H", crc16(body))


def encode_reply(op: int, status: int, payload: bytes = b"") -> bytes:
    """One reply frame (what the board sends; used by tests and the software board model)."""
    body = bytes([op, status]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([REP_SYNC]) + body + struct.pack("<H", crc16(body))


@dataclass(frozen=True)
class Reply:
    op: int
    status: int
    payload: bytes


class ReplyDecoder:
    """Incremental reply parser: feed bytes, collect :class:`Reply` objects.

    Bytes before a sync byte are counted in ``junk`` (the board never sends any). A frame
    that fails :func:`decode_reply` raises :class:`ProtocolError` and is dropped; the replies
    decoded before it in the same call are not lost: the next ``feed`` (``feed(b"")`` will do)
    returns them first."""

    def __init__(self):
        self._buf = bytearray()
        self._ready: list[Reply] = []
        self.junk = 0

    def feed(self, data: bytes) -> list[Reply]:
        self._buf.extend(data)
        while True:
            while self._buf and self._buf[0] != REP_SYNC:
                del self._buf[0]
                self.junk += 1
            if len(self._buf) < 6:
                break
            length = struct.unpack_from("<H", self._buf, 3)[0]
            total = 1 + 4 + length + 2
            if len(self._buf) < total:
                break
            frame = bytes(self._buf[:total])
            del self._buf[:total]
            self._ready.append(decode_reply(frame))
        out, self._ready = self._ready, []
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def decode_reply(frame: bytes) -> Reply:
    """Decode one complete reply frame, checking sync, length and CRC."""
    if len(frame) < 7 or frame[0] != REP_SYNC:
        raise ProtocolError(f"not a reply frame: {frame[:8].hex()}")
    op, status, length = frame[1], frame[2], struct.unpack_from("<H", frame, 3)[0]
    if len(frame) != 7 + length:
        raise ProtocolError(f"reply length field {length} but frame has {len(frame) - 7} bytes")
    body = frame[1:5 + length]
    (crc,) = struct.unpack_from("<H", frame, 5 + length)
    if crc != crc16(body):
        raise ProtocolError(f"reply CRC 0x{crc:04x} != 0x{crc16(body):04x}")
    return Reply(op, status, bytes(frame[5:5 + length]))


# -- typed payloads ---------------------------------------------------------------------------
INFO_FMT = "<BBBBBBHHIHHHI"


@dataclass(frozen=True)
class Info:
    """The board's INFO reply: its engine configuration and memory sizes."""

    version: int
    rows: int
    cols: int
    act_bits: int
    packing: str
    bytes_per_beat: int
    max_k: int
    max_m: int
    weight_bytes: int
    act_bytes: int
    result_depth: int
    max_payload: int
    clk_hz: int

    SIZE = struct.calcsize(INFO_FMT)

    def pack(self) -> bytes:
        return struct.pack(INFO_FMT, self.version, self.rows, self.cols, self.act_bits,
                           PACKING_CODES[self.packing], self.bytes_per_beat, self.max_k,
                           self.max_m, self.weight_bytes, self.act_bytes, self.result_depth,
                           self.max_payload, self.clk_hz)

    @classmethod
    def unpack(cls, data: bytes) -> Info:
        if len(data) != cls.SIZE:
            raise ProtocolError(f"INFO payload of {len(data)} bytes, want {cls.SIZE}")
        f = list(struct.unpack(INFO_FMT, data))
        names = {v: k for k, v in PACKING_CODES.items()}
        if f[4] not in names:
            raise ProtocolError(f"unknown packing code {f[4]}")
        f[4] = names[f[4]]
        return cls(*f)


STATUS_FMT = "<BBBBHHI"


@dataclass(frozen=True)
class StatusInfo:
    """The board's STATUS reply.

    ``flags``: bit 0 engine error seen (sticky), bit 1 engine busy, bit 2 UART overrun (sticky),
    bit 3 UART framing error (sticky). ``last_status`` is the status of the last RUN,
    ``bad_frames`` counts rejected frames, ``good_frames`` accepted ones (both wrap at 2**16),
    ``last_cycles`` the engine cycles of the last RUN (``cmd`` to final result).
    """

    flags: int
    last_status: int
    reserved0: int
    reserved1: int
    good_frames: int
    bad_frames: int
    last_cycles: int

    SIZE = struct.calcsize(STATUS_FMT)

    @property
    def engine_error(self) -> bool:
        return bool(self.flags & 1)

    @property
    def busy(self) -> bool:
        return bool(self.flags & 2)

    @property
    def overrun(self) -> bool:
        return bool(self.flags & 4)

    @property
    def framing_error(self) -> bool:
        return bool(self.flags & 8)

    @classmethod
    def unpack(cls, data: bytes) -> StatusInfo:
        if len(data) != cls.SIZE:
            raise ProtocolError(f"STATUS payload of {len(data)} bytes, want {cls.SIZE}")
        return cls(*struct.unpack(STATUS_FMT, data))


@dataclass(frozen=True)
class RunReply:
    """The RUN reply payload: engine cycles from ``cmd`` to the final result."""

    cycles: int

    SIZE = 4

    @classmethod
    def unpack(cls, data: bytes) -> RunReply:
        if len(data) != cls.SIZE:
            raise ProtocolError(f"RUN payload of {len(data)} bytes, want {cls.SIZE}")
        return cls(struct.unpack("<I", data)[0])
