"""What ``python -m hw.build`` reported about the design it built: its engine and its clock."""

from __future__ import annotations

import json
from pathlib import Path

from model.accel import AccelConfig

__all__ = ["DEFAULT_FMAX_MHZ", "REPORT", "read_build"]

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "build" / "ice40" / "report.json"
#: Fmax (MHz) used when there is no build report and no --fmax: the design target of
#: docs/architecture.md for the iCE40 UP5K (stated as such in the output)
DEFAULT_FMAX_MHZ = 48.0


def read_build(report: Path = REPORT) -> dict:
    """What ``python -m hw.build`` reported about the design it built.

    Returns ``{"config": AccelConfig or None, "fmax_mhz": float or None, "clock_mhz": float or
    None}``: the engine configuration of the build, nextpnr's achieved Fmax, and the clock the
    design runs at (board tops: the PLL clock; ``None`` for bare-engine builds). All ``None``
    when there is no readable report.
    """
    out = {"config": None, "fmax_mhz": None, "clock_mhz": None}
    try:
        data = json.loads(Path(report).read_text())
    except (OSError, ValueError):
        return out
    if not isinstance(data, dict):
        return out
    timing = data.get("timing")
    if isinstance(timing, dict):
        for key in ("fmax_mhz", "clock_mhz"):
            if isinstance(timing.get(key), (int, float)):
                out[key] = float(timing[key])
    if isinstance(data.get("config"), dict):
        try:
            out["config"] = AccelConfig.from_dict(data["config"])
        except (TypeError, ValueError):
            pass
    return out
