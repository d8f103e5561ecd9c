"""Locate the Yosys / nextpnr-ice40 / icepack executables (YoWASP by default).

Each tool is taken from its environment variable (``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, the
names Amaranth's iCE40 platform uses) if set, else from ``yowasp-<tool>`` on ``PATH`` or next to the
running Python, else from the native ``<tool>`` on ``PATH``.
"""

import os
import shutil
import sys
from pathlib import Path

__all__ = ["ToolchainError", "find_tool", "TOOLS"]

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
