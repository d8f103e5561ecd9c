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

__all__ = ["accel_config", "existing_path", "output_file", "positive_float", "token_ids"]


def accel_config(text: str) -> AccelConfig:
    """An :class:`AccelConfig` from JSON text or from a ``.json`` file holding it."""
    p = Path(text)
    if text.strip().endswith(".json") or p.is_file():
        try:
            text = p.read_text()
        except OSError as e:
            raise argparse.ArgumentTypeError(f"cannot read {p}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    try:
        return AccelConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
