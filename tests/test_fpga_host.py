"""Host library without a board: stream packing, reply checking, argument validation, PLL."""

import struct

import numpy as np
import pytest

from fpga.host import Board, BoardMatmul, golden_acc, layer_stream, main
from fpga.protocol import (
    BoardError,
    Info,
    Op,
    ProtocolError,
    Status,
    encode_reply,
    encode_request,
)
from fpga.top import ice40_pll_params
from model.accel import AccelConfig


class ScriptedPort:
    """Answers each write with the next canned reply bytes (records what was written)."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.written = []
        self.buf = b""

    def write(self, data):
        self.written.append(bytes(data))
        if self.replies:
            self.buf += self.replies.pop(0)
        return len(data)

    def read(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


CFG = AccelConfig(rows=2, cols=4, max_k=32, max_m=16)
INFO = Info(1, 2, 4, 8, "tq1", 2, 32, 16, 512, 64, 48, 512, 12_000_000)


@pytest.mark.parametrize("cfg", [AccelConfig(), CFG, AccelConfig(rows=3, cols=7, packing="i2")])
def test_layer_stream_matches_reference(cfg):
    from sim.run_model import layer_stream as ref_stream

    rng = np.random.default_rng(0)
    for m, k in ((1, 1), (5, 9), (min(17, cfg.max_m), min(33, cfg.max_k))):
        w = rng.integers(-1, 2, (m, k)).astype(np.int8)
        got = layer_stream(w, cfg)
        assert got.shape == (cfg.beats(m, k), cfg.bytes_per_beat)
        np.testing.assert_array_equal(got, ref_stream(w, cfg))
        try:
            from model.packing import pack_layer_stream
        except ImportError:
            continue
        np.testing.assert_array_equal(got, pack_layer_stream(w, cfg))


def test_layer_stream_rejects_non_trits():
    with pytest.raises(ValueError):
        layer_stream(np.full((2, 2), 2), CFG)


def test_board_checks_replies():
    board = Board(ScriptedPort([encode_reply(Op.INFO, 0, INFO.pack())]))
    assert board.info() == INFO
    assert board.port.written == [encode_request(Op.INFO)]
    # a status error
    board = Board(ScriptedPort([encode_reply(Op.RUN, Status.RANGE)]))
    with pytest.raises(BoardError, match="RANGE"):
        board.run(1, 1, 1, 0)
    # a reply to another opcode
    board = Board(ScriptedPort([encode_reply(Op.STATUS, 0, bytes(12))]))
    with pytest.raises(ProtocolError, match="opcode"):
        board.reset()
    # corrupted reply
    rep = bytearray(encode_reply(Op.RESET, 0))
    rep[-1] ^= 1
    with pytest.raises(ProtocolError, match="CRC"):
        Board(ScriptedPort([bytes(rep)])).reset()
    # silence
    with pytest.raises(TimeoutError):
        Board(ScriptedPort([])).reset()
    # junk instead of a reply
    with pytest.raises(ProtocolError):
        Board(ScriptedPort([b"\x00" * 8])).reset()


def test_write_chunking():
    port = ScriptedPort([encode_reply(Op.WRITE_WEIGHTS, 0)] * 3)
    Board(port).write_weights(100, bytes(range(256)) * 4)
    addrs = [struct.unpack_from("<I", f, 4)[0] for f in port.written]
    sizes = [struct.unpack_from("<H", f, 2)[0] - 4 for f in port.written]
    assert addrs == [100, 608, 1116] and sizes == [508, 508, 8]


def test_matmul_hook_validates_inputs():
    port = ScriptedPort([encode_reply(Op.INFO, 0, INFO.pack())])
    hook = BoardMatmul(Board(port), CFG)
    w = np.ones((3, 4), np.int8)
    with pytest.raises(ValueError, match="shapes"):
        hook("a", np.zeros((1, 5)), w)
    with pytest.raises(ValueError, match="outside"):
        hook("a", np.full((1, 4), 128), w)
    with pytest.raises(ValueError, match="trits"):
        hook("a", np.zeros((1, 4)), w * 2)
    with pytest.raises(ValueError, match="K=33"):
        hook("a", np.zeros((1, 33)), np.ones((3, 33), np.int8))
    other = AccelConfig(rows=4, cols=4, max_k=32, max_m=16)
    with pytest.raises(ValueError, match="differs"):
        BoardMatmul(Board(ScriptedPort([encode_reply(Op.INFO, 0, INFO.pack())])), other)


def test_cli_reports_errors(capsys):
    port = ScriptedPort([encode_reply(Op.STATUS, Status.BAD_CRC)])
    assert main(["status"], port=port) == 1
    assert "BAD_CRC" in capsys.readouterr().err
    port = ScriptedPort([encode_reply(Op.INFO, 0, INFO.pack())])
    assert main(["info"], port=port) == 0
    assert "rows: 2" in capsys.readouterr().out


def test_pll_params_match_icepll():
    # values printed by `icepll -i 12 -o 48` and `icepll -i 12 -o 30`
    assert ice40_pll_params(12, 48) == {"DIVR": 0, "DIVF": 63, "DIVQ": 4, "FILTER_RANGE": 1,
                                        "f_out_mhz": 48.0}
    p = ice40_pll_params(12, 30)
    assert (p["DIVR"], p["DIVF"], p["DIVQ"], p["FILTER_RANGE"]) == (0, 79, 5, 1)
    with pytest.raises(ValueError):
        ice40_pll_params(1, 48)


def test_matmul_hook_splits_tokens_and_reuses_memory():
    from fpga_softboard import SoftBoard

    cfg = AccelConfig(rows=2, cols=4, max_k=64, max_m=64)
    soft = SoftBoard(cfg, weight_bytes=512, act_rows=32, result_depth=64)
    hook = BoardMatmul(Board(soft), cfg, verify_weights=True)
    rng = np.random.default_rng(4)
    layers = {f"l{i}": rng.integers(-1, 2, (16, 40)).astype(np.int8) for i in range(3)}
    for _ in range(2):
        for name, w in layers.items():
            # 5 tokens: the activation memory holds 3 (10 rows each), results 4 (16 each)
            x = rng.integers(-128, 128, (5, 40))
            np.testing.assert_array_equal(hook(name, x, w), golden_acc(x, w))
    # 160-byte streams in 512 bytes: all three stay resident, each loaded once
    assert [r[3] for r in soft.runs] == [0, 0, 160, 160, 320, 320] * 2
    assert [r[2] for r in soft.runs] == [3, 2] * 6
    # a changed layer under the same name is stored again (memory full: from address 0)
    w2 = -layers["l0"]
    x = rng.integers(-128, 128, (1, 40))
    np.testing.assert_array_equal(hook("l0", x, w2), golden_acc(x, w2))
    assert soft.runs[-1][3] == 0
    # a layer bigger than the weight memory is refused
    with pytest.raises(ValueError, match="exceeds"):
        hook("big", rng.integers(-128, 128, (1, 64)), np.ones((40, 64), np.int8))


def test_run_model_on_soft_board(capsys):
    pytest.importorskip("model.transformer")
    from fpga_softboard import SoftBoard

    from fpga.host import run_model

    cfg = AccelConfig()
    soft = SoftBoard(cfg, weight_bytes=131072, act_rows=128, result_depth=1024)
    res = run_model(Board(soft), cfg, "model/data/bitnet_kjv.npz", "And God", 2)
    assert res["calls"] > 21 and len(res["tokens"]) == 2
    assert "all equal to the golden model" in capsys.readouterr().out
