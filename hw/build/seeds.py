"""The nextpnr seed search: place and route with seeds 1, 2, ... until one meets the clock.

Small pure functions with an injectable step (:func:`search_seeds` takes the place-and-route
run as an argument), so the search is tested without a toolchain.
"""

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .checks import BuildError
from .report import parse_nextpnr_report
from .toolchain import run_tool, stage

__all__ = ["DEFAULT_SEEDS", "default_jobs", "search_seeds", "keep_seed", "place_and_route_seeds"]

#: nextpnr seeds tried by default before a build is reported as missing its clock.
DEFAULT_SEEDS = 4


def default_jobs():
    """nextpnr runs side by side by default: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def _attempt(place_and_route, seed):
    try:
        return place_and_route(seed), None
    except BuildError as exc:
        return None, exc


def search_seeds(place_and_route, goal_mhz, seeds, progress=None, jobs=1):
    """Run ``place_and_route(seed)`` for seeds 1, 2, ... until one meets ``goal_mhz``.

    ``place_and_route`` returns a parsed nextpnr report
    (:func:`hw.build.report.parse_nextpnr_report`); its slowest clock is the result's Fmax. At
    most ``seeds`` seeds are tried; the first that meets the goal is kept, else the fastest (the
    earliest of equals). ``progress(seed, fmax, goal)`` is called for every miss before the
    kept seed. Returns ``(seed, fmax, report, tried)`` with ``tried`` mapping ``"seed N"`` for
    each seed tried to its Fmax, rounded to 0.01 MHz, or to ``None`` for a seed whose placement
    failed (:class:`BuildError` from ``place_and_route``: a full device can be placeable with
    one seed and not with another); if every seed fails, the last seed's error is raised.

    ``jobs > 1`` runs the seeds ``jobs`` at a time (consecutive seeds, in threads:
    ``place_and_route`` must be safe to call side by side); the result is the one of
    ``jobs=1``, and ``tried`` also holds the seeds after the kept one in its batch.
    """
    for name, v in (("seeds", seeds), ("jobs", jobs)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise BuildError(f"{name} must be an int >= 1, got {v!r}")
    tried, best, kept = {}, None, False
    for first in range(1, seeds + 1, jobs):
        batch = range(first, min(first + jobs, seeds + 1))
        if len(batch) == 1:
            results = [_attempt(place_and_route, first)]
        else:
            with ThreadPoolExecutor(len(batch)) as pool:
                results = list(pool.map(lambda s: _attempt(place_and_route, s), batch))
        for seed, (pnr, err) in zip(batch, results, strict=True):
            if err is not None:
                tried[f"seed {seed}"] = None
                if kept:
                    continue
                if best is None and seed == seeds:
                    raise err
                if progress is not None:
                    progress(seed, float("nan"), goal_mhz)
                continue
            fmax = min(pnr["fmax_mhz"].values()) if pnr["fmax_mhz"] else float("nan")
            tried[f"seed {seed}"] = round(fmax, 2)
            if kept:
                continue
            if best is None or fmax > best[1]:
                best = (seed, fmax, pnr)
            if fmax >= goal_mhz:
                kept = True
            elif progress is not None:
                progress(seed, fmax, goal_mhz)
        if kept:
            break
    return (*best, tried)


def place_and_route_seeds(tool, args, placed_flag, placed, freq_mhz, goal_mhz, seeds, out, t0,
                          what, jobs=1):
    """:func:`search_seeds` over nextpnr runs in ``out``: ``tool`` (nextpnr-ice40 or -ecp5) with
    ``args`` (device and constraint arguments), the placed design written by ``placed_flag``
    (``--asc`` / ``--textcfg``) to ``top.seed<N>.<placed>``, ``--freq freq_mhz``, the report to
    ``pnr.seed<N>.json`` and the log to ``nextpnr.seed<N>.log`` (so ``jobs`` runs can share
    ``out``); ``what`` names the run in the progress lines. Returns what :func:`search_seeds`
    returns."""
    def place_and_route(seed):
        stage(f"place and route ({what}, target {freq_mhz} MHz, seed {seed})", t0)
        run_tool([tool, *args, "--json", "top.json", placed_flag, f"top.seed{seed}.{placed}",
                  "--freq", str(freq_mhz), "--report", f"pnr.seed{seed}.json",
                  "--timing-allow-fail", "--seed", str(seed)], out, f"nextpnr.seed{seed}.log")
        return parse_nextpnr_report((out / f"pnr.seed{seed}.json").read_text())

    return search_seeds(
        place_and_route, goal_mhz, seeds, jobs=jobs,
        progress=lambda s_, f_, g_: stage(
            f"seed {s_}: {f_:.1f} MHz misses {g_:g} MHz" if f_ == f_
            else f"seed {s_}: no placement (see nextpnr.seed{s_}.log)", t0))


def keep_seed(out, seed, n_tried, placed="asc"):
    """Put place-and-route result ``seed`` (of seeds ``1 .. n_tried``) under the plain names.

    ``top.seed<N>.<placed>`` (the placed design: ``asc`` from nextpnr-ice40, ``config`` from
    nextpnr-ecp5) and ``pnr.seed<N>.json`` of the kept seed become ``top.<placed>`` and
    ``pnr.json`` and its log is copied to ``nextpnr.log``; the other seeds' placed designs and
    ``.json`` are removed, their logs stay for reference.
    """
    out = Path(out)
    (out / f"top.seed{seed}.{placed}").replace(out / f"top.{placed}")
    (out / f"pnr.seed{seed}.json").replace(out / "pnr.json")
    shutil.copyfile(out / f"nextpnr.seed{seed}.log", out / "nextpnr.log")
    for other in range(1, n_tried + 1):
        (out / f"top.seed{other}.{placed}").unlink(missing_ok=True)
        (out / f"pnr.seed{other}.json").unlink(missing_ok=True)
