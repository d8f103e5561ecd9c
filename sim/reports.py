"""Writing a benchmark's report: ``<outdir>/<name>.json`` and ``<outdir>/<name>.md``.

Used by the benchmark CLIs (``sim.bench``, ``sim.bench_model``, ``sim.bench_sparsity``), each
passing ``ROOT / "build"`` (``sim.runner.ROOT``).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_report"]


def write_report(outdir: Path, name: str, rep: dict, md: str) -> Path:
    """Write ``rep`` as JSON and ``md`` as Markdown under ``outdir`` (created); return it."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"{name}.json").write_text(json.dumps(rep, indent=1) + "\n")
    (outdir / f"{name}.md").write_text(md)
    return outdir
