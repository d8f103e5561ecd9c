"""Host side of the board link: a library and a CLI (``python -m fpga.host ...``).

The library talks to anything with ``write(bytes)`` and ``read(n) -> bytes`` (a
``serial.Serial`` opened by :func:`open_serial`, or the simulated serial port of
``sim/tb/board.py``): :class:`Board` sends one request at a time and checks every reply
(sync, length, CRC, opcode, status). :class:`BoardMatmul` is a ``matmul`` hook for
``model.transformer.Transformer``: it stores each BitLinear's weight stream in the board's weight
memory once (keyed by layer name and content), then for every call writes the activation codes,
runs the layer and reads the accumulators back.

CLI::

    python -m fpga.host --port /dev/ttyUSB1 info
    python -m fpga.host --port /dev/ttyUSB1 layer --m 64 --k 128 --tokens 2 --seed 1
    python -m fpga.host --port /dev/ttyUSB1 model --prompt "And God said" --tokens 16

``layer`` and ``model`` compare every accumulator with the golden model and exit non-zero on a
mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import operator
import struct
import sys
import time

import numpy as np

from fpga.memory import WORD_BYTES
from fpga.protocol import (
    MAX_PAYLOAD,
    REP_SYNC,
    BoardError,
    Info,
    Op,
    ProtocolError,
    RunReply,
    Status,
    StatusInfo,
    decode_reply,
    encode_request,
)
from fpga.top import DEFAULT_BAUD
from model import cli
from model.accel import AccelConfig
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream

__all__ = ["Board", "BoardMatmul", "open_serial", "main", "DEFAULT_BAUD"]

U16 = 1 << 16
U32 = 1 << 32


def open_serial(port: str, baud: int = DEFAULT_BAUD, timeout: float = 2.0):
    """Open a serial port with pyserial (8N1, no flow control).

    Raises ``ImportError`` without pyserial and ``OSError`` (``serial.SerialException``) or
    ``ValueError`` when the port cannot be opened or configured."""
    import serial

    return serial.Serial(port, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                         timeout=timeout)


def _span(what: str, start, count, size: int) -> tuple[int, int]:
    """``(start, count)`` as ints, checked to lie in ``[0, size)`` of a request field:
    ``ValueError`` names ``what`` and the field's range (``TypeError`` for a non-integer)."""
    start, count = operator.index(start), operator.index(count)
    if start < 0 or count < 0:
        raise ValueError(f"{what} {start} and count {count} must be >= 0")
    if start + count > size:
        raise ValueError(f"{what} {start} + count {count} runs past the "
                         f"u{size.bit_length() - 1} field (end at most {size})")
    return start, count


def _field(what: str, value, size: int) -> int:
    """``value`` as an int in ``[0, size)``, the range of its request field."""
    value = operator.index(value)
    if not 0 <= value < size:
        raise ValueError(f"{what}={value} outside the u{size.bit_length() - 1} field "
                         f"[0, {size - 1}]")
    return value


