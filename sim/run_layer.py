"""One real BitLinear layer through the simulated engine, bit-exact and cycle-exact.

``python -m sim.run_layer --checkpoint DIR --layer 3 --proj down --tokens-in 1,2,3``

The layer comes from a checkpoint (any layout :func:`model.checkpoint.open_checkpoint` reads,
opened lazily: only the layers up to ``--layer`` are read) or from a file exported on its own
(``--weights``). Its input is the real activation the golden model computes for a prompt
(``--prompt`` for byte-level models, ``--tokens-in`` token ids for others), codes from a file
(``--acts``), or seeded random codes (``--tokens`` rows). The product runs on the engine's
Verilog under the Verilator-native driver (:class:`sim.native.NativeEngine`); the command exits
0 only if every accumulator equals the golden model's and the cycle count equals
``model.accel_cycles.cycles``. It prints the cycles, the weight bytes streamed, the wall time of
the simulation and the time at the built clock (``build/ice40/report.json``, or ``--fmax``).

Exported layers (``--weights FILE``):

* ``.npy``: one ``(M, K)`` matrix: float (quantized with absmean) or integers in {-1, 0, 1};
* ``.npz`` / ``.safetensors``: ``weight`` as above, or packed as transformers writes BitNet
  (uint8 ``(M/4, K)`` plus ``weight_scale``), or ``tq1`` bytes with ``shape`` (and ``gamma``);
  a file holding a single array is read as that array.

``--acts FILE`` (same suffixes, one array or ``acts``): float ``(T, K)`` activations, quantized
per token with absmax, or int8 codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from model import cli
from model.accel import AccelConfig
from sim.layer_files import read_acts, read_weights
from sim.layer_run import DEFAULT_CONFIG, PROJECTIONS, RunLayerError, layer_input, run

__all__ = ["main"]


def _config(cfg: AccelConfig | None, m: int, k: int) -> AccelConfig:
    cfg = DEFAULT_CONFIG if cfg is None else cfg
    try:
        cfg.check_layer(m, k)
    except ValueError as e:
        raise RunLayerError(f"--config: the {m} x {k} layer does not fit: {e}") from None
    return cfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.run_layer", description=__doc__.split(
        "\n\n")[0])
    src = ap.add_argument_group("the layer")
    src.add_argument("--checkpoint", type=Path, help="model checkpoint (HF directory, .gguf, "
                                                     ".npz)")
    src.add_argument("--layer", type=int, help="layer index (with --checkpoint)")
    src.add_argument("--proj", help=f"projection: {', '.join(PROJECTIONS)}")
    src.add_argument("--weights", type=Path, help="an exported layer instead of a checkpoint")
    inp = ap.add_argument_group("its input")
    inp.add_argument("--prompt", help="text (byte-level models): the golden model's activations")
    inp.add_argument("--tokens-in", type=cli.token_ids,
                     help="token ids, e.g. 1,2,3: the golden model's activations")
    inp.add_argument("--acts", type=Path, help="activations from a file")
    inp.add_argument("--tokens", type=int, default=1,
                     help="rows of seeded random codes when no input is given (default 1)")
    inp.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=cli.accel_config,
                    help="engine AccelConfig as JSON text or a .json file "
                         f"(default: {DEFAULT_CONFIG.to_json()})")
    ap.add_argument("--fmax", type=cli.positive_float,
                    help="clock in MHz for the time at the clock (default: "
                         "build/ice40/report.json)")
    ap.add_argument("--json", type=cli.output_file,
                    help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    # -- argument checks, before any long work --------------------------------------------
    if (args.checkpoint is None) == (args.weights is None):
        ap.error("give exactly one of --checkpoint or --weights")
    if args.checkpoint is not None and (args.layer is None or args.proj is None):
        ap.error("--checkpoint needs --layer and --proj")
    if args.proj is not None and args.proj.removesuffix("_proj") not in PROJECTIONS:
        ap.error(f"--proj {args.proj!r}: want one of {', '.join(PROJECTIONS)}")
    given = [n for n in ("prompt", "tokens_in", "acts") if getattr(args, n) is not None]
    if len(given) > 1:
        ap.error("give at most one of --prompt, --tokens-in, --acts")
    if args.weights is not None and (args.prompt is not None or args.tokens_in is not None):
        ap.error("--prompt / --tokens-in need a --checkpoint (the golden model computes the "
                 "activations)")
    if not 1 <= args.tokens <= 65535:
        ap.error(f"--tokens {args.tokens}: want 1..65535")
    try:
        return _main(args)
    except RunLayerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _main(args) -> int:
    from model.checkpoint import CheckpointError, open_checkpoint
    from sim.build_report import DEFAULT_FMAX_MHZ, read_build
    from sim.native import NativeEngineError

    rng = np.random.default_rng(args.seed)
    what = ""
    try:
        if args.checkpoint is not None:
            reader = open_checkpoint(args.checkpoint)
            c = reader.config
            if not 0 <= args.layer < c.n_layers:
                raise RunLayerError(f"--layer {args.layer}: the model has layers "
                                    f"0..{c.n_layers - 1}")
            name = f"layers.{args.layer}.{PROJECTIONS[args.proj.removesuffix('_proj')]}.weight"
            what = f"{args.checkpoint} {name}"
            m, k = _shape(reader, name)
            config = _config(args.config, m, k)
            if args.prompt is not None or args.tokens_in is not None:
                if args.prompt is not None:
                    if c.vocab_size != 256:
                        raise RunLayerError(f"--prompt: the model is not byte-level (vocabulary "
                                            f"{c.vocab_size}); give --tokens-in")
                    ids = list(args.prompt.encode())
                else:
                    ids = args.tokens_in
                if not ids or len(ids) > c.max_seq:
                    raise RunLayerError(f"the prompt has {len(ids)} tokens; the model takes "
                                        f"1..{c.max_seq}")
                if min(ids) < 0 or max(ids) >= c.vocab_size:
                    raise RunLayerError(f"token ids must lie in [0, {c.vocab_size})")
                xq, trits = layer_input(reader, np.array(ids), name)
            else:
                trits = reader.ternary(name).trits
                xq = _codes(args, rng, k, config.act_bits)
        else:
            trits, _ = read_weights(args.weights)
            m, k = trits.shape
            what = str(args.weights)
            config = _config(args.config, m, k)
            xq = _codes(args, rng, k, config.act_bits)
    except CheckpointError as e:
        raise RunLayerError(str(e)) from None
    m, k = trits.shape
    build = read_build()
    if args.fmax is not None:
        fmax, source = args.fmax, "--fmax"
    elif build["fmax_mhz"]:
        fmax, source = build["fmax_mhz"], "build/ice40/report.json (the board's engine)"
    else:
        fmax, source = DEFAULT_FMAX_MHZ, "design target (no build report)"
    try:
        out = run(xq, trits, config, fmax, source)
    except NativeEngineError as e:
        raise RunLayerError(f"the simulated engine failed: {e}") from None
    out["layer"] = what
    print(f"layer     {what}: M={m} K={k}, {xq.shape[0]} token(s)")
    print(f"engine    {config.to_json()}")
    print(f"exact     all {xq.shape[0] * m} accumulators equal the golden model")
    print(f"cycles    {out['cycles']} (cycle model {out['model_cycles']}), "
          f"{out['beats_per_token']} beats per token")
    print(f"weights   {out['weight_bytes']} bytes streamed ({config.packing})")
    print(f"wall      {out['sim_seconds']:.2f} s simulating ({out['sim_cycles_per_s'] / 1e6:.2f} "
          f"M cycles/s), {out['call_seconds']:.2f} s the whole call, {out['pack_seconds']:.2f} s "
          "packing")
    print(f"at clock  {out['seconds_at_clock'] * 1e3:.3f} ms at {fmax:.2f} MHz ({source})")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


def _shape(reader, name):
    from model.transformer import param_shapes

    return param_shapes(reader.config)[name][0]


def _codes(args, rng, k: int, act_bits: int) -> np.ndarray:
    if args.acts is not None:
        return read_acts(args.acts, k, act_bits)
    lo = -(1 << (act_bits - 1))
    return rng.integers(lo, -lo, size=(args.tokens, k)).astype(np.int8)


if __name__ == "__main__":
    sys.exit(main())
