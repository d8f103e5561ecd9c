"""Whole-model inference through a simulated engine, checked against the golden model.

:func:`prepare` checks a run's inputs before any long work (:class:`RunModelError` names what
is wrong); :func:`execute` generates with the pure golden model, with the golden reference hook
and with the backend (:mod:`sim.backends`, or :mod:`sim.cosim` for the cocotb ones), asserts
that the tokens, every BitLinear accumulator and every call's cycles are equal
(:mod:`sim.compare`) and returns the figures (:func:`summarize`): cycles per token, weight bytes
streamed per token and tokens/s at the Fmax of the build report (:mod:`sim.build_report`) or a
given one. :func:`run` is both.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from model.accel import AccelConfig
from sim.backends import BACKENDS, DEFAULT_BACKEND, in_process_backend
from sim.build_report import DEFAULT_FMAX_MHZ, REPORT, read_build
from sim.compare import check_cycles, compare
from sim.cosim import run_cosim
from sim.generation import GenerationResult, generate, generate_pure
from sim.progress import Progress

__all__ = [
    "DEFAULT_CHECKPOINT",
    "Prepared",
    "RunModelError",
    "check_engine_fits",
    "execute",
    "prepare",
    "run",
    "summarize",
]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "model" / "data" / "bitnet_kjv.npz"


def summarize(res: GenerationResult, config: AccelConfig, fmax_mhz: float | None,
              fmax_source: str, backend: str) -> dict:
    """Figures of a generation: cycles and weight bytes per token, tokens/s."""
    cyc = res.per_step("cycles")
    wb = res.per_step("weight_bytes")
    decode_cyc = cyc[1:] if len(cyc) > 1 else cyc
    out = {
        "backend": backend,
        "accel_config": config.to_dict(),
        "prompt_tokens": len(res.prompt),
        "generated_tokens": len(res.tokens),
        "bitlinear_calls": len(res.calls),
        "prefill_cycles": cyc[0],
        "cycles_per_token": float(np.mean(decode_cyc)),
        "weight_bytes_per_token": float(np.mean(wb[1:] if len(wb) > 1 else wb)),
        "fmax_mhz": fmax_mhz,
        "fmax_source": fmax_source,
        "wall_seconds": round(res.seconds, 2),
    }
    if fmax_mhz:
        out["tokens_per_s"] = fmax_mhz * 1e6 / out["cycles_per_token"]
    return out


class RunModelError(ValueError):
    """A bad input found before the run (the CLI prints it as one ``error:`` line)."""


@dataclasses.dataclass
class Prepared:
    """A checked run: the opened checkpoint, the prompt's tokens and the engine."""

    checkpoint: Path
    ck: object
    tokens: list[int]
    config: AccelConfig
    config_source: str
    build: dict


