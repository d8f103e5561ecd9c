"""Seeded fuzzing of the board's reply decoder and of the checkpoint loaders (issue #17).

Every target runs a fixed number of cases. Case ``i`` of target ``t`` draws everything from
``random.Random(f"{t}:{i}")``, so it is the same on every run and machine, and a failure names
the case (``t:i``) and its mutation. An outcome is clean if the call returned (and the result
passed the target's checks) or raised the project's own exception type for that API:

* frames: :class:`fpga.protocol.ProtocolError`; through :class:`fpga.host.Board` also
  :class:`~fpga.protocol.BoardError` and ``TimeoutError`` (a short reply, as ``Board``
  documents);
* checkpoints: :class:`model.checkpoint.CheckpointError` (a ``ValueError``); a checkpoint that
  loads must also run one token through the golden model (reading it lazily) to finite logits,
  unless the values it was handed are beyond :data:`EXTREME`: finite values that large may
  overflow float32 arithmetic anywhere in the model, so those cases are counted apart
  ("extreme-valued"), not as defects.

Anything else (``KeyError``, ``struct.error``, ``MemoryError``, a numpy warning, a case running
over :data:`CASE_SECONDS`) is a defect: the test fails with the first such case's id, mutation
and traceback. ``FUZZ_SCALE=10`` runs ten times as many cases (the default suite uses 1); run
with ``-s`` to see the counts. Defects found this way keep a named regression test at the end.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import struct
import threading
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

from fpga.host import Board
from fpga.protocol import (
    INFO_FMT,
    PACKING_CODES,
    REP_SYNC,
    STATUS_FMT,
    BoardError,
    Info,
    Op,
    ProtocolError,
    Reply,
    ReplyDecoder,
    RunReply,
    Status,
    StatusInfo,
    crc16,
    decode_reply,
)
from model import checkpoint as ckpt
from model.checkpoint import CheckpointError
from model.checkpoint.core import RowReader

DATA = Path(__file__).parent / "data" / "checkpoints"
SHIPPED = Path(__file__).parent.parent / "model" / "data" / "bitnet_kjv.npz"
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
#: A case running longer than this is a defect (a loop driven by a corrupt count).
CASE_SECONDS = 20.0


def cases(n: int) -> range:
    return range(n * SCALE)


class CaseTimeout(Exception):
    """A fuzz case ran over :data:`CASE_SECONDS`."""


class ExtremeValues(Exception):
    """The float32 golden model overflowed on a checkpoint whose values are finite but beyond
    :data:`EXTREME`: counted apart, not a loader defect (see :func:`exercise`)."""


#: A magnitude (of a float tensor value or a ``gamma``) beyond anything a trained model holds
#: (the fixtures peak at 4.3 and 10); float32 arithmetic on such finite values may overflow.
EXTREME = 1e6


@contextlib.contextmanager
def deadline(seconds: float = CASE_SECONDS):
    """Raise :class:`CaseTimeout` in the block after ``seconds`` (POSIX, main thread only)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise CaseTimeout(f"case ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Tally:
    """Outcome counts of one target: clean results, clean errors (``allowed``), defects."""

    def __init__(self, target: str, allowed: tuple[type[BaseException], ...]):
        self.target, self.allowed = target, allowed
        self.tried = self.clean = self.errors = self.extreme = 0
        self.defects: list[tuple[str, str, str]] = []

    def run(self, case: str, fn, *args) -> None:
        """Count the outcome of ``fn(*args)``, case ``case``."""
        self.tried += 1
        try:
            with deadline(), warnings.catch_warnings():
                warnings.simplefilter("error")       # a numpy overflow is a defect too
                fn(*args)
        except self.allowed:
            self.errors += 1
        except ExtremeValues:
            self.extreme += 1
        except Exception as e:  # noqa: BLE001 -- any other exception is the defect looked for
            self.defects.append((case, where(e), traceback.format_exc()))
        else:
            self.clean += 1

    def check(self) -> None:
        extreme = f", {self.extreme} extreme-valued (float32 overflow)" if self.extreme else ""
        print(f"\nfuzz {self.target}: {self.tried} cases, {self.clean} clean results, "
              f"{self.errors} clean errors{extreme}, {len(self.defects)} unexpected")
        if self.defects:
            kinds: dict[str, list[str]] = {}
            for case, at, _ in self.defects:
                kinds.setdefault(at, []).append(case)
            lines = [f"  {at}: {len(c)} case(s), first {c[0]}" for at, c in kinds.items()]
            case, _, tb = self.defects[0]
            pytest.fail(f"fuzz {self.target}: {len(self.defects)} of {self.tried} cases raised "
                        "an unexpected exception:\n" + "\n".join(lines)
                        + f"\nfirst: {case}\n{tb}", pytrace=False)


def where(e: BaseException) -> str:
    """``ExceptionType at file:line``, the innermost frame of the project outside this test."""
    root = Path(__file__).parent.parent
    frames = traceback.extract_tb(e.__traceback__)
    mine = [f for f in frames if f.filename.startswith(str(root)) and f.filename != __file__
            and "/.venv/" not in f.filename]
    f = (mine or frames)[-1]
    return f"{type(e).__name__} at {Path(f.filename).name}:{f.lineno} ({f.name})"


# ==============================================================================================
# frames
# ==============================================================================================
def frame(op: int, status: int, payload: bytes, *, length: int | None = None,
          crc: int | None = None) -> bytes:
    """A reply frame as the module docstring of fpga/protocol.py lays it out; ``length`` /
    ``crc`` override the fields (the CRC is otherwise computed over the given fields)."""
    body = bytes([op, status]) + struct.pack(
        "<H", len(payload) if length is None else length) + payload
    return bytes([REP_SYNC]) + body + struct.pack("<H", crc16(body) if crc is None else crc)


def random_payload(rng: random.Random, op: int) -> bytes:
    if op == Op.INFO:
        fields = [rng.getrandbits(8 * struct.calcsize(c)) for c in INFO_FMT[1:]]
        fields[4] = rng.choice(list(PACKING_CODES.values()))
        return struct.pack(INFO_FMT, *fields)
    if op == Op.STATUS:
        return struct.pack(STATUS_FMT, *(rng.getrandbits(8 * struct.calcsize(c))
                                         for c in STATUS_FMT[1:]))
    if op == Op.RUN:
        return struct.pack("<I", rng.getrandbits(32))
    if op in (Op.READ_WEIGHTS, Op.READ_RESULTS):
        return rng.randbytes(rng.choice([0, 1, 4, 16, 64, 300]))
    return b""


def random_reply(rng: random.Random) -> Reply:
    op = rng.choice(list(Op)) if rng.random() < 0.9 else rng.randrange(256)
    r = rng.random()
    status = Status.OK if r < 0.75 else rng.choice(list(Status)) if r < 0.95 else \
        rng.randrange(256)
    return Reply(int(op), int(status), random_payload(rng, op) if status == Status.OK else b"")


def mutate_frames(rng: random.Random, replies: list[Reply]) -> tuple[str, bytes]:
    """A stream of ``replies`` with one mutation; returns ``(description, bytes)``."""
    frames = [frame(r.op, r.status, r.payload) for r in replies]
    kind = rng.choice(["none", "flip", "truncate", "insert", "delete", "length", "length+crc",
                       "payload+crc", "resize+crc", "header+crc", "random"])
    if kind in ("length", "length+crc", "payload+crc", "resize+crc", "header+crc"):
        i = rng.randrange(len(frames))
        r = replies[i]
        if kind.startswith("length"):
            n = rng.choice([0, 1, 7, 0xFFFF, rng.getrandbits(16),
                            max(0, len(r.payload) + rng.randint(-3, 3))])
            f = frame(r.op, r.status, r.payload, length=n,
                      crc=None if kind == "length+crc" else crc16(frames[i][1:-2]))
            what = f"frame {i} length field {len(r.payload)} -> {n}"
        elif kind == "payload+crc":
            p = bytearray(r.payload or b"\0")
            for _ in range(rng.randint(1, 4)):
                p[rng.randrange(len(p))] = rng.randrange(256)
            f, what = frame(r.op, r.status, bytes(p)), f"frame {i} payload bytes changed"
        elif kind == "resize+crc":
            n = max(0, len(r.payload) + rng.choice([-4, -1, 1, 4, 100]))
            p = (r.payload + rng.randbytes(max(0, n - len(r.payload))))[:n]
            f, what = frame(r.op, r.status, p), f"frame {i} payload {len(r.payload)} -> {n} B"
        else:
            op, st = rng.randrange(256), rng.randrange(256)
            f, what = frame(op, st, r.payload), f"frame {i} op/status -> {op:#x}/{st:#x}"
        frames[i] = f
        return f"{kind}: {what}", b"".join(frames)
    data = bytearray(b"".join(frames))
    if kind == "flip":
        bits = [rng.randrange(8 * len(data)) for _ in range(rng.randint(1, 3))]
        for b in bits:
            data[b // 8] ^= 1 << (b % 8)
        return f"flip bits {bits}", bytes(data)
    if kind == "truncate":
        n = rng.randrange(len(data))
        return f"truncate to {n} of {len(data)} B", bytes(data[:n])
    if kind == "insert":
        at, junk = rng.randrange(len(data) + 1), rng.randbytes(rng.randint(1, 8))
        if rng.random() < 0.5:
            junk = bytes([REP_SYNC]) + junk
        data[at:at] = junk
        return f"insert {junk.hex()} at {at}", bytes(data)
    if kind == "delete":
        at = rng.randrange(len(data))
        n = rng.randint(1, 8)
        del data[at:at + n]
        return f"delete {n} B at {at}", bytes(data)
    if kind == "random":
        raw = bytearray(rng.randbytes(rng.randint(0, 64)))
        for _ in range(rng.randint(0, 3)):
            if raw:
                raw[rng.randrange(len(raw))] = REP_SYNC
        return f"random bytes {raw.hex()}", bytes(raw)
    return "unmutated", bytes(data)


PARSERS = {Op.INFO: Info.unpack, Op.STATUS: StatusInfo.unpack, Op.RUN: RunReply.unpack}


def check_parsed(parser, payload: bytes, obj) -> None:
    """A payload ``parser`` accepted is exactly the parsed object's wire form."""
    assert isinstance(obj, parser.__self__)
    if isinstance(obj, Info):
        assert obj.pack() == payload
    elif isinstance(obj, StatusInfo):
        assert struct.pack(STATUS_FMT, obj.flags, obj.last_status, obj.reserved0, obj.reserved1,
                           obj.good_frames, obj.bad_frames, obj.last_cycles) == payload
    else:
        assert struct.pack("<I", obj.cycles) == payload


def decode_case(data: bytes, expect: Reply | None, parsers: Tally) -> None:
    rep = decode_reply(data)
    assert frame(rep.op, rep.status, rep.payload) == data
    if expect is not None:
        assert rep == expect
    for parser in PARSERS.values():          # every parser on every payload, not just its own
        parsers.run(f"{parser.__qualname__} of {rep.payload.hex()}", parse_case, parser,
                    rep.payload)


def parse_case(parser, payload: bytes) -> None:
    check_parsed(parser, payload, parser(payload))


def feed_case(rng: random.Random, data: bytes, expect: list[Reply] | None) -> None:
    dec, got, error = ReplyDecoder(), [], None
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 2, 3, 7, 64, len(data)])
        try:
            got += dec.feed(data[pos:pos + n])
        except ProtocolError as e:
            error = e
        pos += n
    for rep in got:           # nothing invented: every reply is a frame of the stream
        assert frame(rep.op, rep.status, rep.payload) in data
    assert dec.junk + dec.pending + sum(len(r.payload) + 7 for r in got) <= len(data)
    if expect is not None:
        assert got == expect and dec.junk == 0 and dec.pending == 0 and error is None
    if error is not None:
        raise error


