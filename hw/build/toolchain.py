"""Locate and run the Yosys / nextpnr-ice40 / icepack executables (YoWASP by default).

Each tool is taken from its environment variable (``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, the
names Amaranth's iCE40 platform uses) if set, else from ``yowasp-<tool>`` on ``PATH`` or next to the
running Python, else from the native ``<tool>`` on ``PATH``. :func:`run_tool` runs one at low
priority with its output in a log file; :func:`stage` prints each step of a build as it starts.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .checks import BuildError

__all__ = ["ToolchainError", "find_tool", "TOOLS", "run_tool", "stage"]

#: tool name -> environment variable that overrides it.
TOOLS = {"yosys": "YOSYS", "nextpnr-ice40": "NEXTPNR_ICE40", "icepack": "ICEPACK"}


class ToolchainError(RuntimeError):
    """A required tool could not be found."""


def find_tool(name):
    """Return the command (path) that runs tool ``name``.

    Parameters
    ----------
    name : str
        One of :data:`TOOLS`.

    Raises
    ------
    ToolchainError
        The tool is neither named by its environment variable nor installed.
    """
    if name not in TOOLS:
        raise ToolchainError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
    env = os.environ.get(TOOLS[name])
    if env:
        found = shutil.which(env)
        if found is None:
            raise ToolchainError(f"{TOOLS[name]}={env!r} does not name an executable")
        return found
    bindir = Path(sys.executable).parent
    for candidate in (f"yowasp-{name}", name):
        found = shutil.which(candidate) or shutil.which(candidate, path=str(bindir))
        if found:
            return found
    raise ToolchainError(
        f"{name} not found: pip install yowasp-{name.split('-')[0] if name == 'icepack' else name}"
        f" or set {TOOLS[name]}=/path/to/{name}")


def run_tool(cmd, cwd, log):
    """Run ``cmd`` (``nice -n 10``) in folder ``cwd``, stdout and stderr to ``cwd / log``.

    Raises
    ------
    BuildError
        The tool failed: "design does not fit the device" when nextpnr could not place it,
        else the tool's name and the last three lines of its log.
    """
    with open(Path(cwd) / log, "w") as fh:
        proc = subprocess.run(["nice", "-n", "10", *cmd], cwd=cwd, stdout=fh,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        text = (Path(cwd) / log).read_text()
        over = re.search(r"Failed to expand region .* of (\d+) (\w+)", text)
        if over:
            raise BuildError(f"design does not fit the device: {over.group(1)} {over.group(2)} "
                             f"needed (see {Path(cwd) / log})")
        tail = text.strip().splitlines()[-3:]
        raise BuildError(f"{Path(cmd[0]).name} failed (see {Path(cwd) / log}): "
                         + " | ".join(tail))


def stage(name, t0):
    """Print build step ``name`` with the seconds since ``t0`` (``time.monotonic()``)."""
    print(f"[{time.monotonic() - t0:7.1f} s] {name}", flush=True)