class Board:
    """One board behind a byte transport.

    Every method checks its arguments against the request fields (``ValueError`` for a value
    a field cannot carry, ``TypeError`` for a non-integer) before anything is sent, and every
    reply against what was asked: a reply of the wrong length raises
    :class:`~fpga.protocol.ProtocolError`, silence ``TimeoutError``, an error status
    :class:`~fpga.protocol.BoardError`. Ranges a field can carry but the board's memories do not
    hold are the board's to refuse (``BAD_ARG``).

    Parameters
    ----------
    port
        Object with ``write(bytes)`` and ``read(n) -> bytes`` (fewer bytes on timeout).
    """

    def __init__(self, port):
        self.port = port
        self._info: Info | None = None

    # -- frames --------------------------------------------------------------------------------
    def _read_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.port.read(n - len(data))
            if not chunk:
                raise TimeoutError(f"board sent {len(data)} of {n} expected bytes before the "
                                   "read timeout")
            data.extend(chunk)
        return bytes(data)

    def request(self, op: int, payload: bytes = b"", *, check: bool = True):
        """Send one request and return its :class:`~fpga.protocol.Reply`.

        With ``check`` a non-OK status raises :class:`~fpga.protocol.BoardError`."""
        return self.transact(encode_request(op, payload), op, check=check)

    def transact(self, frame: bytes, op: int | None = None, *, check: bool = True):
        """Send raw bytes (tests use this for malformed frames) and read one reply."""
        self.port.write(frame)
        head = self._read_exact(5)
        if head[0] != REP_SYNC:
            raise ProtocolError(f"reply starts with 0x{head[0]:02x}, not 0x{REP_SYNC:02x}")
        length = struct.unpack_from("<H", head, 3)[0]
        if length > MAX_PAYLOAD:   # no reply is longer: do not wait for 64 KiB of junk
            raise ProtocolError(f"reply length field {length} above the {MAX_PAYLOAD}-byte "
                                "limit")
        rep = decode_reply(head + self._read_exact(length + 2))
        if op is not None and rep.op != op:
            raise ProtocolError(f"reply to opcode 0x{rep.op:02x}, expected 0x{op:02x}")
        if check and rep.status != Status.OK:
            raise BoardError(rep.op, rep.status)
        return rep

    # -- requests ------------------------------------------------------------------------------
    def info(self) -> Info:
        if self._info is None:
            self._info = Info.unpack(self.request(Op.INFO).payload)
        return self._info

    def config_matches(self, config: AccelConfig) -> None:
        """Raise ``ValueError`` unless the board's engine has ``config``'s shape."""
        i = self.info()
        got = (i.rows, i.cols, i.act_bits, i.packing, i.bytes_per_beat, i.max_k, i.max_m)
        want = (config.rows, config.cols, config.act_bits, config.packing,
                config.bytes_per_beat, config.max_k, config.max_m)
        if got != want:
            raise ValueError(f"board engine {got} differs from the requested config {want}")

    def status(self) -> StatusInfo:
        return StatusInfo.unpack(self.request(Op.STATUS).payload)

    def reset(self) -> None:
        """Reset the engine and clear the sticky status flags."""
        self.request(Op.RESET)

    def _read(self, op: Op, args: bytes, nbytes: int) -> bytes:
        """The payload of a read request, which must carry exactly ``nbytes``."""
        payload = self.request(op, args).payload
        if len(payload) != nbytes:
            raise ProtocolError(f"{op.name} reply carries {len(payload)} bytes, asked for "
                                f"{nbytes}")
        return payload

    def write_weights(self, addr: int, data: bytes) -> None:
        """Write ``data`` to the weight memory from byte ``addr`` on (u32 addresses)."""
        data = bytes(data)
        addr, _ = _span("write_weights: address", addr, len(data), U32)
        step = MAX_PAYLOAD - 4
        for off in range(0, len(data), step):
            self.request(Op.WRITE_WEIGHTS, struct.pack("<I", addr + off) + data[off:off + step])

    def read_weights(self, addr: int, count: int) -> bytes:
        """Exactly ``count`` bytes of the weight memory from byte ``addr`` on."""
        addr, count = _span("read_weights: address", addr, count, U32)
        out = bytearray()
        for off in range(0, count, MAX_PAYLOAD):
            n = min(MAX_PAYLOAD, count - off)
            out += self._read(Op.READ_WEIGHTS, struct.pack("<IH", addr + off, n), n)
        return bytes(out)

    def write_act(self, row: int, data: bytes) -> None:
        """Write activation bytes from the start of activation row ``row`` on (u16 rows of
        ``cols`` bytes)."""
        data = bytes(data)
        row = _field("write_act: row", row, U16)
        cols = self.info().cols
        _span("write_act: rows", row, -(-len(data) // cols), U16)
        step = (MAX_PAYLOAD - 2) // cols * cols
        for off in range(0, len(data), step):
            self.request(Op.WRITE_ACT, struct.pack("<H", row + off // cols) + data[off:off + step])

    def run(self, m: int, k: int, tokens: int, wbase: int) -> int:
        """Run an ``m x k`` layer stored at byte ``wbase`` for ``tokens`` tokens; returns the
        engine cycles (``cmd`` transfer to final result)."""
        fields = (_field("run: m", m, U16), _field("run: k", k, U16),
                  _field("run: tokens", tokens, U16), _field("run: wbase", wbase, U32))
        rep = self.request(Op.RUN, struct.pack("<HHHI", *fields))
        return RunReply.unpack(rep.payload).cycles

    def read_results(self, index: int, count: int) -> np.ndarray:
        """Exactly ``count`` int32 accumulators of the result memory from ``index`` on."""
        index, count = _span("read_results: index", index, count, U16)
        out = []
        step = MAX_PAYLOAD // 4
        for off in range(0, count, step):
            n = min(step, count - off)
            out.append(self._read(Op.READ_RESULTS, struct.pack("<HH", index + off, n), 4 * n))
        return np.frombuffer(b"".join(out), dtype="<i4").astype(np.int32)


class BoardMatmul:
    """``matmul`` hook running every BitLinear on the board.

    ``hook(name, xq, trits) -> acc`` with ``xq`` ``(T, K)`` activation codes and ``trits``
    ``(M, K)``; returns ``(T, M)`` int32. Weight streams stay in the board's weight memory
    (8-byte aligned, allocated in call order; when full, the memory is reused from address 0).

    Parameters
    ----------
    board : Board
    config : AccelConfig
        Must match the board (checked against INFO).
    verify_weights : bool
        Read every stored stream back once and compare.
    """

    def __init__(self, board: Board, config: AccelConfig, *, verify_weights: bool = False):
        board.config_matches(config)
        self.board = board
        self.config = config
        self.verify_weights = verify_weights
        self._layers: dict[str, tuple[str, int]] = {}   # name -> (digest, wbase)
        self._next = 0
        self.cycles: list[int] = []
        self.calls = 0

    def tokens_per_run(self, m: int, k: int) -> int:
        """Tokens of an ``m x k`` layer one RUN takes (the activation and result memories)."""
        info = self.board.info()
        return min(info.act_bytes // self.config.cols // self.config.k_tiles(k),
                   info.result_depth // m, U16 - 1)

    def check_fits(self, name: str, m: int, k: int) -> None:
        """Raise ``ValueError`` naming ``name`` unless an ``m x k`` layer fits the engine and,
        for one token at least, the board's memories (checked before any long work)."""
        try:
            self.config.check_layer(m, k)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        nbytes = self.config.beats(m, k) * self.config.bytes_per_beat
        cap = self.board.info().weight_bytes
        if nbytes > cap:
            raise ValueError(f"{name}: weight stream of {nbytes} bytes exceeds the board's "
                             f"{cap} bytes of weight memory")
        if self.tokens_per_run(m, k) < 1:
            raise ValueError(f"{name}: one token of {m} x {k} does not fit the board memories")

    def _store(self, name: str, trits: np.ndarray) -> int:
        digest = hashlib.sha256(np.ascontiguousarray(trits, np.int8).tobytes()
                                + str(trits.shape).encode()).hexdigest()
        hit = self._layers.get(name)
        if hit is not None and hit[0] == digest:
            return hit[1]
        stream = pack_layer_stream(trits, self.config).tobytes()
        cap = self.board.info().weight_bytes
        if self._next + len(stream) > cap:   # full: start over (forget every stored layer)
            self._layers.clear()
            self._next = 0
        base = self._next
        self.board.write_weights(base, stream)
        if self.verify_weights and self.board.read_weights(base, len(stream)) != stream:
            raise AssertionError(f"{name}: weight read-back differs")
        self._layers = {n: v for n, v in self._layers.items() if v[1] != base}
        self._layers[name] = (digest, base)
        self._next = base + -(-len(stream) // WORD_BYTES) * WORD_BYTES
        return base

    def __call__(self, name: str, xq: np.ndarray, trits: np.ndarray) -> np.ndarray:
        cfg = self.config
        xq = np.asarray(xq)
        trits = np.asarray(trits)
        if xq.ndim != 2 or trits.ndim != 2 or xq.shape[1] != trits.shape[1]:
            raise ValueError(f"{name}: shapes {xq.shape} x {trits.shape}.T do not match")
        m, k = trits.shape
        self.check_fits(name, m, k)
        lo, hi = -(1 << (cfg.act_bits - 1)), (1 << (cfg.act_bits - 1)) - 1
        if xq.size and (xq.min() < lo or xq.max() > hi):
            raise ValueError(f"{name}: activation codes outside [{lo}, {hi}]")
        if not np.isin(trits, (-1, 0, 1)).all():
            raise ValueError(f"{name}: weights are not trits")
        base = self._store(name, trits)
        kt = cfg.k_tiles(k)
        per_run = self.tokens_per_run(m, k)
        out = np.empty((xq.shape[0], m), dtype=np.int32)
        for t0 in range(0, xq.shape[0], per_run):
            chunk = xq[t0:t0 + per_run]
            t = chunk.shape[0]
            codes = np.zeros((t, kt * cfg.cols), dtype=np.int8)
            codes[:, :k] = chunk
            self.board.write_act(0, codes.tobytes())
            self.cycles.append(self.board.run(m, k, t, base))
            out[t0:t0 + t] = self.board.read_results(0, t * m).reshape(t, m)
        self.calls += 1
        return out


# -- CLI ---------------------------------------------------------------------------------------
def _edge_layers(m: int, k: int, rng) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [
        ("random", rng.integers(-1, 2, (m, k)), rng.integers(-128, 128, (2, k))),
        ("all +1, x = -128", np.ones((m, k)), np.full((1, k), -128)),
        ("all -1, x = -128", -np.ones((m, k)), np.full((1, k), -128)),
        ("all 0", np.zeros((m, k)), rng.integers(-128, 128, (1, k))),
        ("all +1, x = 127", np.ones((m, k)), np.full((1, k), 127)),
    ]


def check_layer(board: Board, config: AccelConfig, m: int, k: int, tokens: int, seed: int,
                edge_cases: bool = True, out=None) -> None:
    """Run seeded random (and edge-case) ``m x k`` layers on the board; raise on a mismatch."""
    out = sys.stdout if out is None else out
    if not 1 <= operator.index(tokens) < U16:
        raise ValueError(f"tokens={tokens}: want 1 to {U16 - 1} tokens per run (RUN's field)")
    rng = np.random.default_rng(seed)
    hook = BoardMatmul(board, config, verify_weights=True)
    hook.check_fits("layer", m, k)
    cases = [("random", rng.integers(-1, 2, (m, k)), rng.integers(
        -(1 << (config.act_bits - 1)), 1 << (config.act_bits - 1), (tokens, k)))]
    if edge_cases:
        lo, hi = -(1 << (config.act_bits - 1)), (1 << (config.act_bits - 1)) - 1
        cases += [(n, w, np.clip(x, lo, hi)) for n, w, x in _edge_layers(m, k, rng)[1:]]
    for i, (label, w, x) in enumerate(cases):
        w = np.asarray(w, np.int8)
        x = np.asarray(x, np.int64)
        got = hook(f"layer{i}", x, w)
        want = ternary_matmul(x, w)
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            raise AssertionError(f"{label}: {len(bad)} accumulators differ, first at "
                                 f"{bad[0].tolist()}: board {got[tuple(bad[0])]} "
                                 f"golden {want[tuple(bad[0])]}")
        print(f"{label}: {m} x {k}, {x.shape[0]} token(s): OK, {hook.cycles[-1]} cycles",
              file=out)


def run_model(board: Board, config: AccelConfig, checkpoint: str, prompt: str, n_tokens: int,
              out=None) -> dict:
    """Greedy generation with every BitLinear on the board; checked against the pure golden
    model token for token and accumulator for accumulator.

    The arguments, the checkpoint and the fit of every BitLinear layer on the board are checked
    (``ValueError``) before the generation starts."""
    from model import checkpoint as ckpt
    from model.transformer import param_shapes

    out = sys.stdout if out is None else out
    if operator.index(n_tokens) < 1:
        raise ValueError(f"tokens={n_tokens}: want at least one token to generate")
    prompt_bytes = prompt.encode("utf-8")
    if not prompt_bytes:
        raise ValueError("the prompt is empty")

    ck = ckpt.load(checkpoint)
    c = ck.config
    if c.vocab_size != 256:
        raise ValueError(f"{checkpoint}: not a byte-level model (vocabulary {c.vocab_size}); "
                         "the prompt is text")
    if len(prompt_bytes) + n_tokens - 1 > c.max_seq:
        raise ValueError(f"a prompt of {len(prompt_bytes)} bytes and {n_tokens} tokens to "
                         f"generate exceed the context of {checkpoint} ({c.max_seq} tokens)")
    hook = BoardMatmul(board, config)
    for name, (shape, is_bitlinear) in param_shapes(c).items():
        if is_bitlinear:
            hook.check_fits(name, *shape)
    mismatches = []

    def checked(name, xq, trits):
        acc = hook(name, xq, trits)
        want = ternary_matmul(xq, trits)
        if not np.array_equal(acc, want):
            mismatches.append(name)
        return acc

    t0 = time.time()
    golden = ck.transformer().generate(list(prompt_bytes), n_tokens)
    board_tokens = ck.transformer(matmul=checked).generate(list(prompt_bytes), n_tokens)
    seconds = time.time() - t0
    if mismatches:
        raise AssertionError(f"board accumulators differ from the golden model in "
                             f"{len(mismatches)} calls, first {mismatches[0]}")
    if board_tokens != golden:
        raise AssertionError(f"tokens differ: golden {golden}, board {board_tokens}")
    text = bytes(board_tokens).decode("utf-8", errors="replace")
    print(f"{prompt!r} -> {text!r}", file=out)
    print(f"{hook.calls} BitLinear calls on the board, all equal to the golden model; "
          f"{sum(hook.cycles)} engine cycles; {seconds:.1f} s wall", file=out)
    return {"tokens": board_tokens, "calls": hook.calls, "cycles": sum(hook.cycles)}


def _config_from_board(board: Board, args) -> AccelConfig:
    cfg = args.config
    if cfg is None:
        i = board.info()
        cfg = AccelConfig(rows=i.rows, cols=i.cols, act_bits=i.act_bits, packing=i.packing,
                          max_k=i.max_k, max_m=i.max_m)
    board.config_matches(cfg)
    return cfg


CLI_EPILOG = """\
Program the board first (see docs/fpga.md):
  python -m hw.build --target ice40 --top fpga --out build/ice40
  iceprog build/ice40/top.bin          # or: openFPGALoader -b ice40_generic build/ice40/top.bin

Examples:
  python -m fpga.host --port /dev/ttyUSB1 info
  python -m fpga.host --port /dev/ttyUSB1 layer --m 64 --k 128 --tokens 2 --seed 1
  python -m fpga.host --port /dev/ttyUSB1 model --prompt "And God said" --tokens 16

Exit status 0 when every reply was OK and every result matched; 2 for a bad argument (checked
before the port is opened); 1 for a failure: the port cannot be opened, the board replies with an
error or not at all, a result differs from the golden model. Each error is one "error:" line.
The same library runs against the simulated board: pytest sim/test_board.py.
"""

#: What a command can fail with once its arguments have been parsed: exit status 1, one line.
#: (``OSError`` covers ``TimeoutError`` and pyserial's ``SerialException`` from a read or write;
#: ``ValueError`` covers a ``CheckpointError`` and arguments only the board or model can check.)
FAILURES = (BoardError, ProtocolError, OSError, AssertionError, ValueError)


def _fail(message: str) -> int:
    """Print ``error: message`` as one line on stderr; exit status 1."""
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    from model.train import CHECKPOINT  # the shipped model, found from any directory

    p = argparse.ArgumentParser(
        prog="python -m fpga.host", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=CLI_EPILOG)
    p.add_argument("--port", type=cli.serial_port,
                   help="serial device of the board's UART, e.g. /dev/ttyUSB1 (the iCEBreaker's "
                        "FT2232H interface B; COMn on Windows)")
    p.add_argument("--baud", type=cli.positive_int, default=DEFAULT_BAUD,
                   help=f"line rate, 8N1; must match the bitstream (default {DEFAULT_BAUD})")
    p.add_argument("--timeout", type=cli.positive_float, default=5.0,
                   help="serial read timeout per reply in seconds (default 5)")
    p.add_argument("--config", type=cli.accel_config,
                   help="AccelConfig the board must match, as JSON or a .json file (default: "
                        "the configuration the board reports in its INFO reply)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("info", help="print the board's engine configuration and memory sizes")
    sub.add_parser("status", help="print status flags and counters")
    sub.add_parser("reset", help="reset the engine and clear sticky flags")
    lp = sub.add_parser("layer", help="run a seeded random layer and edge cases on the board, "
                                      "compare every accumulator with the golden model")
    lp.add_argument("--m", type=cli.positive_int, default=64, help="output rows M (default 64)")
    lp.add_argument("--k", type=cli.positive_int, default=128,
                    help="input length K (default 128)")
    lp.add_argument("--tokens", type=cli.positive_int, default=2,
                    help="tokens per run (default 2)")
    lp.add_argument("--seed", type=cli.nonnegative_int, default=0, help="random seed (default 0)")
    mp = sub.add_parser("model", help="generate greedily with every BitLinear on the board and "
                                      "check tokens and accumulators against the golden model")
    mp.add_argument("--checkpoint", type=cli.existing_path, default=CHECKPOINT,
                    help="model checkpoint (default: the shipped model/data/bitnet_kjv.npz)")
    mp.add_argument("--prompt", type=cli.prompt_text, default="And God said", help="prompt text")
    mp.add_argument("--tokens", type=cli.positive_int, default=8,
                    help="tokens to generate (default 8)")
    return p


def _command(board: Board, args) -> None:
    if args.cmd == "info":
        for key, value in vars(board.info()).items():
            print(f"{key}: {value}")
    elif args.cmd == "status":
        s = board.status()
        last = s.last_status
        last = Status(last).name if last in Status._value2member_map_ else f"status {last}"
        print(f"engine error: {s.engine_error}  busy: {s.busy}  uart overrun: {s.overrun}  "
              f"uart framing error: {s.framing_error}")
        print(f"last run: {last}, {s.last_cycles} cycles; frames good {s.good_frames} bad "
              f"{s.bad_frames}")
    elif args.cmd == "reset":
        board.reset()
        print("engine reset")
    elif args.cmd == "layer":
        check_layer(board, _config_from_board(board, args), args.m, args.k, args.tokens,
                    args.seed)
    elif args.cmd == "model":
        run_model(board, _config_from_board(board, args), str(args.checkpoint), args.prompt,
                  args.tokens)


def main(argv=None, port=None) -> int:
    """CLI entry point; ``port`` injects an already open transport (tests).

    Returns the exit status: 2 for a bad argument (argparse exits), 1 for a failure, each with
    one ``error:`` line on stderr and no traceback."""
    p = _parser()
    args = p.parse_args(argv)
    opened = None
    if port is None:
        if args.port is None:
            p.error("--port is required")
        try:
            port = opened = open_serial(args.port, args.baud, args.timeout)
        except ImportError:
            return _fail(f"cannot open --port {args.port}: pyserial is not installed "
                         "(pip install pyserial)")
        except (OSError, ValueError) as e:
            return _fail(f"cannot open --port {args.port}: {e}")
    try:
        _command(Board(port), args)
    except FAILURES as e:
        return _fail(str(e) or type(e).__name__)
    finally:
        if opened is not None:
            opened.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