def prepare(checkpoint: Path, prompt: str | None, n_tokens: int, backend: str = DEFAULT_BACKEND,
            config: AccelConfig | None = None, report: Path = REPORT,
            token_ids: list[int] | None = None):
    """Check a run's inputs before any long work (a :class:`Prepared` run);
    :class:`RunModelError` names what is wrong."""
    from model import checkpoint as ckpt

    if backend not in BACKENDS:
        raise RunModelError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise RunModelError(f"--tokens must be >= 1, got {n_tokens!r}")
    build = read_build(report)
    # by default simulate the engine that was built, so that its clock applies to the cycles
    config_source = "the given config"
    if config is None:
        config, config_source = ((build["config"], f"the build in {report}") if build["config"]
                                 else (AccelConfig(), "AccelConfig() (no build report)"))
    try:
        ck = ckpt.open_checkpoint(checkpoint)
    except ckpt.CheckpointError as e:
        raise RunModelError(str(e)) from None
    c = ck.config
    if token_ids is not None:
        tokens = list(token_ids)
    elif c.vocab_size != 256:
        raise RunModelError(f"the model is not byte-level (vocabulary {c.vocab_size}): give "
                            "token ids (--tokens-in)")
    else:
        try:
            tokens = list(prompt.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise RunModelError(f"the prompt cannot be encoded as UTF-8 ({e.reason} at "
                                f"{e.start})") from None
    if not tokens:
        raise RunModelError("the prompt must not be empty")
    if min(tokens) < 0 or max(tokens) >= c.vocab_size:
        raise RunModelError(f"token ids must lie in [0, {c.vocab_size})")
    if len(tokens) + n_tokens > c.max_seq:
        raise RunModelError(f"prompt + tokens = {len(tokens) + n_tokens} exceeds the model's "
                            f"context of {c.max_seq}")
    check_engine_fits(config, c)
    return Prepared(Path(checkpoint), ck, tokens, config, config_source, build)


def check_engine_fits(config: AccelConfig, model_config) -> None:
    """:class:`RunModelError` unless the engine ``config`` takes every BitLinear layer of a
    model of shape ``model_config``."""
    from model.transformer import param_shapes

    for shape, is_bit in param_shapes(model_config).values():
        if is_bit:
            try:
                config.check_layer(*shape)
            except ValueError as e:
                raise RunModelError(f"the engine {config.slug} cannot run a {shape[0]} x "
                                    f"{shape[1]} layer of this model: {e}") from None


def run(checkpoint: Path, prompt: str | None, n_tokens: int, backend: str = DEFAULT_BACKEND,
        config: AccelConfig | None = None, fmax: float | None = None,
        report: Path = REPORT, quiet: bool = False, token_ids: list[int] | None = None) -> dict:
    """Run the golden reference and the backend, compare, and return the summary dict.

    The prompt is ``prompt`` as UTF-8 bytes (byte-level models) or ``token_ids``. The
    checkpoint is opened lazily (:func:`model.checkpoint.open_checkpoint`), so a 2B-class
    model runs a layer at a time. Bad inputs raise :class:`RunModelError` before any work."""
    return execute(prepare(checkpoint, prompt, n_tokens, backend, config, report, token_ids),
                   n_tokens, backend, fmax, report, quiet)


def execute(prep: Prepared, n_tokens: int, backend: str = DEFAULT_BACKEND,
            fmax: float | None = None, report: Path = REPORT, quiet: bool = False) -> dict:
    """The run of a :func:`prepare`-d input (see :func:`run`)."""
    checkpoint, ck, tokens = prep.checkpoint, prep.ck, prep.tokens
    config, config_source, build = prep.config, prep.config_source, prep.build
    pure = generate_pure(ck, tokens, n_tokens)
    ref = generate(ck, tokens, n_tokens, None, config)
    if ref.tokens != pure:
        raise AssertionError(f"golden with the exact hook {ref.tokens} != pure golden {pure}")
    if not quiet:
        print(f"golden reference: {n_tokens} tokens, {len(ref.calls)} BitLinear calls "
              f"({ref.seconds:.1f} s)", file=sys.stderr, flush=True)
    show = None if quiet else Progress(backend, n_tokens)
    if backend.startswith("cocotb-"):
        hw = run_cosim(checkpoint, tokens, n_tokens, config, path=backend.split("-", 1)[1],
                       progress=show)
    else:
        impl = in_process_backend(backend, config)
        try:
            hw = generate(ck, tokens, n_tokens, impl.matmul, config, show)
        finally:
            if hasattr(impl, "close"):
                impl.close()
    compare(ref, hw)
    if fmax is not None:
        fmax_mhz, source = fmax, "--fmax"
    elif build["fmax_mhz"] is not None and build["config"] == config:
        # a board top runs at its PLL clock (below its Fmax); a bare engine at its Fmax
        if build["clock_mhz"] is not None:
            fmax_mhz = min(build["clock_mhz"], build["fmax_mhz"])
            source = (f"the board clock of {report} (Fmax {build['fmax_mhz']:.2f} MHz, "
                      f"clock {build['clock_mhz']:.2f} MHz)")
        else:
            fmax_mhz, source = build["fmax_mhz"], f"the achieved Fmax in {report}"
    else:
        fmax_mhz = DEFAULT_FMAX_MHZ
        other = build["config"].slug if build["config"] else "?"
        why = (f"no build report at {report}" if build["fmax_mhz"] is None else
               f"{report} is of another engine ({other})")
        source = (f"{why}: the {DEFAULT_FMAX_MHZ:g} MHz design target, not a measured clock "
                  "(run python -m hw.build for this config or pass --fmax)")
    out = summarize(hw, config, fmax_mhz, source, backend)
    out["config_source"] = config_source
    out["text"] = (hw.text() if ck.config.vocab_size == 256
                   else ",".join(str(t) for t in hw.tokens))
    out["golden_equal"] = True
    # the simulated backends measure cycles: they must equal the cycle model for every call
    out["cycles_equal_model"] = check_cycles(hw, config)
    return out
