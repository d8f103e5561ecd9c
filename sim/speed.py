"""Simulation speed of the co-simulation paths on one layer, and its report.

:func:`run_bench` runs the same layer through the stream path (cocotb drivers on the bare
engine, :class:`sim.engine_tb.EngineTB`), the fast path (:class:`sim.fast.FastEngine` on
:class:`sim.fast_top.FastTop`), the amaranth path (:class:`sim.amaranth_engine.AmaranthEngine`)
and the native path (:class:`sim.native.NativeEngine`), each result checked bit-exactly against
``model/``; :func:`markdown` is its report (``python -m sim.bench``).
"""

from __future__ import annotations

import json
import os
import platform
import time

from model.accel import AccelConfig
from sim.runner import SimBuild

__all__ = ["PATHS", "markdown", "run_bench"]


def _bench_amaranth(config: AccelConfig, m: int, k: int, tokens: int, repeats: int) -> dict:
    """The same layer ``repeats`` times on :class:`sim.amaranth_engine.AmaranthEngine`."""
    import numpy as np

    from sim.amaranth_engine import AmaranthEngine
    from sim.engine_tb import golden_acc

    rng = np.random.default_rng(1)
    lo = -(1 << (config.act_bits - 1))
    xq = rng.integers(lo, -lo, (tokens, k))
    trits = rng.integers(-1, 2, (m, k))
    want = golden_acc(xq, trits)
    t0 = time.monotonic()
    eng = AmaranthEngine(config)
    total = first = first_cycles = 0
    t1 = time.monotonic()
    for i in range(repeats):
        ts = time.monotonic()
        acc, cycles = eng.run_layer(xq, trits)
        if not np.array_equal(acc, want):
            raise AssertionError("Amaranth engine result differs from model/")
        total += cycles
        if i == 0:
            first, first_cycles = time.monotonic() - ts, cycles
    seconds = time.monotonic() - t1
    rest = seconds - first
    return {"cycles": total, "seconds": seconds, "cycles_per_second": total / seconds,
            "calls_per_second": repeats / seconds, "first_call_seconds": first,
            "steady_cycles_per_second": ((total - first_cycles) / rest if rest > 0
                                         else total / seconds),
            "process_seconds": time.monotonic() - t0}


def _bench_native(config: AccelConfig, m: int, k: int, tokens: int, repeats: int) -> dict:
    """The same layer ``repeats`` times on :class:`sim.native.NativeEngine`."""
    import numpy as np

    from model.packing import pack_layer_stream
    from sim.native import NativeEngine, check_call

    rng = np.random.default_rng(1)
    lo = -(1 << (config.act_bits - 1))
    xq = rng.integers(lo, -lo, (tokens, k)).astype(np.int8)
    trits = rng.integers(-1, 2, (m, k)).astype(np.int8)
    t0 = time.monotonic()
    with NativeEngine(config) as eng:
        t1 = time.monotonic()
        stream = pack_layer_stream(trits, config)
        pack = time.monotonic() - t1
        total = first = first_cycles = 0
        t1 = time.monotonic()
        for i in range(repeats):
            ts = time.monotonic()
            acc, cyc = eng.run_layer(xq, stream=stream, shape=(m, k))
            check_call(config, xq, trits, acc, cyc)
            total += cyc
            if i == 0:
                first, first_cycles = time.monotonic() - ts, cyc
        seconds = time.monotonic() - t1
        loop = eng.sim_seconds
    rest = seconds - first
    return {"cycles": total, "seconds": loop, "cycles_per_second": total / loop,
            "calls_per_second": repeats / seconds, "first_call_seconds": first,
            "steady_cycles_per_second": ((total - first_cycles) / rest if rest > 0
                                         else total / seconds),
            "call_seconds": seconds, "call_cycles_per_second": total / seconds,
            "pack_seconds": pack, "process_seconds": time.monotonic() - t0}


PATHS = ("stream", "fast", "amaranth", "native")


def run_bench(config: AccelConfig, m: int, k: int, tokens: int, repeats: int,
              amaranth_repeats: int = 2, paths=PATHS) -> dict:
    """Run the ``paths``; return the report dict."""
    from hw.engine import BitLinearEngine
    from sim.fast import build_fast_engine

    out = {"config": config.to_dict(), "layer": {"m": m, "k": k, "tokens": tokens},
           "repeats": repeats, "simulator": os.environ.get("SIM", "verilator"),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                      f"Python {platform.python_version()}", "paths": {}}
    params = {"config": config.to_dict(), "m": m, "k": k, "tokens": tokens,
              "repeats": repeats, "out": None}
    builds = {}
    if "stream" in paths:
        builds["stream"] = SimBuild(BitLinearEngine(config=config), dut="bitlinear_engine",
                                    key=config.slug)
    if "fast" in paths:
        beats = config.beats(m, k)
        builds["fast"] = (build_fast_engine(config) if beats <= 16384 else build_fast_engine(
            config, weight_depth=beats, act_depth=max(4096, tokens * config.k_tiles(k)),
            result_depth=max(16384, tokens * m)))
    for name, build in builds.items():
        result = build.build_dir / f"bench_{name}.json"
        params["out"] = str(result)
        params["path"] = name
        t0 = time.monotonic()
        build.run("sim.tb.bench", params=params)
        data = json.loads(result.read_text())
        data["process_seconds"] = time.monotonic() - t0
        out["paths"][name] = data
    if amaranth_repeats and "amaranth" in paths:
        out["paths"]["amaranth"] = _bench_amaranth(config, m, k, tokens, amaranth_repeats)
    if "native" in paths:
        out["paths"]["native"] = _bench_native(config, m, k, tokens, repeats)
    base = out["paths"].get("stream")
    if base:
        out["speedup"] = {n: p["cycles_per_second"] / base["cycles_per_second"]
                          for n, p in out["paths"].items()}
    return out


def markdown(rep: dict) -> str:
    """The Markdown report of a :func:`run_bench` result."""
    lay = rep["layer"]
    lines = [
        "# Co-simulation speed", "",
        f"Layer M={lay['m']} K={lay['k']} tokens={lay['tokens']}, {rep['repeats']} calls per "
        f"path; config `{rep['config']}`; simulator {rep['simulator']}; {rep['machine']}.", "",
        "| path | simulated cycles | wall s (calls only) | cycles / wall s | calls / s | "
        "first call s | cycles / wall s after the first call |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in rep["paths"].items():
        lines.append(f"| {name} | {p['cycles']} | {p['seconds']:.3f} | "
                     f"{p['cycles_per_second']:.0f} | {p['calls_per_second']:.2f} | "
                     f"{p['first_call_seconds']:.3f} | {p['steady_cycles_per_second']:.0f} |")
    lines += ["", "The amaranth path runs fewer calls (`--amaranth-repeats`); its wall time "
              "excludes nothing but the simulator construction. Wall time excludes the "
              "Verilator build and simulator start-up; the fast path includes loading weights "
              "through simulator handles on the first call (later calls reuse the resident "
              "layer) and reading the results back. The native path's wall time is its C++ "
              "clock loop alone (what the simulator does per cycle);"]
    nat = rep["paths"].get("native")
    if nat:
        lines += [f"its whole calls, with the pipe transfer of the weight stream and the "
                  f"results, ran {nat['call_cycles_per_second']:.0f} cycles/s; packing the "
                  f"stream once took {nat['pack_seconds']:.2f} s."]
    if "speedup" in rep:
        lines += ["", "Speed-up over the stream path: " + ", ".join(
            f"{n} {x:.1f}x" for n, x in rep["speedup"].items() if n != "stream") + "."]
    return "\n".join(lines + [""])
