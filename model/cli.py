"""Argument checks shared by the project's command lines.

Each function is an ``argparse`` ``type=`` converter: it returns the checked value or raises
``argparse.ArgumentTypeError`` with a one-line reason, which argparse prints as
``error: argument --flag: <reason>`` with exit status 2, before any long work starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from model.accel import AccelConfig

__all__ = ["accel_config", "existing_path", "nonnegative_int", "output_dir", "output_file",
           "positive_float", "positive_int", "prompt_text", "serial_port", "token_ids"]


def accel_config(text: str) -> AccelConfig:
    """An :class:`AccelConfig` from JSON text or from a ``.json`` file holding it."""
    p = Path(text)
    source = "not JSON"
    if text.strip().endswith(".json") or p.is_file():
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            reason = getattr(e, "strerror", None) or e
            raise argparse.ArgumentTypeError(f"cannot read {p}: {reason}") from None
        source = f"{p}: not JSON"
    try:
        data = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{source} ({e})") from None
    try:
        return AccelConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _int_at_least(text: str, low: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"{text!r}: want an integer >= {low}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of tokens, seeds, a baud rate)."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (a seed, an index)."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (a clock in MHz, a bandwidth)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: want a finite number > 0")
    return v


def token_ids(text: str) -> list[int]:
    """Comma-separated token ids (``1,2,3``), at least one, each >= 0."""
    try:
        ids = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want comma-separated token ids") from None
    if not ids:
        raise argparse.ArgumentTypeError("no token ids")
    if min(ids) < 0:
        raise argparse.ArgumentTypeError("token ids must be >= 0")
    return ids


def existing_path(text: str) -> Path:
    """A file or directory that exists."""
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{p}: no such file or directory")
    return p


def output_file(text: str) -> Path:
    """A file that can be written: its directory exists and is writable, it is not a directory
    (checked before the work whose result goes there)."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{p} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{p}: not writable")
    return p


def serial_port(text: str) -> str:
    """A serial device to open: on POSIX an existing character device (``/dev/ttyUSB1``, a
    ``/dev/serial/by-id/...`` link to one); on Windows a name such as ``COM3``, which only
    opening can check. Whether a character device is a terminal (``/dev/null`` is not) also
    shows only when it is opened."""
    if not text:
        raise argparse.ArgumentTypeError("empty port name")
    if os.name == "nt":
        return text
    p = Path(text)
    if p.is_char_device():
        return text
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{p} is a directory, not a serial device")
    if p.is_file():
        raise argparse.ArgumentTypeError(f"{p} is a regular file, not a serial device")
    if p.exists():
        raise argparse.ArgumentTypeError(f"{p} is not a serial device")
    raise argparse.ArgumentTypeError(f"{p}: no such device")


def prompt_text(text: str) -> str:
    """A text prompt: at least one character, encodable as UTF-8 (a byte-level model reads its
    UTF-8 bytes; undecodable command-line bytes arrive as lone surrogates, which are not)."""
    if not text:
        raise argparse.ArgumentTypeError("empty prompt")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise argparse.ArgumentTypeError(f"not encodable as UTF-8 ({e.reason} at character "
                                         f"{e.start})") from None
    return text


def output_dir(text: str) -> Path:
    """A directory to write into: an existing writable directory, or one that can be created
    (not an existing file; its nearest existing parent a writable directory)."""
    p = Path(text)
    if p.exists():
        if not p.is_dir():
            raise argparse.ArgumentTypeError(f"{p} exists and is not a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{p}: not writable")
        return p
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{p}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{p}: cannot be created in {parent} (not writable)")
    return p
