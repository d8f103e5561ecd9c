"""The comparison of a backend's run with the golden reference: tokens, accumulators, cycles."""

from __future__ import annotations

import numpy as np

from model.accel import AccelConfig
from model.accel_cycles import cycles
from sim.generation import GenerationResult

__all__ = ["check_cycles", "compare"]


def compare(ref: GenerationResult, hw: GenerationResult) -> None:
    """Assert equal tokens and equal accumulators of every BitLinear call, in order."""
    if len(ref.calls) != len(hw.calls):
        raise AssertionError(f"{len(hw.calls)} BitLinear calls, golden made {len(ref.calls)}")
    for i, (a, b) in enumerate(zip(ref.calls, hw.calls, strict=True)):
        if a.name != b.name or a.acc.shape != b.acc.shape or not np.array_equal(a.acc, b.acc):
            bad = np.argwhere(a.acc != b.acc) if a.acc.shape == b.acc.shape else []
            raise AssertionError(
                f"call {i} (step {a.step}, {a.name}): hardware accumulators differ from the "
                f"golden model ({len(bad)} differences, first at {bad[:1].tolist()})")
    if ref.tokens != hw.tokens:
        raise AssertionError(f"tokens differ: golden {ref.tokens} hardware {hw.tokens}")


def check_cycles(res: GenerationResult, config: AccelConfig) -> bool:
    """Assert that every call took ``model.accel_cycles.cycles`` cycles; ``True`` if so."""
    off = [c for c in res.calls if c.cycles != cycles(config, c.m, c.k, c.tokens)]
    if off:
        c = off[0]
        raise AssertionError(f"{len(off)} calls took other than model.accel_cycles.cycles, e.g. "
                             f"{c.name} M={c.m} K={c.k} T={c.tokens}: {c.cycles} cycles, model "
                             f"{cycles(config, c.m, c.k, c.tokens)}")
    return True
