"""Host library without a board: stream packing, reply checking, argument validation, PLL."""

import os
import struct
import sys

import numpy as np
import pytest

from fpga.host import Board, BoardMatmul, main
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
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream


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
    """The stream the host writes is the one the engine reads (the test reference)."""
    from sim import golden

    rng = np.random.default_rng(0)
    for m, k in ((1, 1), (5, 9), (min(17, cfg.max_m), min(33, cfg.max_k))):
        w = rng.integers(-1, 2, (m, k)).astype(np.int8)
        got = pack_layer_stream(w, cfg)
        assert got.shape == (cfg.beats(m, k), cfg.bytes_per_beat)
        np.testing.assert_array_equal(got, golden.layer_stream(w, cfg))


def test_layer_stream_rejects_non_trits():
    with pytest.raises(ValueError):
        pack_layer_stream(np.full((2, 2), 2), CFG)


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
    from tests.helpers.softboard import SoftBoard

    cfg = AccelConfig(rows=2, cols=4, max_k=64, max_m=64)
    soft = SoftBoard(cfg, weight_bytes=512, act_rows=32, result_depth=64)
    hook = BoardMatmul(Board(soft), cfg, verify_weights=True)
    rng = np.random.default_rng(4)
    layers = {f"l{i}": rng.integers(-1, 2, (16, 40)).astype(np.int8) for i in range(3)}
    for _ in range(2):
        for name, w in layers.items():
            # 5 tokens: the activation memory holds 3 (10 rows each), results 4 (16 each)
            x = rng.integers(-128, 128, (5, 40))
            np.testing.assert_array_equal(hook(name, x, w), ternary_matmul(x, w))
    # 160-byte streams in 512 bytes: all three stay resident, each loaded once
    assert [r[3] for r in soft.runs] == [0, 0, 160, 160, 320, 320] * 2
    assert [r[2] for r in soft.runs] == [3, 2] * 6
    # a changed layer under the same name is stored again (memory full: from address 0)
    w2 = -layers["l0"]
    x = rng.integers(-128, 128, (1, 40))
    np.testing.assert_array_equal(hook("l0", x, w2), ternary_matmul(x, w2))
    assert soft.runs[-1][3] == 0
    # a layer bigger than the weight memory is refused
    with pytest.raises(ValueError, match="exceeds"):
        hook("big", rng.integers(-128, 128, (1, 64)), np.ones((40, 64), np.int8))


def test_run_model_on_soft_board(capsys):
    from fpga.host import run_model
    from tests.helpers.softboard import SoftBoard

    cfg = AccelConfig()
    soft = SoftBoard(cfg, weight_bytes=131072, act_rows=128, result_depth=1024)
    res = run_model(Board(soft), cfg, "model/data/bitnet_kjv.npz", "And God", 2)
    assert res["calls"] > 21 and len(res["tokens"]) == 2
    assert "all equal to the golden model" in capsys.readouterr().out


# -- bad input: project exceptions from the library, one `error:` line from the CLI ------------
def test_read_replies_must_carry_what_was_asked():
    # READ_WEIGHTS: 2 of 8 bytes, 10 of 8 bytes, and a short second chunk of a 600-byte read
    for payload in (bytes(2), bytes(10)):
        board = Board(ScriptedPort([encode_reply(Op.READ_WEIGHTS, 0, payload)]))
        with pytest.raises(ProtocolError, match=f"carries {len(payload)} bytes, asked for 8"):
            board.read_weights(0, 8)
    board = Board(ScriptedPort([encode_reply(Op.READ_WEIGHTS, 0, bytes(512)),
                                encode_reply(Op.READ_WEIGHTS, 0, bytes(80))]))
    with pytest.raises(ProtocolError, match="carries 80 bytes, asked for 88"):
        board.read_weights(0, 600)
    # READ_RESULTS: one of two accumulators, and a payload that is no whole number of them
    for payload in (bytes(4), bytes(5)):
        board = Board(ScriptedPort([encode_reply(Op.READ_RESULTS, 0, payload)]))
        with pytest.raises(ProtocolError, match=f"carries {len(payload)} bytes, asked for 8"):
            board.read_results(0, 2)
    # exactly what was asked is returned
    board = Board(ScriptedPort([encode_reply(Op.READ_RESULTS, 0, struct.pack("<ii", -3, 7))]))
    np.testing.assert_array_equal(board.read_results(0, 2), [-3, 7])


