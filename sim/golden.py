"""The independent reference of the tests: a second reading of ``docs/architecture.md``.

The production code has one home for each piece of the spec (``model.packing`` for the byte
packings and the weight stream, ``model.bitlinear.ternary_matmul`` for the integer product). The
tests check those homes, and the hardware, against this module, which is written from the text
of ``docs/architecture.md`` sections 2-4 and imports nothing from ``model/`` or ``hw/``:

* :func:`pack_trits`: the ``i2`` and ``tq1`` byte packings of a flat trit sequence (section 3);
* :data:`TQ1_VALID` / :data:`TQ1_INVALID`: the 243 bytes the tq1 encoder produces and the 13 it
  never produces;
* :func:`trit_from_code`: the 2-bit datapath code (section 2);
* :func:`beats_of_layer` / :func:`layer_stream`: the tiling of an ``M x K`` layer into ``R x C``
  beats and the packed weight stream (section 4);
* :func:`exact_acc`: ``acc = xq @ trits.T`` in int64.

Every test that needs a second reading imports it from here; none keeps its own copy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TQ1_VALID", "TQ1_INVALID", "pack_trits", "trit_from_code", "beats_of_layer",
           "layer_stream", "exact_acc"]

#: Trits per byte, as section 3 states them.
_PER_BYTE = {"i2": 4, "tq1": 5}

#: Byte values the tq1 encoder produces (``ceil(q * 256 / 243)``) and the 13 it never produces.
TQ1_VALID = sorted({-(-(q * 256) // 243) for q in range(243)})
TQ1_INVALID = sorted(set(range(256)) - set(TQ1_VALID))


def pack_trits(trits, packing: str) -> np.ndarray:
    """Pack a flat trit sequence (padded with 0 trits to whole bytes) into uint8 bytes.

    ``i2``: trit ``4j+i`` in bits ``[2i+1:2i]`` of byte ``j`` as ``trit + 1``. ``tq1``: digits
    ``d_i = trit(5j+i) + 1``, ``q = 81 d_0 + 27 d_1 + 9 d_2 + 3 d_3 + d_4``, byte
    ``ceil(q * 256 / 243)``.
    """
    t = np.asarray(trits, dtype=np.int64).reshape(-1)
    if t.size and (t.min() < -1 or t.max() > 1):
        raise ValueError("trits must be in {-1, 0, 1}")
    per = _PER_BYTE[packing]
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


def layer_stream(trits, config) -> np.ndarray:
    """The weight stream of an ``M x K`` trit matrix for an engine of ``config`` (its ``rows``,
    ``cols`` and ``packing``): ``(beats, ceil(R*C / trits_per_byte))`` uint8, each beat of
    :func:`beats_of_layer` packed on its own with :func:`pack_trits` (section 4)."""
    tiles = beats_of_layer(trits, config.rows, config.cols)
    nbytes = -(-config.rows * config.cols // _PER_BYTE[config.packing])
    out = np.zeros((tiles.shape[0], nbytes), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        out[i] = pack_trits(tile, config.packing)
    return out


def exact_acc(xq, trits) -> np.ndarray:
    """``acc = xq @ trits.T`` in int64, ``(T, M)`` for ``xq (T, K)`` and ``trits (M, K)``."""
    return np.asarray(xq, dtype=np.int64) @ np.asarray(trits, dtype=np.int64).T
