"""Simulation speed of the two co-simulation paths on a realistic layer.

``python -m sim.bench`` builds (or reuses) the bare engine and the fast-path wrapper for the
default :class:`model.accel.AccelConfig`, runs the same layer through

* the **stream path**: cocotb drivers on ``cmd``/``act``/``weights`` and a monitor on
  ``result``, a Python handshake every clock (:class:`sim.engine_tb.EngineTB`);
* the **fast path**: :class:`sim.fast.FastEngine` on :class:`sim.fast_top.FastTop` (memories
  preloaded through simulator handles, the engine runs on its own until ``done``);

* the **amaranth** path: the engine's Amaranth description in Amaranth's own simulator
  (:class:`sim.amaranth_engine.AmaranthEngine`, in this process, no Verilog);
* the **native** path: the engine's Verilog (Yosys-optimized) under a C++ clock loop, no
  Python or VPI per cycle (:class:`sim.native.NativeEngine`); its figure is the clock loop's
  own time, its whole calls (packing, pipe transfer) are reported beside it;

and prints / writes ``build/sim_bench.json`` and ``build/sim_bench.md``: simulated cycles per
wall second of each path, with the setup (config, layer, simulator, machine). Results are
checked bit-exactly against ``model/`` in both paths.
"""

from __future__ import annotations

import argparse

from model.accel import AccelConfig
from sim.reports import write_report
from sim.runner import ROOT
from sim.speed import PATHS, markdown, run_bench

__all__ = ["main"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__.split("\n")[0])
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=1)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--amaranth-repeats", type=int, default=2,
                   help="calls on the Amaranth-simulator path (0 skips it; it is slow)")
    p.add_argument("--config", help="engine AccelConfig as JSON (default: AccelConfig())")
    p.add_argument("--paths", default=",".join(PATHS),
                   help=f"comma-separated subset of {','.join(PATHS)}")
    p.add_argument("--out", default="sim_bench", help="report name under build/")
    args = p.parse_args(argv)
    paths = [x for x in args.paths.split(",") if x]
    if not paths or any(x not in PATHS for x in paths):
        p.error(f"--paths: want a subset of {','.join(PATHS)}")
    try:
        config = AccelConfig.from_json(args.config) if args.config else AccelConfig()
        config.check_layer(args.m, args.k)
    except (ValueError, TypeError) as e:
        p.error(f"--config / --m / --k: {e}")
    if args.repeats < 1 or not 1 <= args.tokens <= 65535:
        p.error("--repeats must be >= 1 and --tokens in 1..65535")
    rep = run_bench(config, args.m, args.k, args.tokens, args.repeats,
                    args.amaranth_repeats, paths)
    md = markdown(rep)
    outdir = write_report(ROOT / "build", args.out, rep, md)
    print(md)
    print(f"wrote {outdir / (args.out + '.json')} and {outdir / (args.out + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