def test_reply_length_above_the_limit_is_malformed():
    # a corrupted length field: refused at once instead of waiting for 64 KiB that never come
    head = bytes([0x5A, Op.RESET, 0]) + struct.pack("<H", 0xFFFF)
    with pytest.raises(ProtocolError, match="length field 65535 above the 512-byte limit"):
        Board(ScriptedPort([head + bytes(16)])).reset()


@pytest.mark.parametrize("call, args, error, match", [
    ("read_weights", (-1, 1), ValueError, "address -1 and count 1 must be >= 0"),
    ("read_weights", (0, -1), ValueError, "count -1 must be >= 0"),
    ("read_weights", (1 << 32, 1), ValueError, "runs past the u32 field"),
    ("read_weights", ((1 << 32) - 4, 8), ValueError, "runs past the u32 field"),
    ("read_weights", (1.5, 1), TypeError, "integer"),
    ("write_weights", (-8, b"ab"), ValueError, "must be >= 0"),
    ("write_weights", ((1 << 32) - 1, b"ab"), ValueError, "runs past the u32 field"),
    ("write_act", (-1, b"ab"), ValueError, r"row=-1 outside the u16 field \[0, 65535\]"),
    ("write_act", (1 << 16, b"ab"), ValueError, "row=65536 outside"),
    ("write_act", (0xFFFF, bytes(5)), ValueError, "rows 65535 \\+ count 2 runs past"),
    ("read_results", (-1, 1), ValueError, "must be >= 0"),
    ("read_results", (0, -2), ValueError, "must be >= 0"),
    ("read_results", (0xFFFF, 2), ValueError, "runs past the u16 field"),
    ("read_results", (0, 1 << 16 | 1), ValueError, "runs past the u16 field"),
    ("run", (-1, 1, 1, 0), ValueError, "m=-1 outside the u16 field"),
    ("run", (1, 1 << 16, 1, 0), ValueError, "k=65536 outside"),
    ("run", (1, 1, -2, 0), ValueError, "tokens=-2 outside"),
    ("run", (1, 1, 1, 1 << 32), ValueError, "wbase=4294967296 outside the u32 field"),
    ("run", (1, 1, 1, -8), ValueError, "wbase=-8 outside"),
])
def test_board_arguments_out_of_range(call, args, error, match):
    port = ScriptedPort([encode_reply(Op.INFO, 0, INFO.pack())])
    board = Board(port)
    board.info()
    with pytest.raises(error, match=match):
        getattr(board, call)(*args)
    assert port.written == [encode_request(Op.INFO)]     # nothing sent


def test_board_arguments_at_the_edges():
    # the last address and index each field carries, numpy integers, empty transfers
    port = ScriptedPort([encode_reply(Op.READ_WEIGHTS, 0, b"\x07"),
                         encode_reply(Op.READ_RESULTS, 0, struct.pack("<i", 5)),
                         encode_reply(Op.RUN, 0, struct.pack("<I", 9))])
    board = Board(port)
    assert board.read_weights(np.int64((1 << 32) - 1), 1) == b"\x07"
    np.testing.assert_array_equal(board.read_results(0xFFFF, np.uint16(1)), [5])
    assert board.run(0xFFFF, 0xFFFF, 0xFFFF, (1 << 32) - 8) == 9
    assert board.read_weights(0, 0) == b"" and board.read_results(0, 0).shape == (0,)
    board.write_weights(1 << 32, b"")
    assert len(port.written) == 3
    with pytest.raises(ValueError, match="runs past"):
        board.read_weights((1 << 32) - 1, 2)


def test_library_checks_token_counts_before_running():
    from fpga.host import check_layer, run_model
    from tests.helpers.softboard import SoftBoard

    cfg = AccelConfig()
    soft = SoftBoard(cfg, weight_bytes=131072, act_rows=128, result_depth=1024)
    for tokens in (0, -5, 1 << 16):     # (not 2**16 x K random activations first)
        with pytest.raises(ValueError, match=f"tokens={tokens}: want 1 to 65535 tokens"):
            check_layer(Board(soft), cfg, 8, 8, tokens, 0)
    for tokens in (0, -5):
        with pytest.raises(ValueError, match=f"tokens={tokens}: want at least one token"):
            run_model(Board(soft), cfg, "model/data/bitnet_kjv.npz", "And God", tokens)
    with pytest.raises(ValueError, match="the prompt is empty"):
        run_model(Board(soft), cfg, "model/data/bitnet_kjv.npz", "", 2)
    with pytest.raises(ValueError, match="exceed the context"):
        run_model(Board(soft), cfg, "model/data/bitnet_kjv.npz", "And God", 251)
    assert soft.runs == [] and not any(soft.weights)