class FakePort:
    """A byte transport that answers every request with the next bytes of ``data``."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def write(self, frame: bytes) -> None:
        pass

    def read(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def board_case(data: bytes, first: Reply, expect: Reply | None) -> None:
    board = Board(FakePort(data))
    if first.op == Op.INFO:
        got = board.info()
        want = expect and Info.unpack(expect.payload)
    elif first.op == Op.STATUS:
        got = board.status()
        want = expect and StatusInfo.unpack(expect.payload)
    elif first.op == Op.RUN:
        got = board.run(1, 1, 1, 0)
        want = expect and RunReply.unpack(expect.payload).cycles
    else:
        got = board.request(first.op)
        want = expect
    if expect is not None:
        assert got == want


def test_fuzz_reply_decoder():
    """Mutated reply streams through ``decode_reply``, the payload parsers, ``ReplyDecoder``
    fed in random chunks, and ``Board`` requests over a port replaying them."""
    decode = Tally("decode_reply", (ProtocolError,))
    parsers = Tally("Info/StatusInfo/RunReply.unpack", (ProtocolError,))
    feed = Tally("ReplyDecoder.feed", (ProtocolError,))
    board = Tally("Board over a replaying port", (ProtocolError, BoardError, TimeoutError))
    for i in cases(700):
        rng = random.Random(f"frames:{i}")
        replies = [random_reply(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        what, data = mutate_frames(rng, replies)
        clean = what == "unmutated"
        case = f"frames:{i} ({what}; replies {replies})"
        if len(replies) == 1:
            decode.run(case, decode_case, data, replies[0] if clean else None, parsers)
        feed.run(case, feed_case, rng, data, replies if clean else None)
        ok = clean and replies[0].status == Status.OK
        board.run(case, board_case, data, replies[0], replies[0] if ok else None)
    for i in cases(300):                     # random payloads straight into the parsers
        rng = random.Random(f"payloads:{i}")
        payload = rng.randbytes(rng.choice([0, 3, 4, 5, StatusInfo.SIZE, Info.SIZE,
                                            rng.randrange(40)]))
        for parser in PARSERS.values():
            parsers.run(f"payloads:{i} {parser.__qualname__}({payload.hex()})", parse_case,
                        parser, payload)
    for t in (decode, parsers, feed, board):
        t.check()


def test_fuzz_reply_stream_in_random_chunks():
    """A valid stream (with junk bytes between frames) fed in random chunk sizes yields
    exactly the frames sent, each as soon as its last byte arrived."""
    tally = Tally("ReplyDecoder stream in random chunks", ())
    for i in cases(250):
        tally.run(f"stream:{i}", stream_case, random.Random(f"stream:{i}"))
    tally.check()


def stream_case(rng: random.Random) -> None:
    replies = [random_reply(rng) for _ in range(rng.randint(1, 12))]
    data, ends, junk = bytearray(), [], 0
    for r in replies:
        if rng.random() < 0.3:
            j = bytes(rng.choice([b for b in range(256) if b != REP_SYNC])
                      for _ in range(rng.randint(1, 5)))
            data += j
            junk += len(j)
        data += frame(r.op, r.status, r.payload)
        ends.append(len(data))
    dec, got, pos = ReplyDecoder(), [], 0
    while pos < len(data):
        n = rng.choice([1, 1, 2, 5, 9, 33, rng.randint(1, len(data))])
        got += dec.feed(bytes(data[pos:pos + n]))
        pos = min(pos + n, len(data))
        assert len(got) == sum(e <= pos for e in ends), f"{len(got)} replies after {pos} bytes"
    assert got == replies
    assert dec.junk == junk and dec.pending == 0


def test_reply_decoder_keeps_good_replies_before_a_bad_frame():
    """Found while writing the fuzzer: the exception used to discard the replies already taken
    out of the buffer in the same call."""
    bad = bytearray(frame(Op.STATUS, Status.OK, b"B"))
    bad[-1] ^= 1
    dec, got = ReplyDecoder(), []
    with pytest.raises(ProtocolError, match="CRC"):
        got += dec.feed(frame(Op.INFO, Status.OK, b"A") + bytes(bad) + frame(Op.RUN, 0, b"C"))
    got += dec.feed(b"")
    assert [r.payload for r in got] == [b"A", b"C"]


# ==============================================================================================
# checkpoints: mutations
# ==============================================================================================
#: Values that a JSON field must never turn into a traceback.
WEIRD = [None, True, False, 0, -1, 1, 2, 3, 2**31, 2**63, 10**400, -2**63, 0.5, 1e-300, 5e-324,
         1e308, math.nan, math.inf, -math.inf, "", "64", "relu2", "default", "bitnet", [], [1],
         [[1, 2]], {}, {"a": 1}]
#: A JSON value nested deeper than any parser's recursion limit.
DEEP = "[" * 100_000 + "]" * 100_000

HF_KEYS = ["model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
           "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
           "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_parameters",
           "rope_scaling", "partial_rotary_factor", "tie_word_embeddings", "attention_bias",
           "mlp_bias", "quantization_config"]
SUB_KEYS = {"quantization_config": ["quant_method", "linear_class", "quantization_mode",
                                    "use_rms_norm", "modules_to_not_convert"],
            "rope_parameters": ["rope_type", "type", "rope_theta", "partial_rotary_factor"]}
PLAUSIBLE = {"model_type": ["bitnet", "llama", "gpt2"], "hidden_act": ["relu2", "silu", "gelu"],
             "linear_class": ["bitlinear", "autobitlinear", "linear"],
             "quantization_mode": ["offline", "online", "dynamic"],
             "modules_to_not_convert": [["lm_head"], ["(", "*"], [".*"], ["layers.0"],
                                        ["(a+)+$"], ["\\"], ["mlp"]],
             "rope_type": ["default", "linear", "yarn"]}


def weird_value(rng: random.Random, key: str | None = None):
    if key in PLAUSIBLE and rng.random() < 0.5:
        return rng.choice(PLAUSIBLE[key])
    r = rng.random()
    if r < 0.3:
        return rng.choice([1, 2, 4, 8, 16, 32, 63, 64, 65, 128, 320, 1 << 16, 1 << 20])
    if r < 0.35:
        return rng.uniform(-10, 10)
    return rng.choice(WEIRD)


def dumps(obj) -> str:
    return json.dumps(obj)                   # NaN / Infinity written as Python's json does


def mutate_json_object(rng: random.Random, obj, keys: list[str]) -> tuple[str, str]:
    """A JSON text of ``obj`` (a dict) with one field changed, deleted or nested deeply, or
    replaced whole; returns ``(description, text)``."""
    obj = json.loads(json.dumps(obj))
    r = rng.random()
    if r < 0.04:
        v = weird_value(rng)
        return f"whole object -> {v!r:.40}", dumps(v)
    if r < 0.07:
        return "whole object nested 100000 deep", DEEP
    key = rng.choice(sorted(set(keys) | set(obj)))
    target, label = obj, key
    if key in SUB_KEYS and isinstance(obj.get(key), dict) and rng.random() < 0.6:
        target, sub = obj[key], rng.choice(SUB_KEYS[key])
        key, label = sub, f"{key}.{sub}"
    if rng.random() < 0.15 and key in target:
        del target[key]
        return f"delete {label}", dumps(obj)
    if rng.random() < 0.03:
        target[key] = "@@DEEP@@"
        return f"{label} nested 100000 deep", dumps(obj).replace('"@@DEEP@@"', DEEP)
    v = weird_value(rng, key)
    target[key] = v
    return f"{label} = {v!r:.60}", dumps(obj)


def flip_bytes(rng: random.Random, data: bytes, lo: int, hi: int, n: int) -> tuple[str, bytes]:
    b = bytearray(data)
    at = sorted(rng.randrange(lo, hi) for _ in range(n))
    for a in at:
        b[a] = rng.choice([b[a] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 0xFF])
    return f"bytes changed at {at}", bytes(b)


def truncate(rng: random.Random, data: bytes, hot: int) -> tuple[str, bytes]:
    """``data`` cut at a random offset, half the time within the first ``hot`` bytes."""
    n = rng.randrange(min(hot, len(data))) if rng.random() < 0.5 else rng.randrange(len(data))
    return f"truncated to {n} of {len(data)} B", data[:n]


SAFETENSORS_DTYPES = ["F64", "F32", "F16", "BF16", "U8", "I8", "I16", "I32", "I64", "BOOL",
                      "F8_E4M3", "U16", "X"]


def mutate_safetensors(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One mutation of a ``.safetensors`` file: its JSON header (an entry's dtype, shape or
    offsets, the entry itself, the header as a whole), the header length, raw header bytes,
    tensor data or a truncation."""
    n = int.from_bytes(data[:8], "little")
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    kind = rng.choice(["entry", "entry", "entry", "entry", "header", "length", "bytes",
                       "data", "nan", "truncate"])
    if kind in ("entry", "header"):
        names = sorted(k for k in header if k != "__metadata__")
        name = rng.choice(names)
        r = rng.random()
        if kind == "header":
            if r < 0.3:
                what, text = "header -> " + repr(v := weird_value(rng))[:40], dumps(v)
            elif r < 0.4:
                what, text = "header nested deep", DEEP
            elif r < 0.6:
                header["__metadata__"] = weird_value(rng)
                what, text = f"__metadata__ = {header['__metadata__']!r:.40}", dumps(header)
            elif r < 0.8:
                del header[name]
                what, text = f"entry {name} deleted", dumps(header)
            else:
                header[name + rng.choice(["", "_x", ".extra"]) + "2"] = header[name]
                what, text = f"entry {name} duplicated", dumps(header)
        else:
            entry = header[name]
            field = rng.choice(["dtype", "shape", "data_offsets", "entry"])
            if field == "entry":
                header[name] = v = weird_value(rng)
            elif field == "dtype":
                entry["dtype"] = v = (rng.choice(SAFETENSORS_DTYPES) if rng.random() < 0.6
                                      else weird_value(rng))
            elif field == "shape":
                s = list(entry["shape"])
                if s and rng.random() < 0.6:
                    s[rng.randrange(len(s))] = rng.choice(
                        [0, -1, 1, 2 * s[0] + 1, 2**40, 2**64, 1.5, "4", True, None])
                else:
                    s = rng.choice([[], s[::-1], s + [1], s[:-1], weird_value(rng)])
                entry["shape"] = v = s
            else:
                lo, hi = entry["data_offsets"]
                entry["data_offsets"] = v = rng.choice(
                    [[hi, lo], [lo, hi + 1], [lo - 1, hi], [lo + 1, hi + 1], [0, 2**64],
                     [-8, hi], [lo, -1], [float(lo), hi], [lo], [lo, hi, 0], weird_value(rng)])
            what, text = f"entry {name}.{field} = {v!r:.60}", dumps(header)
        raw = text.encode()
        raw += b" " * (-len(raw) % 8)
        return what, len(raw).to_bytes(8, "little") + raw + body
    if kind == "length":
        m = rng.choice([0, 1, 7, n - 1, n + 1, n + 8, len(data) - 8, len(data), 2**63,
                        2**64 - 1, 100_000_001, rng.getrandbits(64)])
        return f"header length {n} -> {m}", m.to_bytes(8, "little") + data[8:]
    if kind == "bytes":
        return flip_bytes(rng, data, 0, 8 + n, rng.randint(1, 4))
    if kind == "data":         # one byte: a defect is then the lazy or the eager path's alone
        what, out = flip_bytes(rng, data, 8 + n, len(data), 1)
        return "data " + what, out
    if kind == "nan":
        b = bytearray(data)
        name = rng.choice(sorted(k for k in header if k != "__metadata__"))
        lo, hi = header[name]["data_offsets"]
        if hi - lo < 4:
            return "unmutated (tensor too small for a NaN)", data
        at = 8 + n + lo + rng.randrange((hi - lo) // 4) * 4
        pattern = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x7c\x00\x7c",
                              b"\xff\xff\x7f\x7f", b"\x01\x00\x00\x00", b"\x00\x00\x00\x80"])
        b[at:at + 4] = pattern
        return f"tensor {name} data at {at} = {pattern.hex()}", bytes(b)
    return truncate(rng, data, 8 + n + 64)


