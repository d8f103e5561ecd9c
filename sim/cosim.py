"""The cocotb backends of ``python -m sim.run_model``: the generation loop in a simulator process.

:func:`run_cosim` builds (or reuses) the engine's simulator model (:func:`build_engine_sim`),
runs the cocotb module :mod:`sim.tb.run_model` on it in a subprocess and reads back its
:class:`sim.generation.GenerationResult`; the subprocess reports its progress through a file
that :func:`run_cosim` forwards to a :class:`sim.progress.Progress`.
"""

from __future__ import annotations

import time
from pathlib import Path

from model.accel import AccelConfig
from sim.generation import GenerationResult, load_result
from sim.progress import Progress

__all__ = ["COSIM_PATHS", "build_engine_sim", "run_cosim"]


COSIM_PATHS = ("fast", "stream")


def build_engine_sim(config: AccelConfig, path: str = "fast"):
    """The cached simulator build (:class:`sim.runner.SimBuild`) a cocotb backend runs on.

    ``path="fast"``: :class:`sim.fast_top.FastTop` (the engine plus weight/activation/result
    memories, ``sim.fast.build_fast_engine``); ``"stream"``: the bare ``BitLinearEngine``, the
    same build directory ``sim/test_engine.py`` uses for this config.
    """
    if path not in COSIM_PATHS:
        raise ValueError(f"path must be one of {COSIM_PATHS}, got {path!r}")
    if (config, path) not in _BUILDS:
        if path == "fast":
            from sim.fast import build_fast_engine

            _BUILDS[config, path] = build_fast_engine(config)
        else:
            from hw.engine import BitLinearEngine
            from sim.runner import SimBuild

            _BUILDS[config, path] = SimBuild(BitLinearEngine(config=config),
                                             dut="bitlinear_engine", key=config.slug)
    return _BUILDS[config, path]


_BUILDS: dict = {}


def _poll_progress(path: Path, progress, stop) -> None:
    """Forward the cocotb process's progress file (``tokens n calls``) to ``progress``."""
    seen = None
    while not stop.wait(0.3):
        try:
            text = path.read_text().split()
        except OSError:
            continue
        if len(text) == 3 and text != seen:
            seen = text
            i, n, c = map(int, text)
            progress.call(c)
            if 0 < i < n:
                progress(i, n)


def run_cosim(checkpoint: Path, prompt: list[int], n_tokens: int, config: AccelConfig,
              mode: str = "generate", work_dir: Path | None = None, path: str = "fast",
              progress: Progress | None = None) -> GenerationResult:
    """Run :mod:`sim.tb.run_model` on the simulated engine and return its results.

    ``mode`` is ``generate`` (``n_tokens`` greedy tokens) or ``forward`` (one forward pass);
    ``path`` is ``fast`` or ``stream`` (see :func:`build_engine_sim`).
    Raises ``sim.runner.CocotbFailure`` if the cocotb test failed.
    """
    import tempfile
    import threading

    if mode not in ("generate", "forward"):
        raise ValueError(f"mode must be 'generate' or 'forward', got {mode!r}")
    if progress is not None:
        progress.note(f"building/checking the {path}-path simulator model "
                      "(cached in sim_build/; a cold Verilator build takes about a minute)")
    t0 = time.time()
    build = build_engine_sim(config, path)
    if progress is not None:
        progress.note(f"simulator build: {'rebuilt' if build.rebuilt else 'cached'} "
                      f"({time.time() - t0:.0f} s), {build.build_dir}")
        progress.t0 = time.time()
    work = Path(work_dir or tempfile.mkdtemp(prefix="run_model_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = work / "result.npz"
    prog = work / "progress.txt"
    for f in (out, prog):
        if f.exists():
            f.unlink()
    params = {"checkpoint": str(Path(checkpoint).resolve()), "prompt": list(prompt),
              "tokens": int(n_tokens), "mode": mode, "out": str(out), "progress": str(prog),
              "accel_config": config.to_dict()}
    stop = threading.Event()
    poller = None
    if progress is not None:
        poller = threading.Thread(target=_poll_progress, args=(prog, progress, stop), daemon=True)
        poller.start()
    try:
        build.run("sim.tb.run_model", params=params, test_dir=work)
    finally:
        stop.set()
        if poller is not None:
            poller.join()
    if not out.exists():
        raise AssertionError(f"co-simulation wrote no result; see {work}")
    res = load_result(out)
    if progress is not None and mode == "generate":
        progress.call(len(res.calls))
        progress(n_tokens, n_tokens)
    return res