def check_usage_error(capsys, argv, message, prog="python -m fpga.host"):
    """argparse's exit 2: the usage, then one ``prog: error: message`` line, no traceback."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: ") and [ln for ln in lines if "error:" in ln] == lines[-1:]
    assert lines[-1].startswith(f"{prog}: error: {message}"), err


def check_failure(capsys, argv, message, port=None) -> str:
    """Exit 1 with exactly one ``error:`` line on stderr naming ``message``."""
    assert main(argv, port=port) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and message in err, err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--port", "/no/such/tty", "info"], "argument --port: /no/such/tty: no such device"),
    (["--port", "{file}", "info"], "argument --port: {file} is a regular file, not a serial"),
    (["--port", "{dir}", "info"], "argument --port: {dir} is a directory, not a serial"),
    (["--port", "", "info"], "argument --port: empty port name"),
    (["--baud", "-5", "info"], "argument --baud: '-5': want an integer >= 1"),
    (["--baud", "0", "info"], "argument --baud: '0': want an integer >= 1"),
    (["--baud", "fast", "info"], "argument --baud: 'fast' is not an integer"),
    (["--timeout", "-1", "info"], "argument --timeout: '-1': want a finite number > 0"),
    (["--timeout", "0", "info"], "argument --timeout: '0': want a finite number > 0"),
    (["--timeout", "nan", "info"], "argument --timeout: 'nan': want a finite number > 0"),
    (["--config", "missing.json", "info"], "argument --config: cannot read missing.json"),
    (["--config", '{"rows": 0}', "info"], "argument --config: AccelConfig.rows"),
])
def test_cli_bad_global_arguments(capsys, tmp_path, argv, message):
    # checked before the port is opened: /dev/null would fail to open with exit status 1
    (tmp_path / "f.txt").write_text("x")
    def fill(text):
        return text.replace("{file}", str(tmp_path / "f.txt")).replace("{dir}", str(tmp_path))

    argv = [fill(a) for a in argv]
    argv = argv if "--port" in argv else ["--port", "/dev/null", *argv]
    check_usage_error(capsys, argv, fill(message))


@pytest.mark.parametrize("argv, message", [
    (["layer", "--tokens", "0"], "argument --tokens: '0': want an integer >= 1"),
    (["layer", "--tokens", "-3"], "argument --tokens: '-3': want an integer >= 1"),
    (["layer", "--m", "0"], "argument --m: '0': want an integer >= 1"),
    (["layer", "--k", "-1"], "argument --k: '-1': want an integer >= 1"),
    (["layer", "--seed", "-1"], "argument --seed: '-1': want an integer >= 0"),
    (["model", "--tokens", "0"], "argument --tokens: '0': want an integer >= 1"),
    (["model", "--tokens", "-5"], "argument --tokens: '-5': want an integer >= 1"),
    (["model", "--prompt", ""], "argument --prompt: empty prompt"),
    (["model", "--checkpoint", "/no/such.npz"], "argument --checkpoint: /no/such.npz: no such"),
])
def test_cli_bad_command_arguments(capsys, argv, message):
    check_usage_error(capsys, ["--port", "/dev/null", *argv], message,
                      prog=f"python -m fpga.host {argv[0]}")


def test_cli_cannot_open_port(capsys, monkeypatch):
    # /dev/null is a character device but no terminal (with or without pyserial: exit 1)
    check_failure(capsys, ["--port", "/dev/null", "info"], "cannot open --port /dev/null: ")
    monkeypatch.setitem(sys.modules, "serial", None)     # pyserial missing
    check_failure(capsys, ["--port", "/dev/null", "info"], "pyserial is not installed")


class FakeSerialModule:
    """Stands in for pyserial: ``Serial(...)`` raises ``error`` or returns ``port``."""

    def __init__(self, error=None, port=None):
        self.error, self.port = error, port

    def Serial(self, *args, **kwargs):
        if self.error is not None:
            raise self.error
        self.port.closed = False
        self.port.close = lambda: setattr(self.port, "closed", True)
        return self.port


@pytest.mark.parametrize("error, message", [
    (OSError(13, "could not open port /dev/ttyUSB1: Permission denied"), "Permission denied"),
    (OSError(16, "Device or resource busy"), "Device or resource busy"),
    (ValueError("Not a valid baudrate: 7"), "Not a valid baudrate: 7"),
])
def test_cli_port_open_errors(capsys, monkeypatch, error, message):
    monkeypatch.setitem(sys.modules, "serial", FakeSerialModule(error=error))
    err = check_failure(capsys, ["--port", "/dev/null", "--baud", "7", "info"],
                        "cannot open --port /dev/null: ")
    assert message in err


def test_cli_serial_exception_on_open(capsys, monkeypatch):
    serial = pytest.importorskip("serial")

    def refuse(*args, **kwargs):
        raise serial.SerialException("[Errno 2] could not open port /dev/ttyUSB9")

    monkeypatch.setattr(serial, "Serial", refuse)
    check_failure(capsys, ["--port", "/dev/null", "info"], "could not open port /dev/ttyUSB9")


def test_cli_closes_the_port_it_opened(capsys, monkeypatch):
    port = ScriptedPort([encode_reply(Op.INFO, 0, INFO.pack())])
    monkeypatch.setitem(sys.modules, "serial", FakeSerialModule(port=port))
    assert main(["--port", "/dev/null", "info"]) == 0 and port.closed
    port = ScriptedPort([encode_reply(Op.RESET, Status.BAD_CRC)])
    monkeypatch.setitem(sys.modules, "serial", FakeSerialModule(port=port))
    check_failure(capsys, ["--port", "/dev/null", "reset"], "BAD_CRC")
    assert port.closed


def test_cli_timeout_on_a_silent_tty(capsys):
    # the real open path (pyserial on a pseudo-terminal nobody answers): a timeout is exit 1
    pytest.importorskip("serial")
    try:
        master, slave = os.openpty()
    except OSError:
        pytest.skip("no pseudo-terminals")
    try:
        check_failure(capsys, ["--port", os.ttyname(slave), "--timeout", "0.05", "info"],
                      "board sent 0 of 5 expected bytes")
    finally:
        os.close(master)
        os.close(slave)


class BrokenPort(ScriptedPort):
    """A serial port that fails on read, as pyserial does when the adapter is unplugged."""

    def read(self, n):
        raise OSError(5, "device reports readiness to read but returned no data")


def test_cli_failures_during_a_command(capsys):
    check_failure(capsys, ["info"], "returned no data", port=BrokenPort([]))
    check_failure(capsys, ["info"], "board sent 0 of 5 expected bytes", port=ScriptedPort([]))
    # a --config the board does not match (JSON text is accepted as well as a file)
    port = ScriptedPort([encode_reply(Op.INFO, 0, INFO.pack())])
    check_failure(capsys, ["--config", '{"rows": 4, "cols": 4}', "layer"], "differs", port=port)
    # a status code this host does not know is printed, not a failure
    status = struct.pack("<BBBBHHI", 0, 99, 0, 0, 1, 0, 10)
    assert main(["status"], port=ScriptedPort([encode_reply(Op.STATUS, 0, status)])) == 0
    assert "last run: status 99, 10 cycles" in capsys.readouterr().out


def test_cli_layer_that_does_not_fit_fails_before_writing(capsys):
    from tests.helpers.softboard import SoftBoard

    soft = SoftBoard(AccelConfig(rows=2, cols=4, max_k=64, max_m=64), result_depth=32)
    check_failure(capsys, ["layer", "--m", "40", "--k", "8"],
                  "layer: one token of 40 x 8 does not fit the board memories", port=soft)
    check_failure(capsys, ["layer", "--m", "65", "--k", "8"], "layer: M=65 outside", port=soft)
    check_failure(capsys, ["layer", "--tokens", "1000000000"], "want 1 to 65535 tokens", port=soft)
    assert soft.runs == [] and not any(soft.weights)


def test_cli_model_checks_before_generating(capsys, tmp_path):
    from tests.helpers.softboard import SoftBoard

    # the board's engine takes K <= 64; the model's layers have K = 128: refused before the
    # golden generation, naming the layer
    soft = SoftBoard(AccelConfig(max_k=64), weight_bytes=131072, act_rows=128, result_depth=1024)
    check_failure(capsys, ["model", "--tokens", "2"],
                  "layers.0.self_attn.q_proj.weight: K=128 outside [1, max_k=64]", port=soft)
    soft = SoftBoard(AccelConfig(), weight_bytes=131072, act_rows=128, result_depth=1024)
    check_failure(capsys, ["model", "--tokens", "300"], "exceed the context", port=soft)
    (tmp_path / "notes.txt").write_text("not a model")
    check_failure(capsys, ["model", "--checkpoint", str(tmp_path / "notes.txt")],
                  "unknown checkpoint suffix", port=soft)
    assert soft.runs == []
