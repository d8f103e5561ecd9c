"""Spec-derived helpers the testbenches share (independent of ``hw/``).

:func:`pack_trits` re-implements the byte packings of ``docs/architecture.md`` section 3 from the
text, so the cocotb tests cross-check ``model.packing`` against a second reading of the spec.
The golden *results* come from ``model/`` (see :mod:`sim.cocotb_engine`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["TQ1_VALID", "TQ1_INVALID", "pack_trits", "trit_from_code", "beats_of_layer"]

#: Byte values the tq1 encoder produces (``ceil(q * 256 / 243)``) and the 13 it never produces.
TQ1_VALID = sorted({-(-(q * 256) // 243) for q in range(243)})
TQ1_INVALID = sorted(set(range(256)) - set(TQ1_VALID))


def pack_trits(trits, packing: str) -> np.ndarray:
    """Pack a flat int8 trit sequence (padded with 0 trits to whole bytes) into uint8 bytes."""
    t = np.asarray(trits, dtype=np.int64).reshape(-1)
    if t.size and (t.min() < -1 or t.max() > 1):
        raise ValueError("trits must be in {-1, 0, 1}")
    per = {"i2": 4, "tq1": 5}[packing]
    n = -(-t.size // per)
    d = np.ones(n * per, dtype=np.int64)
    d[:t.size] = t + 1
    d = d.reshape(n, per)
    if packing == "i2":
        out = d[:, 0] | d[:, 1] << 2 | d[:, 2] << 4 | d[:, 3] << 6
    else:
        q = 81 * d[:, 0] + 27 * d[:, 1] + 9 * d[:, 2] + 3 * d[:, 3] + d[:, 4]
        out = -(-(q * 256) // 243)
    return out.astype(np.uint8)


def trit_from_code(code: int) -> int | None:
    """Datapath code (``nz`` bit 0, ``neg`` bit 1) -> trit; ``None`` for the invalid code."""
    return {0b00: 0, 0b01: 1, 0b11: -1}.get(int(code))


def beats_of_layer(trits, rows: int, cols: int) -> np.ndarray:
    """Tile an ``M x K`` trit matrix into beats ``(m_tiles * k_tiles, rows * cols)`` in stream
    order (section 4: ``for mt: for kt``, beat trit ``r * cols + c``), zero-padded."""
    w = np.asarray(trits, dtype=np.int8)
    m, k = w.shape
    mt, kt = -(-m // rows), -(-k // cols)
    full = np.zeros((mt * rows, kt * cols), dtype=np.int8)
    full[:m, :k] = w
    return full.reshape(mt, rows, kt, cols).transpose(0, 2, 1, 3).reshape(mt * kt, rows * cols)
