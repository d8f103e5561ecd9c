"""Greedy generation and forward passes with every BitLinear through a backend, recorded.

The golden model (:mod:`model.transformer`) runs the network; its ``matmul`` hook hands every
BitLinear integer product ``acc = xq @ trits.T`` to a backend ``(name, xq, trits) -> (acc,
cycles)`` (:mod:`sim.backends`) and records the call (:class:`CallRecord`). A
:class:`GenerationResult` holds the tokens and the calls; :func:`save_result` /
:func:`load_result` carry it from the simulator process (:mod:`sim.tb.run_model`) to the host.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

import numpy as np

from model.accel import AccelConfig
from sim.backends import GoldenBackend

__all__ = [
    "CallRecord",
    "GenerationResult",
    "generate",
    "generate_pure",
    "load_result",
    "run_forward",
    "save_result",
]


@dataclasses.dataclass
class CallRecord:
    """One BitLinear call: which layer, its size, the accumulators and what it cost."""

    step: int
    name: str
    m: int
    k: int
    tokens: int
    acc: np.ndarray
    cycles: int
    weight_bytes: int


@dataclasses.dataclass
class GenerationResult:
    """Tokens and per-call records of one generation."""

    prompt: list[int]
    tokens: list[int]
    calls: list[CallRecord]
    seconds: float

    def text(self) -> str:
        """The tokens as the text of a byte-level model."""
        return bytes(self.tokens).decode("utf-8", errors="replace")

    def per_step(self, key: str) -> list[int]:
        steps = sorted({c.step for c in self.calls})
        return [sum(getattr(c, key) for c in self.calls if c.step == s) for s in steps]


def _recording_hook(backend, config: AccelConfig, calls: list[CallRecord], state: dict,
                    progress=None):
    on_call = getattr(progress, "call", None)

    def hook(name, xq, trits):
        acc, cyc = backend(name, xq, trits)
        m, k = trits.shape
        calls.append(CallRecord(state["step"], name, m, k, xq.shape[0], np.array(acc, copy=True),
                                int(cyc), config.beats(m, k) * config.bytes_per_beat))
        if on_call is not None:
            on_call()
        return acc
    return hook


def generate(ck, prompt: list[int], n_tokens: int, backend: Callable | None,
             config: AccelConfig, progress: Callable[[int, int], None] | None = None
             ) -> GenerationResult:
    """Greedy generation with every BitLinear through ``backend(name, xq, trits)``.

    ``backend=None`` records the golden accumulators from the golden integer product (the
    reference the backends are compared with). ``progress(i, n)`` is called after every token;
    if it has a ``call()`` method (:class:`Progress`), that is called after every BitLinear.
    """
    calls: list[CallRecord] = []
    state = {"step": 0}
    if backend is None:
        backend = GoldenBackend(config).matmul
    model = ck.transformer(matmul=_recording_hook(backend, config, calls, state, progress))

    def on_token(i, _token):
        state["step"] = i + 1   # the BitLinear calls that follow feed token i
        if progress is not None:
            progress(i + 1, n_tokens)

    t0 = time.time()
    tokens = model.generate(list(prompt), n_tokens, on_token=on_token)
    return GenerationResult(list(prompt), tokens, calls, time.time() - t0)


def generate_pure(ck, prompt: list[int], n_tokens: int) -> list[int]:
    """Greedy tokens of the pure golden model (no ``matmul`` hook): ``Transformer.generate``."""
    return ck.transformer().generate(list(prompt), n_tokens)


def run_forward(ck, prompt: list[int], backend: Callable | None, config: AccelConfig,
                progress=None) -> GenerationResult:
    """One full forward pass over ``prompt`` (no KV cache) with every BitLinear through
    ``backend``; ``tokens`` are the greedy next-token predictions at every position."""
    calls: list[CallRecord] = []
    if backend is None:
        backend = GoldenBackend(config).matmul
    model = ck.transformer(matmul=_recording_hook(backend, config, calls, {"step": 0},
                                                  progress))
    t0 = time.time()
    logits = model.forward(np.asarray(prompt, dtype=np.int64))
    return GenerationResult(list(prompt), [int(t) for t in np.argmax(logits, axis=-1)], calls,
                            time.time() - t0)


def save_result(path, res: GenerationResult) -> None:
    """Write a :class:`GenerationResult` to ``path`` (``.npz``)."""
    meta = {"prompt": res.prompt, "tokens": res.tokens, "seconds": res.seconds,
            "calls": [{"step": c.step, "name": c.name, "m": c.m, "k": c.k, "tokens": c.tokens,
                       "cycles": c.cycles, "weight_bytes": c.weight_bytes} for c in res.calls]}
    arrays = {f"acc{i}": c.acc for i, c in enumerate(res.calls)}
    np.savez(path, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)


def load_result(path) -> GenerationResult:
    """Read what :func:`save_result` wrote."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes().decode())
        calls = [CallRecord(acc=z[f"acc{i}"], **c) for i, c in enumerate(meta["calls"])]
    return GenerationResult(meta["prompt"], meta["tokens"], calls, meta["seconds"])
