"""Generate text with every BitLinear computed by the simulated accelerator.

``python -m sim.run_model --checkpoint model/data/bitnet_kjv.npz --prompt "And God said" \
--tokens 16``

The golden model (:mod:`model.transformer`) runs the network; its ``matmul`` hook hands every
BitLinear integer product ``acc = xq @ trits.T`` of every layer to a *backend*
(:mod:`sim.backends`): ``cocotb-fast`` (default), ``cocotb-stream``, ``native``, ``amaranth``,
``pymodel`` or ``golden``. For the cocotb backends the generation loop runs inside the
simulator process (:mod:`sim.cosim`, :mod:`sim.tb.run_model`), for the others in this process
(:mod:`sim.generation`). Every run first generates with the pure golden model, then with the
backend, and asserts that the generated tokens and every BitLinear accumulator are equal bit
for bit (:mod:`sim.inference`, :mod:`sim.compare`). It prints cycles per token, weight bytes
streamed per token and tokens/s at the Fmax of ``build/ice40/report.json`` (or ``--fmax``; the
output says which).

This module is the command line only: argument parsing, the calls, the printed summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model import cli
from model.accel import AccelConfig
from sim.backends import BACKENDS, DEFAULT_BACKEND
from sim.inference import DEFAULT_CHECKPOINT, RunModelError, execute, prepare

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(prog="python -m sim.run_model", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=cli.existing_path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--prompt", default="And God said", help="text prompt (byte-level models)")
    p.add_argument("--prompt-file", type=Path, default=None, help="read the text prompt here")
    p.add_argument("--tokens-in", type=cli.token_ids, default=None,
                   help="token ids of the prompt, e.g. 1,2,3 (models that are not byte-level)")
    p.add_argument("--tokens", type=cli.positive_int, default=16)
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"what computes every BitLinear (default {DEFAULT_BACKEND})")
    p.add_argument("--fmax", type=cli.positive_float, default=None,
                   help="Fmax in MHz (default: build report)")
    p.add_argument("--config", type=cli.accel_config, default=None,
                   help="AccelConfig as JSON or a path to a JSON file (default: the engine "
                        "of build/ice40/report.json, else AccelConfig())")
    p.add_argument("--json", type=cli.output_file, default=None,
                   help="also write the summary here")
    args = p.parse_args(argv)
    token_ids = args.tokens_in
    if args.prompt_file is not None:
        try:
            args.prompt = args.prompt_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            p.error(f"--prompt-file {args.prompt_file}: {e}")
    try:
        prep = prepare(args.checkpoint, args.prompt, args.tokens, args.backend, args.config,
                       token_ids=token_ids)
    except RunModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        out = execute(prep, args.tokens, args.backend, args.fmax)
    except ModuleNotFoundError as e:
        print(f"error: {e.name} is needed for this backend and is not importable", file=sys.stderr)
        return 2
    except Exception as e:
        from sim.runner import SimulatorUnavailable

        if isinstance(e, SimulatorUnavailable):
            print(f"error: {e}; choose another --backend (amaranth, pymodel, golden)",
                  file=sys.stderr)
            return 2
        raise
    print(f"prompt:    {args.prompt!r}" if token_ids is None else f"prompt:    {token_ids}")
    print(f"generated: {out['text']!r}")
    print(f"backend {out['backend']}: tokens and all {out['bitlinear_calls']} BitLinear "
          "accumulators equal the golden model bit for bit; every call's cycles equal "
          "model.accel_cycles.cycles")
    print(f"engine {AccelConfig.from_dict(out['accel_config']).slug} "
          f"(from {out['config_source']}): prefill "
          f"{out['prefill_cycles']} cycles for {out['prompt_tokens']} prompt tokens; "
          f"{out['cycles_per_token']:.0f} cycles/token, "
          f"{out['weight_bytes_per_token']:.0f} weight bytes streamed/token")
    if out["fmax_mhz"]:
        print(f"at {out['fmax_mhz']:.2f} MHz ({out['fmax_source']}): "
              f"{out['tokens_per_s']:.1f} tokens/s (BitLinear layers only)")
    else:
        print(f"Fmax: {out['fmax_source']}")
    print(f"wall time of the {out['backend']} run: {out['wall_seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