# ==============================================================================================
# checkpoints: running a case
# ==============================================================================================
class Watch:
    """Records the largest finite magnitude among the values ``reader`` hands out (tensors,
    gammas, the rows a :class:`~model.checkpoint.core.RowReader` converts)."""

    def __init__(self, reader: ckpt.CheckpointReader):
        self.peak = 0.0
        for method in ("float", "ternary", "rows"):
            setattr(reader, method, self.wrap(getattr(reader, method)))

    def note(self, values):
        a = np.asarray(values).reshape(-1)    # no cast: a signalling NaN would warn
        if a.dtype.kind in "fiuc":
            a = a[np.isfinite(a)]
            self.peak = max(self.peak, float(np.max(np.abs(a), initial=0)))
        return values

    def wrap(self, read):
        def watched(name):
            out = read(name)
            if isinstance(out, ckpt.TernaryTensor):
                self.note(out.gamma)
            elif isinstance(out, RowReader):
                to_float = out.to_float
                out.to_float = lambda raw: self.note(to_float(raw))
            else:
                self.note(out)
            return out
        return watched


def exercise(path) -> None:
    """Open a checkpoint, run one token through the golden model reading it lazily, then read
    every tensor. Clean: both succeed with finite logits, or either raises CheckpointError.

    Non-finite logits (or a numpy overflow, an exception here) are a defect unless a value the
    lazy pass was handed exceeds :data:`EXTREME`: finite values that large can overflow
    float32 arithmetic anywhere in the model; if ``read()`` then accepts the checkpoint, the
    case counts as :class:`ExtremeValues`."""
    reader = ckpt.open_checkpoint(path)
    watch = Watch(reader)
    c = reader.config
    trouble = None
    try:
        logits = reader.transformer().forward([(c.vocab_size - 1) // 2])
    except RuntimeWarning as e:          # numpy overflow / invalid value, raised as an error
        trouble = f"{type(e).__name__}: {e}"
    else:
        assert logits.shape == (1, c.vocab_size), logits.shape
        if not np.all(np.isfinite(logits)):
            trouble = "non-finite logits"
    if trouble and watch.peak <= EXTREME:
        raise AssertionError(f"{trouble} in the golden model on checkpoint values of at most "
                             f"{watch.peak:.3g}")
    reader.read()
    if trouble:
        raise ExtremeValues(f"values up to {watch.peak:.3g}: {trouble}")


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


class Workdir:
    """A fresh directory per case under ``root`` (the previous one removed: unlinking a file
    that an old reader still maps is safe, overwriting it in place would not be)."""

    def __init__(self, root: Path):
        self.root, self.last = root, None

    def write(self, case: str, files: dict[str, bytes]) -> Path:
        if self.last is not None:
            shutil.rmtree(self.last, ignore_errors=True)
        d = self.root / case.replace(":", "_")
        d.mkdir(parents=True)
        for name, data in files.items():
            (d / name).write_bytes(data)
        self.last = d
        return d


HF_VARIANTS = ["hf-bitlinear", "hf-autobitlinear-offline", "hf-bf16-online", "float-llama",
               "save-hf-roundtrip"]


def mutate_hf(rng: random.Random, files: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
    files = dict(files)
    tensors = sorted(n for n in files if n.endswith(".safetensors"))
    r = rng.random()
    if r < 0.35:
        config = json.loads(files["config.json"])
        if rng.random() < 0.85:
            keys = HF_KEYS
            what, text = mutate_json_object(rng, config, keys)
            files["config.json"] = text.encode()
        else:
            what, files["config.json"] = truncate(rng, files["config.json"],
                                                  len(files["config.json"]))
        return f"config.json: {what}", files
    if r < 0.42 and "model.safetensors.index.json" in files:
        name = "model.safetensors.index.json"
        index = json.loads(files[name])
        wm = index["weight_map"]
        t = rng.choice(sorted(wm))
        k = rng.randrange(5)
        if k == 0:
            wm[t] = v = weird_value(rng) if rng.random() < 0.5 else rng.choice(
                ["../config.json", "missing.safetensors", "", ".", "config.json",
                 rng.choice(sorted(set(wm.values())))])
            what = f"weight_map[{t}] = {v!r:.40}"
        elif k == 1:
            del wm[t]
            what = f"weight_map[{t}] deleted"
        elif k == 2:
            wm["model.extra.weight"] = wm[t]
            what = "weight_map gains model.extra.weight"
        elif k == 3:
            index["weight_map"] = v = weird_value(rng)
            what = f"weight_map = {v!r:.40}"
        else:
            what, text = mutate_json_object(rng, index, ["weight_map", "metadata"])
            files[name] = text.encode()
            return f"{name}: {what}", files
        files[name] = dumps(index).encode()
        return f"{name}: {what}", files
    name = rng.choice(tensors)
    what, files[name] = mutate_safetensors(rng, files[name])
    return f"{name}: {what}", files


@pytest.fixture(scope="module")
def hf_bases():
    return {v: files_of(DATA / v / "hf") for v in HF_VARIANTS}


def test_fuzz_hf_checkpoints(hf_bases, tmp_path):
    """Hugging Face directories (config.json, model.safetensors or shards + index) of every
    reference layout, one mutation each, opened with ``open_checkpoint``."""
    tally = Tally("HF directories (config.json + safetensors)", (CheckpointError,))
    work = Workdir(tmp_path)
    for i in cases(260):
        rng = random.Random(f"hf:{i}")
        variant = rng.choice(HF_VARIANTS)
        what, files = mutate_hf(rng, hf_bases[variant])
        case = f"hf:{i} ({variant}: {what})"
        d = work.write(f"hf:{i}", files)
        tally.run(case, exercise, d)
    tally.check()


def test_fuzz_float_checkpoints(hf_bases, tmp_path):
    """One float file: ``.safetensors`` with the config.json beside it, and ``.npz`` of float
    arrays with a ``__config__`` (both :func:`model.checkpoint.load_float`)."""
    tally = Tally("float files (.safetensors, float .npz)", (CheckpointError,))
    work = Workdir(tmp_path)
    base = hf_bases["float-llama"]
    from model.checkpoint.safetensors_file import read_safetensors

    d = tmp_path / "base"
    d.mkdir()
    (d / "model.safetensors").write_bytes(base["model.safetensors"])
    tensors = {k.removeprefix("model."): v for k, v in
               read_safetensors(d / "model.safetensors").items()}
    config = ckpt.load(DATA / "float-llama" / "hf").config.to_dict()
    for i in cases(100):
        rng = random.Random(f"float:{i}")
        if rng.random() < 0.5:
            what, files = mutate_hf(rng, base)
            case = f"float:{i} (float-llama/model.safetensors alone: {what})"
            path = work.write(f"float:{i}", files) / "model.safetensors"
        else:
            what, arrays = mutate_arrays(rng, dict(tensors), "__config__", config,
                                         list(config))
            case = f"float:{i} (float .npz: {what})"
            path = work.write(f"float:{i}", {}) / "float.npz"
            save_arrays(path, arrays)
        tally.run(case, exercise, path)
    tally.check()


# -- the project's .npz ------------------------------------------------------------------------
def save_arrays(path: Path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def json_array(obj_text: str) -> np.ndarray:
    return np.frombuffer(obj_text.encode(), np.uint8)


def weird_array(rng: random.Random, a: np.ndarray) -> tuple[str, np.ndarray]:
    """``a`` with a wrong dtype, shape or values."""
    k = rng.randrange(9)
    flat = a.reshape(-1)
    if k == 0:
        dt = rng.choice([np.float64, np.float16, np.int8, np.uint16, np.int64, np.bool_,
                         np.complex64, "U3", np.uint8, np.float32])
        return f"dtype {np.dtype(dt)}", a.astype(dt)
    if k == 1:
        return "scalar", np.asarray(flat[0] if flat.size else 0, a.dtype)
    if k == 2:
        return "2-D", flat.reshape(1, -1)
    if k == 3:
        return "one element short", flat[:-1].reshape(-1) if a.ndim else flat
    if k == 4:
        return "one element more", np.concatenate([flat, flat[:1]])
    if k == 5:
        return "empty", np.zeros((0,), a.dtype)
    b = flat.copy()
    if not b.size:
        return "unmutated (empty)", a
    at = rng.randrange(b.size)
    if b.dtype.kind == "f":
        v = rng.choice([np.nan, np.inf, -np.inf, 0.0, -1.0, 3e38, 1e-45, 65504.0])
    elif b.dtype == np.uint8:
        v = rng.choice([243, 255, 0, 242, 128])
    else:
        v = rng.choice([0, 1, -1, 2])
    b[at] = v
    return f"element {at} = {v}", b.reshape(a.shape)


def mutate_arrays(rng: random.Random, arrays: dict, header_key: str, header: dict,
                  keys: list[str]) -> tuple[str, dict]:
    """A project or float ``.npz``'s members with one mutation: the JSON header (a field, the
    nested model config, its bytes or dtype), one array (:func:`weird_array`), a member gone
    or added."""
    r = rng.random()
    if r < 0.4:
        if rng.random() < 0.8:
            if "config" in header and rng.random() < 0.6:
                cfg = dict(header["config"])
                what, text = mutate_json_object(rng, cfg, list(cfg) + ["ffn_dim", "bogus"])
                try:
                    text = dumps({**header, "config": json.loads(text)})
                except (ValueError, RecursionError):
                    text = dumps(header).replace(dumps(header["config"]), text)
                what = "config." + what
            else:
                what, text = mutate_json_object(rng, header, keys)
            arrays[header_key] = json_array(text)
        else:
            raw = dumps(header).encode()
            k = rng.randrange(4)
            if k == 0:
                arrays[header_key] = np.frombuffer(raw[:rng.randrange(len(raw))], np.uint8)
                what = "truncated"
            elif k == 1:
                b = bytearray(raw)
                b[rng.randrange(len(b))] = rng.choice([0xFF, 0xC3, 0x80, 0])
                arrays[header_key] = np.frombuffer(bytes(b), np.uint8)
                what = "a byte changed"
            elif k == 2:
                arrays[header_key] = np.frombuffer(raw, np.uint8).astype(
                    rng.choice([np.float32, np.int64, np.int8]))
                what = f"stored as {arrays[header_key].dtype}"
            else:
                arrays[header_key] = np.frombuffer(raw, np.uint8)[None, :]
                what = "2-D"
        return f"{header_key}: {what}", arrays
    names = sorted(k for k in arrays if k != header_key)
    name = rng.choice(names)
    if r < 0.5:
        del arrays[name]
        return f"member {name} deleted", arrays
    if r < 0.55:
        arrays["layers.0.extra.weight"] = arrays[name]
        return "member layers.0.extra.weight added", arrays
    what, arrays[name] = weird_array(rng, arrays[name])
    return f"member {name}: {what}", arrays


@pytest.fixture(scope="module")
def npz_base(tmp_path_factory):
    """The project-format arrays of the small hf-bitlinear model (the shipped model's layout,
    a quarter of its size), and its header."""
    path = tmp_path_factory.mktemp("npz") / "small.npz"
    ckpt.save_npz(path, ckpt.load(DATA / "hf-bitlinear" / "hf"))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["__header__"].tobytes())
    return arrays, header


def test_fuzz_project_npz(npz_base, tmp_path):
    """The project's ``.npz``: members mutated (header, tq1 bytes, gamma, float tensors), and
    the shipped model's file itself with bytes changed or cut (zip, npy headers, deflate)."""
    tally = Tally("project .npz", (CheckpointError,))
    work = Workdir(tmp_path)
    arrays, header = npz_base
    shipped = SHIPPED.read_bytes()
    for i in cases(110):
        rng = random.Random(f"npz:{i}")
        path = work.write(f"npz:{i}", {}) / "model.npz"
        if rng.random() < 0.75:
            what, mutated = mutate_arrays(rng, dict(arrays), "__header__", header,
                                          ["format", "version", "packing", "config"])
            save_arrays(path, mutated)
            case = f"npz:{i} (hf-bitlinear as .npz: {what})"
        else:
            if rng.random() < 0.5:
                what, data = flip_bytes(rng, shipped, 0, len(shipped), rng.randint(1, 4))
            else:
                what, data = truncate(rng, shipped, 4096)
            path.write_bytes(data)
            case = f"npz:{i} ({SHIPPED.name}: {what})"
        tally.run(case, exercise, path)
    tally.check()


# -- GGUF --------------------------------------------------------------------------------------
GGUF_VARIANTS = ["gguf-from-packed", "gguf-tq1_0", "gguf-tq2_0", "gguf-f16", "own-tq1_0"]


def gguf_parts(path: Path) -> tuple[int, list[tuple[str, int, np.dtype, int]]]:
    """``(data_offset, [(label, byte offset, dtype, count)])`` of every stored part of a
    GGUF's header: counts, key and name lengths, value types, values, string bytes, array
    lengths, tensor dims, types and offsets."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    base = reader.data.__array_interface__["data"][0]
    out = []
    fields = [(k, f) for k, f in reader.fields.items()] + [
        (f"tensor {t.name}", t.field) for t in reader.tensors]
    for label, f in fields:
        for j, part in enumerate(f.parts):
            off = part.__array_interface__["data"][0] - base
            out.append((f"{label} part {j}", off, part.dtype.newbyteorder("<"), part.size))
    data_offset = reader.data_offset
    del reader
    return data_offset, out


def mutate_gguf(rng: random.Random, data: bytes, data_offset: int, parts) -> tuple[str, bytes]:
    kind = rng.choice(["part", "part", "part", "part", "bytes", "truncate", "data", "data"])
    b = bytearray(data)
    if kind == "part":
        label, off, dtype, count = rng.choice(parts)
        j = rng.randrange(max(count, 1))
        at, size = off + j * dtype.itemsize, dtype.itemsize
        old = int.from_bytes(b[at:at + size], "little")
        top = (1 << (8 * size)) - 1
        new = rng.choice([0, 1, top, old + 1, max(old - 1, 0), old * 2, 1 << (8 * size - 1),
                          rng.randrange(top + 1), rng.randrange(16), rng.randrange(40),
                          0x7FC00000, 0x7F800000, 0x7E00]) & top
        b[at:at + size] = new.to_bytes(size, "little")
        return f"{label}[{j}] at {at}: {old} -> {new}", bytes(b)
    if kind == "bytes":
        return flip_bytes(rng, data, 0, data_offset, rng.randint(1, 4))
    if kind == "truncate":
        return truncate(rng, data, data_offset + 64)
    if rng.random() < 0.5:
        what, out = flip_bytes(rng, data, data_offset, len(data), 1)
        return "data " + what, out
    at = data_offset + rng.randrange((len(data) - data_offset) // 4) * 4
    pattern = rng.choice([b"\x00\x7e\x00\x7e", b"\x00\x7c\x00\xfc", b"\xff\x7b\xff\x7b",
                          b"\x00\x00\xc0\x7f", b"\xff\xff\x7f\x7f", b"\xf3\xf3\xf3\xf3"])
    b[at:at + 4] = pattern
    return f"data at {at} = {pattern.hex()}", bytes(b)


@pytest.fixture(scope="module")
def gguf_bases(tmp_path_factory):
    """Every GGUF fixture (llama.cpp's converter) and one written by ``save_gguf`` (TQ1_0
    with ``.scale`` tensors and the project's config key): bytes, data offset, parts."""
    root = tmp_path_factory.mktemp("gguf")
    paths = {v: DATA / v / "model.gguf" for v in GGUF_VARIANTS if v != "own-tq1_0"}
    paths["own-tq1_0"] = root / "own.gguf"
    ckpt.save_gguf(paths["own-tq1_0"], ckpt.load_gguf(paths["gguf-tq1_0"]), "TQ1_0",
                   fallback=None)
    return {v: (p.read_bytes(), *gguf_parts(p)) for v, p in paths.items()}


def test_fuzz_gguf(gguf_bases, tmp_path):
    """GGUFs with a header part (count, length, type, value, dim, offset), header bytes or
    tensor data changed, or cut."""
    tally = Tally("GGUF", (CheckpointError,))
    work = Workdir(tmp_path)
    weights = {"gguf-from-packed": 5, "gguf-tq1_0": 2, "gguf-tq2_0": 2, "gguf-f16": 1,
               "own-tq1_0": 2}
    for i in cases(110):
        rng = random.Random(f"gguf:{i}")
        variant = rng.choices(list(weights), list(weights.values()))[0]
        data, data_offset, parts = gguf_bases[variant]
        what, mutated = mutate_gguf(rng, data, data_offset, parts)
        path = work.write(f"gguf:{i}", {"model.gguf": mutated}) / "model.gguf"
        tally.run(f"gguf:{i} ({variant}: {what})", exercise, path)
    tally.check()


def test_fuzz_unmutated_bases_load(hf_bases, npz_base, gguf_bases, tmp_path):
    """The fuzzers start from files that load (so a clean error is the mutation's doing)."""
    for v in HF_VARIANTS:
        exercise(DATA / v / "hf")
    exercise(SHIPPED)
    save_arrays(tmp_path / "small.npz", npz_base[0])
    exercise(tmp_path / "small.npz")
    for v, (data, _, _) in gguf_bases.items():
        (tmp_path / f"{v}.gguf").write_bytes(data)
        exercise(tmp_path / f"{v}.gguf")


# ==============================================================================================
# regressions: the defects the fuzzers found, one named case each
# ==============================================================================================
def copy_hf(variant: str, tmp_path: Path) -> Path:
    d = tmp_path / variant
    shutil.copytree(DATA / variant / "hf", d)
    return d


def edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def set_tensor_bytes(path: Path, name: str, raw: bytes) -> None:
    """Overwrite the start of tensor ``name``'s data in a ``.safetensors`` file."""
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    lo, _ = json.loads(data[8:8 + n])[name]["data_offsets"]
    data[8 + n + lo:8 + n + lo + len(raw)] = raw
    path.write_bytes(bytes(data))


def lazy_then_eager(path) -> None:
    """Both paths of :func:`exercise`, warnings as errors (as in every fuzz case)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader = ckpt.open_checkpoint(path)
        reader.transformer().forward([1])
        reader.read()


@pytest.mark.parametrize("site", ["config.json", "safetensors header", "shard index",
                                  "npz __header__", "float npz __config__", "gguf config key"])
def test_regression_json_nested_deeper_than_the_recursion_limit(site, tmp_path):
    """Was RecursionError from ``json.loads`` (fuzz: ``... nested 100000 deep``)."""
    if site == "config.json":
        d = copy_hf("hf-bitlinear", tmp_path)
        (d / "config.json").write_text(DEEP)
        path = d
    elif site == "safetensors header":
        d = copy_hf("hf-bitlinear", tmp_path)
        raw = DEEP.encode()
        (d / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
        path = d
    elif site == "shard index":
        d = copy_hf("hf-bf16-online", tmp_path)
        (d / "model.safetensors.index.json").write_text(DEEP)
        path = d
    elif site == "npz __header__":
        path = tmp_path / "m.npz"
        save_arrays(path, {"__header__": json_array(DEEP)})
    elif site == "float npz __config__":
        path = tmp_path / "m.npz"
        save_arrays(path, {"__config__": json_array(DEEP)})
    else:
        import gguf

        path = tmp_path / "m.gguf"
        w = gguf.GGUFWriter(str(path), "bitnet")
        w.add_string("bitnet_accel.model_config", DEEP)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.close()
    with pytest.raises(CheckpointError, match="RecursionError|malformed"):
        ckpt.open_checkpoint(path)


def test_regression_unhashable_json_values(tmp_path):
    """Was ``TypeError: unhashable type`` for a list where a string is expected."""
    d = copy_hf("float-llama", tmp_path)
    edit_json(d / "config.json", lambda c: c.update(model_type=[1]))
    with pytest.raises(CheckpointError, match=r"model_type \[1\] is not supported"):
        ckpt.open_checkpoint(d)
    d = copy_hf("hf-bitlinear", tmp_path / "st")
    data = (d / "model.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["model.norm.weight"]["dtype"] = []
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    (d / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    with pytest.raises(CheckpointError, match=r"model.norm.weight has unsupported dtype \[\]"):
        ckpt.open_checkpoint(d)


def test_regression_integer_beyond_float_range(tmp_path):
    """Was OverflowError (``int too large to convert to float``) for ``rope_theta: 10**400``."""
    d = copy_hf("hf-bitlinear", tmp_path)
    edit_json(d / "config.json", lambda c: c.update(rope_theta=10**400))
    with pytest.raises(CheckpointError, match="rope_theta must be a finite number"):
        ckpt.open_checkpoint(d)
    path = tmp_path / "m.npz"
    ck = ckpt.load(DATA / "hf-bitlinear" / "hf")
    ckpt.save_npz(path, ck)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["__header__"].tobytes())
    header["config"]["rope_theta"] = 10**400
    arrays["__header__"] = json_array(json.dumps(header))
    save_arrays(path, arrays)
    with pytest.raises(CheckpointError, match="invalid model config: int too large"):
        ckpt.open_checkpoint(path)


def test_regression_config_floats_outside_float32(tmp_path):
    """``rms_norm_eps: 1e308`` was accepted and became an infinite float32 eps: every norm
    output 0, all-zero logits with a numpy warning at most (fuzz: ``rms_norm_eps = 1e+308``).
    The same range now bounds ``rope_theta`` (GGUF stores both as float32): 5e-324 is no
    float32, and with 128-wide heads ``1 / theta ** (j / head_dim)`` overflows to NaN angles."""
    d = copy_hf("hf-bitlinear", tmp_path)
    edit_json(d / "config.json", lambda c: c.update(rms_norm_eps=1e308))
    with pytest.raises(CheckpointError, match=r"norm_eps=1e\+308 is outside the float32 range"):
        ckpt.open_checkpoint(d)
    edit_json(d / "config.json", lambda c: c.update(rms_norm_eps=1e-5, rope_theta=5e-324))
    with pytest.raises(CheckpointError, match="rope_theta=5e-324 is outside the float32 range"):
        ckpt.open_checkpoint(d)


def test_regression_weight_scale_whose_gamma_overflows(tmp_path):
    """``bitlinear``: ``gamma = 1 / weight_scale``; a subnormal weight_scale (1e-39) gave
    gamma 1e39, beyond float32: a numpy overflow, then ``ValueError`` from BitLinear on the
    lazy path (fuzz: ``weight_scale data ... = 01000000``)."""
    d = copy_hf("hf-bitlinear", tmp_path)
    set_tensor_bytes(d / "model.safetensors", "model.layers.0.mlp.gate_proj.weight_scale",
                     np.float32(1e-39).tobytes())
    with pytest.raises(CheckpointError, match=r"gate_proj.weight_scale: gamma 1e\+39 is outside"):
        lazy_then_eager(d)


def deflate_start(data: bytes, member: str) -> int:
    """Offset of a zip member's compressed data (after its local header)."""
    import io
    import zipfile

    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len


def test_regression_npz_corrupt_deflate_and_unknown_compression(tmp_path):
    """Were ``zlib.error`` (a corrupt deflate stream; fuzz: ``bitnet_kjv.npz: bytes changed``)
    and ``NotImplementedError`` (a compression method zipfile does not know)."""
    path = tmp_path / "m.npz"
    ckpt.save_npz(path, ckpt.load(DATA / "hf-bitlinear" / "hf"))
    good = path.read_bytes()
    data = bytearray(good)
    data[deflate_start(good, "norm.weight.npy")] = 0x07        # BTYPE 11: reserved
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="norm.weight is unreadable.*error"):
        lazy_then_eager(path)
    data = bytearray(good)
    at = data.find(b"PK\x01\x02")
    while at >= 0:                        # every central-directory entry: method 99
        data[at + 10:at + 12] = struct.pack("<H", 99)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="NotImplementedError"):
        lazy_then_eager(path)


@pytest.mark.parametrize("member, value, match", [
    ("layers.0.mlp.gate_proj.weight.gamma", np.float32(0), "gate_proj.weight has invalid gamma"),
    ("layers.0.input_layernorm.weight", None, "input_layernorm.weight has non-finite values"),
    ("norm.weight", np.zeros(0, np.float32), r"norm.weight has shape \(0,\), want \(64,\)"),
])
def test_regression_npz_lazy_path_checks_each_tensor(member, value, match, npz_base, tmp_path):
    """The lazy golden model ran on unchecked ``.npz`` tensors: ``ValueError`` from BitLinear
    (gamma 0), from the quantizer (a NaN norm weight) or from the model's shape check."""
    arrays = dict(npz_base[0])
    if value is None:
        value = arrays[member].copy()
        value[3] = np.nan
    arrays[member] = value
    save_arrays(tmp_path / "m.npz", arrays)
    reader = ckpt.open_checkpoint(tmp_path / "m.npz")
    with pytest.raises(CheckpointError, match=match):
        reader.transformer().forward([1])
    with pytest.raises(CheckpointError, match=match):
        reader.read()


def gguf_field_offset(path: Path, key: str, part: int) -> int:
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields[key] if key in reader.fields else next(
        t.field for t in reader.tensors if t.name == key)
    return (field.parts[part].__array_interface__["data"][0]
            - reader.data.__array_interface__["data"][0])


def patched(src: Path, dst: Path, *edits: tuple[int, bytes]) -> Path:
    data = bytearray(src.read_bytes())
    for at, raw in edits:
        data[at:at + len(raw)] = raw
    dst.write_bytes(bytes(data))
    return dst


def test_regression_gguf_array_longer_than_the_file(tmp_path):
    """gguf-py reads an array of ``count`` scalars one at a time, past the end of the file as
    empty reads: 2**40 one-byte items looped for days. Refused at open now, by the layout
    check, in well under a second."""
    src = DATA / "gguf-from-packed" / "model.gguf"
    key = "tokenizer.ggml.token_type"
    path = patched(src, tmp_path / "m.gguf",
                   (gguf_field_offset(src, key, 3), struct.pack("<I", 0)),       # UINT8 items
                   (gguf_field_offset(src, key, 4), struct.pack("<Q", 1 << 40)))
    with deadline(5), pytest.raises(CheckpointError, match="runs past the end of the file"):
        ckpt.open_checkpoint(path)


def test_regression_gguf_nested_arrays(tmp_path):
    """An array of arrays 10000 deep (a key inserted before the tensor records) was a
    RecursionError in gguf-py's parser."""
    import gguf

    src = DATA / "gguf-from-packed" / "model.gguf"
    reader = gguf.GGUFReader(str(src))
    at, count_at = reader.tensors[0].field.offset, gguf_field_offset(src, "GGUF.kv_count", 0)
    kv_count = int(reader.fields["GGUF.kv_count"].parts[0][0])
    depth = 10_000
    body = struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQ", 4, 0)
    key = b"fuzz.nested" + b"x" * (-(8 + 11 + len(body)) % reader.alignment)
    kv = struct.pack("<Q", len(key)) + key + body
    data = bytearray(src.read_bytes())
    data[count_at:count_at + 8] = struct.pack("<Q", kv_count + 1)
    data[at:at] = kv
    (tmp_path / "m.gguf").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="nests arrays more than 8 deep"):
        ckpt.open_checkpoint(tmp_path / "m.gguf")


def test_regression_gguf_tensor_offset_near_2_64(tmp_path):
    """A tensor record's data offset of 2**64 - 1 overflowed gguf-py's uint64 arithmetic (a
    numpy overflow; fuzz: ``blk.0.attn_k.scale part 5[0] ... -> 18446744073709551615``)."""
    src = DATA / "gguf-tq1_0" / "model.gguf"
    path = patched(src, tmp_path / "m.gguf",
                   (gguf_field_offset(src, "blk.0.attn_k.weight", 5), b"\xff" * 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match="data offset 18446744073709551615, past"):
            ckpt.open_checkpoint(path)


def test_regression_gguf_embedding_of_a_type_gguf_py_cannot_dequantize(tmp_path):
    """``token_embd`` re-typed to I8 opened and read() refused it, but the lazy forward pass
    (which reads the embedding by rows) raised NotImplementedError from gguf-py."""
    import gguf

    src = DATA / "gguf-tq1_0" / "model.gguf"
    path = patched(src, tmp_path / "m.gguf",
                   (gguf_field_offset(src, "token_embd.weight", 4),
                    struct.pack("<I", gguf.GGMLQuantizationType.I8)))
    with pytest.raises(CheckpointError, match="token_embd.weight has type I8, which gguf-py "
                                              "cannot dequantize"):
        ckpt.open_checkpoint(path)


def test_regression_gguf_quantized_embedding_runs_lazily(tmp_path):
    """A Q8_0 ``token_embd`` (llama.cpp quantizes the embedding so) loaded, but the lazy
    forward pass refused it: ``ValueError: embed_tokens.weight has shape (320, 272)`` (its
    bytes per row). Found while writing the fuzzer; now the lazy logits equal the eager ones."""
    import gguf

    from model.checkpoint.gguf_file import bitnet_writer, gguf_name
    from model.transformer import param_shapes

    ck = ckpt.load_gguf(DATA / "gguf-tq1_0" / "model.gguf")
    path = tmp_path / "q8.gguf"
    w = bitnet_writer(path, ck.config, "TQ1_0", "q8-embedding")
    tq1, q8 = gguf.GGMLQuantizationType.TQ1_0, gguf.GGMLQuantizationType.Q8_0
    for name, (_, is_bit) in param_shapes(ck.config).items():
        if is_bit:
            t = ck.ternary[name]
            w.add_tensor(gguf_name(name), gguf.quants.quantize(
                t.trits.astype(np.float32) * t.gamma, tq1), raw_dtype=tq1)
        elif name == "embed_tokens.weight":
            w.add_tensor(gguf_name(name), gguf.quants.quantize(ck.floats[name], q8), raw_dtype=q8)
        else:
            w.add_tensor(gguf_name(name), ck.floats[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    reader = ckpt.open_checkpoint(path)
    eager = reader.read().transformer().forward([1, 300])
    np.testing.assert_array_equal(reader.transformer().forward([1, 300]), eager)


def test_regression_gguf_scale_whose_gamma_overflows(gguf_bases, tmp_path):
    """``gamma = block scale * .scale`` overflowed float32 (block scales 2, ``.scale`` 3e38):
    a numpy overflow in the loader, then ``ValueError`` from BitLinear on the lazy path."""
    import gguf

    data = gguf_bases["own-tq1_0"][0]
    (tmp_path / "own.gguf").write_bytes(data)
    reader = gguf.GGUFReader(str(tmp_path / "own.gguf"))
    t = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    s = next(t for t in reader.tensors if t.name == "blk.0.attn_q.scale")
    _, type_size = gguf.GGML_QUANT_SIZES[t.tensor_type]
    edits = [(s.data_offset, np.float32(3e38).tobytes())]
    edits += [(t.data_offset + b * type_size + type_size - 2, np.float16(2).tobytes())
              for b in range(t.n_bytes // type_size)]
    del reader
    path = patched(tmp_path / "own.gguf", tmp_path / "m.gguf", *edits)
    with pytest.raises(CheckpointError, match=r"attn_q.weight: gamma 6e\+38 is outside"):
        lazy_then_eager(path)
