"""Pure-Python tests of the frame format (fpga/protocol.py)."""

import struct

import pytest

from fpga.protocol import (
    MAX_PAYLOAD,
    REP_SYNC,
    REQ_SYNC,
    BoardError,
    Info,
    Op,
    ProtocolError,
    ReplyDecoder,
    RunReply,
    Status,
    StatusInfo,
    crc16,
    decode_reply,
    encode_reply,
    encode_request,
)


def test_crc16_check_value():
    # CRC-16/CCITT-FALSE catalogue check value
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_request_layout():
    f = encode_request(Op.WRITE_WEIGHTS, b"\x01\x02\x03")
    assert f[0] == REQ_SYNC and f[1] == Op.WRITE_WEIGHTS
    assert struct.unpack_from("<H", f, 2)[0] == 3 and f[4:7] == b"\x01\x02\x03"
    assert struct.unpack_from("<H", f, 7)[0] == crc16(f[1:7]) and len(f) == 9
    with pytest.raises(ValueError):
        encode_request(256)
    with pytest.raises(ValueError):
        encode_request(1, bytes(1 << 16))
    # the board's staging buffer is the limit: one byte more is refused, the limit itself framed
    assert len(encode_request(Op.WRITE_WEIGHTS, bytes(MAX_PAYLOAD))) == MAX_PAYLOAD + 6
    with pytest.raises(ValueError, match="512-byte limit"):
        encode_request(Op.WRITE_WEIGHTS, bytes(MAX_PAYLOAD + 1))


def test_reply_roundtrip_and_errors():
    f = encode_reply(Op.READ_RESULTS, Status.OK, b"abcd")
    assert f[0] == REP_SYNC
    rep = decode_reply(f)
    assert (rep.op, rep.status, rep.payload) == (Op.READ_RESULTS, 0, b"abcd")
    with pytest.raises(ProtocolError, match="CRC"):
        decode_reply(f[:-1] + bytes([f[-1] ^ 1]))
    with pytest.raises(ProtocolError, match="length"):
        decode_reply(f + b"\x00")
    with pytest.raises(ProtocolError):
        decode_reply(b"\x00" + f[1:])


def test_incremental_decoder():
    frames = [encode_reply(1, 0, bytes(range(30))), encode_reply(7, 0, b""),
              encode_reply(5, Status.ENGINE_ERROR)]
    data = b"\xff\x00" + b"".join(frames)
    dec = ReplyDecoder()
    out = []
    for i in range(0, len(data), 3):
        out += dec.feed(data[i:i + 3])
    assert [r.op for r in out] == [1, 7, 5] and out[0].payload == bytes(range(30))
    assert dec.junk == 2 and dec.pending == 0


def test_typed_payloads():
    info = Info(1, 4, 16, 8, "tq1", 13, 1024, 4096, 131072, 2048, 512, MAX_PAYLOAD, 12_000_000)
    assert Info.unpack(info.pack()) == info and len(info.pack()) == Info.SIZE
    with pytest.raises(ProtocolError):
        Info.unpack(info.pack()[:-1])
    st = StatusInfo.unpack(struct.pack("<BBBBHHI", 0b1011, 6, 0, 0, 3, 4, 99))
    assert st.engine_error and st.busy and not st.overrun and st.framing_error
    assert (st.last_status, st.good_frames, st.bad_frames, st.last_cycles) == (6, 3, 4, 99)
    assert RunReply.unpack(struct.pack("<I", 1234)).cycles == 1234
    with pytest.raises(ProtocolError):
        RunReply.unpack(b"")


def test_board_error_message():
    e = BoardError(Op.RUN, Status.RANGE)
    assert e.status is Status.RANGE and "RANGE" in str(e)
