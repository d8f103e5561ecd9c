"""Trit byte packings and the engine's weight stream (``docs/architecture.md`` sections 3-4).

* **i2**: 4 trits per byte, trit ``4j+i`` in bits ``[2i+1:2i]`` as ``code = trit + 1``; code 3
  is invalid.
* **tq1**: 5 trits per byte, base 3 with the fixed-point byte ``ceil(q * 256 / 243)`` of llama.cpp's
  TQ1_0 ``qs`` encoding (gguf-py ``quants.py``); 13 byte values are never produced and are invalid.
* the weight stream: an ``M x K`` layer cut into ``R x C`` beats (see :func:`pack_layer_stream`).
* the Hugging Face BitNet checkpoint tensor layout (:func:`pack_i2_hf`).

Plain numpy; every decoder rejects invalid input with a ``ValueError`` naming the byte offset.
"""

from __future__ import annotations

import numpy as np

from model.accel import TRITS_PER_BYTE, AccelConfig

__all__ = [
    "TQ1_VALID_BYTES", "TritStreamDecoder", "act_stream", "decode_tq1_byte", "encode_tq1_digits",
    "pack_i2", "pack_i2_hf", "pack_layer_stream", "pack_tq1", "pack_trits", "tq1_byte_is_valid",
    "result_order", "results_matrix", "unpack_i2", "unpack_i2_hf", "unpack_layer_stream",
    "unpack_tq1", "unpack_trits", "validate_trits", "zero_chunks", "zero_row_tiles",
]


def validate_trits(trits, *, ndim: int | None = None, name: str = "trits") -> np.ndarray:
    """Return ``trits`` as an int8 array after checking it holds integers in {-1, 0, 1}.

    Raises ``TypeError`` for a non-integer dtype (bool and float are rejected) and
    ``ValueError`` for a wrong number of dimensions or a value outside {-1, 0, 1}.
    """
    a = np.asarray(trits)
    if a.size == 0 and a.dtype == np.float64:  # an empty list
        a = a.astype(np.int8)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.size and (a.min() < -1 or a.max() > 1):   # two SIMD reductions, no temporaries
        bad = np.flatnonzero((a.reshape(-1) < -1) | (a.reshape(-1) > 1))
        if bad.size:
            idx = np.unravel_index(int(bad[0]), a.shape)
            raise ValueError(f"{name} must be in {{-1, 0, 1}}; {name}[{', '.join(map(str, idx))}]"
                             f" = {int(a[idx])}")
    return a.astype(np.int8)


# ----------------------------------------------------------------------------------------------
# i2
# ----------------------------------------------------------------------------------------------
def pack_i2(trits) -> np.ndarray:
    """Pack a flat trit sequence, 4 per byte: trit ``4j+i`` in bits ``[2i+1:2i]`` as ``trit+1``.

    Parameters
    ----------
    trits : array_like of int
        1-D values in {-1, 0, 1}. The last byte is padded with zero trits (code 1).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of ``ceil(n / 4)`` bytes.
    """
    t = validate_trits(trits, ndim=1)
    n = t.size
    nbytes = -(-n // 4)
    codes = np.ones(nbytes * 4, dtype=np.uint8)
    codes[:n] = (t + 1).astype(np.uint8)
    codes = codes.reshape(nbytes, 4)
    return (codes[:, 0] | (codes[:, 1] << 2) | (codes[:, 2] << 4) | (codes[:, 3] << 6)).astype(
        np.uint8)


def _as_bytes(data) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(data), dtype=np.uint8)
    a = np.asarray(data)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"packed data must be bytes or an integer array, got dtype {a.dtype}")
    a = a.reshape(-1)
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError("packed data values must lie in 0..255")
    return a.astype(np.uint8)


def _check_length(data: np.ndarray, n: int, per_byte: int) -> None:
    """``data`` must be exactly the ``ceil(n / per_byte)`` bytes of ``n`` trits."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    need = -(-int(n) // per_byte)
    if data.size < need:
        raise ValueError(f"short stream: {n} trits need {need} bytes, got {data.size} "
                         f"(missing from byte offset {data.size})")
    if data.size > need:
        raise ValueError(f"long stream: {n} trits need {need} bytes, got {data.size} "
                         f"(extra data from byte offset {need})")


def _check_padding(trits: np.ndarray, n: int, nbytes: int) -> None:
    """The pad trits after the first ``n`` (in the last of ``nbytes`` bytes) must be 0."""
    if np.any(trits[n:]):
        raise ValueError(f"non-zero pad trits in the last byte (offset {nbytes - 1})")


def unpack_i2(data, n: int) -> np.ndarray:
    """Decode ``n`` trits from i2 bytes (inverse of :func:`pack_i2`).

    ``data`` must be exactly ``ceil(n / 4)`` bytes with zero pad trits. Raises ``ValueError``
    naming the byte offset of the first code 3, or for a short or long stream or a non-zero pad.
    """
    b = _as_bytes(data)
    _check_length(b, n, 4)
    codes = np.stack([(b >> (2 * i)) & 3 for i in range(4)], axis=1).reshape(-1)
    bad = np.flatnonzero(codes == 3)
    if bad.size:
        off = int(bad[0]) // 4
        raise ValueError(f"invalid i2 code 3 at byte offset {off} (byte 0x{int(b[off]):02x}, "
                         f"trit {int(bad[0])})")
    trits = codes.astype(np.int8) - 1
    _check_padding(trits, int(n), b.size)
    return trits[:n]


# ----------------------------------------------------------------------------------------------
# tq1
# ----------------------------------------------------------------------------------------------
#: ``ceil(q * 256 / 243)`` for every group value ``q`` in 0..242.
_TQ1_BYTE = ((np.arange(243, dtype=np.int64) * 256 + 242) // 243).astype(np.uint8)


def encode_tq1_digits(digits) -> np.ndarray:
    """Bytes for base-3 digit groups ``(..., 5)`` (digit ``d_i = trit + 1``).

    ``q = 81 d0 + 27 d1 + 9 d2 + 3 d3 + d4`` and the byte is ``ceil(q * 256 / 243)``, computed in
    integers as ``(q * 256 + 242) // 243`` (llama.cpp TQ1_0 / gguf-py ``quants.py``).
    """
    d = np.asarray(digits)
    if d.size and (d.min() < 0 or d.max() > 2):
        raise ValueError("base-3 digits must be 0, 1 or 2")
    d = d.astype(np.uint8, copy=False)       # q <= 242 fits a byte: no wider temporaries
    q = (((d[..., 0] * 3 + d[..., 1]) * 3 + d[..., 2]) * 3 + d[..., 3]) * 3 + d[..., 4]
    return _TQ1_BYTE[q]


def decode_tq1_byte(b: int) -> tuple[int, int, int, int, int]:
    """Trits of one tq1 byte by shift-and-add digit extraction (no validity check).

    For digit ``i``: ``x = (b * 3**i) & 0xFF`` and ``d_i = (3 * x) >> 8``; multiplying by 3 is
    ``(x << 1) + x``, so this mirrors a multiplier-free hardware decoder. Returns the 5 trits
    ``d_i - 1``. Use :func:`tq1_byte_is_valid` to reject the 13 bytes the encoder never emits.
    """
    if not isinstance(b, (int, np.integer)) or not 0 <= int(b) <= 255:
        raise ValueError(f"tq1 byte must be an int in 0..255, got {b!r}")
    x = int(b)
    out = []
    for _ in range(5):
        x3 = (x << 1) + x          # 3 * x, shifts and adds only
        out.append((x3 >> 8) - 1)  # the digit is the integer part of 3 * x / 256
        x = x3 & 0xFF              # the fraction, i.e. (b * 3**(i+1)) mod 256
    return tuple(out)


def _tq1_tables():
    digits = np.array([[d + 1 for d in decode_tq1_byte(b)] for b in range(256)], dtype=np.int64)
    reenc = encode_tq1_digits(digits)
    valid = reenc == np.arange(256, dtype=np.uint8)
    return (digits - 1).astype(np.int8), valid


_TQ1_DECODE, _TQ1_VALID = _tq1_tables()
#: The 243 byte values the tq1 encoder produces (sorted); the other 13 are invalid.
TQ1_VALID_BYTES = frozenset(int(b) for b in np.flatnonzero(_TQ1_VALID))
#: The 13 byte values never produced by the tq1 encoder.
TQ1_INVALID_BYTES = tuple(int(b) for b in np.flatnonzero(~_TQ1_VALID))


def tq1_byte_is_valid(b: int) -> bool:
    """True if byte ``b`` is one of the 243 values :func:`pack_tq1` can produce.

    The check re-encodes the decoded digits and compares with ``b``.
    """
    digits = np.array([d + 1 for d in decode_tq1_byte(b)])
    return int(encode_tq1_digits(digits)) == int(b)


def pack_tq1(trits) -> np.ndarray:
    """Pack a flat trit sequence, 5 per byte, in the tq1 (TQ1_0 ``qs``) encoding.

    Parameters
    ----------
    trits : array_like of int
        1-D values in {-1, 0, 1}. The last byte is padded with zero trits (digit 1).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of ``ceil(n / 5)`` bytes.
    """
    t = validate_trits(trits, ndim=1)
    n = t.size
    nbytes = -(-n // 5)
    digits = np.ones(nbytes * 5, dtype=np.uint8)
    np.add(t.view(np.uint8), 1, out=digits[:n], dtype=np.uint8, casting="unsafe")  # -1 -> 0
    return encode_tq1_digits(digits.reshape(nbytes, 5))


def unpack_tq1(data, n: int) -> np.ndarray:
    """Decode ``n`` trits from tq1 bytes (inverse of :func:`pack_tq1`).

    ``data`` must be exactly ``ceil(n / 5)`` bytes with zero pad trits. Raises ``ValueError``
    naming the byte offset of the first invalid byte (one of :data:`TQ1_INVALID_BYTES`), or for
    a short or long stream or a non-zero pad.
    """
    b = _as_bytes(data)
    _check_length(b, n, 5)
    bad = np.flatnonzero(~_TQ1_VALID[b])
    if bad.size:
        off = int(bad[0])
        raise ValueError(f"invalid tq1 byte 0x{int(b[off]):02x} at byte offset {off}")
    trits = _TQ1_DECODE[b].reshape(-1)
    _check_padding(trits, int(n), b.size)
    return trits[:n].copy()


def pack_trits(trits, packing: str) -> np.ndarray:
    """Dispatch to :func:`pack_i2` or :func:`pack_tq1` by name."""
    if packing == "i2":
        return pack_i2(trits)
    if packing == "tq1":
        return pack_tq1(trits)
    raise ValueError(f"unknown packing {packing!r}; expected one of {tuple(TRITS_PER_BYTE)}")


def unpack_trits(data, n: int, packing: str) -> np.ndarray:
    """Dispatch to :func:`unpack_i2` or :func:`unpack_tq1` by name."""
    if packing == "i2":
        return unpack_i2(data, n)
    if packing == "tq1":
        return unpack_tq1(data, n)
    raise ValueError(f"unknown packing {packing!r}; expected one of {tuple(TRITS_PER_BYTE)}")


class TritStreamDecoder:
    """Incremental decoder of a packed flat trit stream, fed in arbitrary byte chunks.

    Parameters
    ----------
    packing : str
        ``"i2"`` or ``"tq1"``.

    Notes
    -----
    :meth:`feed` returns the trits of the bytes just received (every byte decodes on its own, so
    the chunking does not matter). Errors name the absolute byte offset in the whole stream.
    :meth:`finish` checks that the stream carried ``n_trits`` trits: the byte count must be
    exactly ``ceil(n_trits / trits_per_byte)`` and the pad trits of the last byte must be zero.
    """

    def __init__(self, packing: str):
        if packing not in TRITS_PER_BYTE:
            raise ValueError(f"unknown packing {packing!r}; expected one of "
                             f"{tuple(TRITS_PER_BYTE)}")
        self.packing = packing
        self.per_byte = TRITS_PER_BYTE[packing]
        self.offset = 0
        self._tail = np.zeros(0, dtype=np.int8)
        self._error: str | None = None

    def feed(self, chunk) -> np.ndarray:
        """Decode ``chunk`` (bytes or uint8 array); return its trits (int8, ``per_byte`` each).

        After an error the decoder stays failed: every later call raises the same error, so no
        later offset is counted from a stream with a hole in it."""
        if self._error is not None:
            raise ValueError(f"decoder stopped at an earlier error: {self._error}")
        try:
            return self._feed(chunk)
        except (TypeError, ValueError) as e:
            self._error = str(e)
            raise

    def _feed(self, chunk) -> np.ndarray:
        b = _as_bytes(chunk)
        try:
            trits = unpack_trits(b, b.size * self.per_byte, self.packing)
        except ValueError:
            # find the offending byte to report its absolute offset
            for i, v in enumerate(b):
                ok = (tq1_byte_is_valid(int(v)) if self.packing == "tq1"
                      else all(((int(v) >> (2 * j)) & 3) != 3 for j in range(4)))
                if not ok:
                    raise ValueError(f"invalid {self.packing} byte 0x{int(v):02x} at byte offset "
                                     f"{self.offset + i}") from None
            raise
        self.offset += b.size
        if trits.size:
            self._tail = trits[-self.per_byte:]
        return trits

    def finish(self, n_trits: int) -> None:
        """Check that exactly ``n_trits`` trits (plus zero padding) were fed."""
        if self._error is not None:
            raise ValueError(f"decoder stopped at an earlier error: {self._error}")
        if isinstance(n_trits, bool) or not isinstance(n_trits, (int, np.integer)) or n_trits < 0:
            raise ValueError(f"n_trits must be an int >= 0, got {n_trits!r}")
        need = -(-int(n_trits) // self.per_byte)
        if self.offset < need:
            raise ValueError(f"short stream: {n_trits} trits need {need} bytes, got "
                             f"{self.offset}")
        if self.offset > need:
            raise ValueError(f"long stream: {n_trits} trits need {need} bytes, got {self.offset} "
                             f"(extra data from byte offset {need})")
        pad = need * self.per_byte - int(n_trits)
        if pad and np.any(self._tail[self.per_byte - pad:]):
            raise ValueError(f"non-zero pad trits in the last byte (offset {need - 1})")


# ----------------------------------------------------------------------------------------------
# weight stream
# ----------------------------------------------------------------------------------------------
def _check_config(config) -> AccelConfig:
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config must be an AccelConfig, got {type(config).__name__}")
    return config


def layer_tiles(W, config: AccelConfig) -> np.ndarray:
    """The beats of ``W`` as trits, shape ``(beats, R * C)`` (section 4 order, zero padding)."""
    cfg = _check_config(config)
    t = validate_trits(W, ndim=2, name="W")
    m, k = t.shape
    cfg.check_layer(m, k)
    R, C = cfg.rows, cfg.cols
    mt, kt = cfg.m_tiles(m), cfg.k_tiles(k)
    padded = np.zeros((mt * R, kt * C), dtype=np.int8)
    padded[:m, :k] = t
    # (mt, R, kt, C) -> (mt, kt, R, C): beat (mt, kt), trit r*C + c
    return padded.reshape(mt, R, kt, C).transpose(0, 2, 1, 3).reshape(mt * kt, R * C)


def pack_layer_stream(W, config: AccelConfig) -> np.ndarray:
    """Pack an ``M x K`` trit matrix into the engine's weight stream.

    Beat ``(mt, kt)`` (in order ``for mt: for kt``) holds trit ``t = r*C + c`` =
    ``W[mt*R + r, kt*C + c]`` (0 outside ``W``), packed with ``config.packing`` into
    ``config.bytes_per_beat`` bytes (trailing pad trits 0).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(config.beats(M, K), config.bytes_per_beat)``.

    Raises
    ------
    TypeError, ValueError
        ``W`` not a 2-D integer array in {-1, 0, 1}, or ``M x K`` not fitting ``config``.
    """
    cfg = _check_config(config)
    tiles = layer_tiles(W, cfg)
    per = cfg.trits_per_byte
    bpb = cfg.bytes_per_beat
    flat = np.zeros((tiles.shape[0], bpb * per), dtype=np.int8)
    flat[:, :tiles.shape[1]] = tiles
    return pack_trits(flat.reshape(-1), cfg.packing).reshape(tiles.shape[0], bpb)


def unpack_layer_stream(stream, config: AccelConfig, m: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_layer_stream`: the ``(m, k)`` int8 trit matrix.

    Raises ``ValueError`` for a wrong stream shape, an invalid byte (offset counted in the
    flattened stream) or a non-zero padding trit.
    """
    cfg = _check_config(config)
    cfg.check_layer(m, k)
    s = np.asarray(stream)
    want = (cfg.beats(m, k), cfg.bytes_per_beat)
    if s.shape != want:
        raise ValueError(f"stream shape {s.shape} != expected {want} for {m}x{k}")
    R, C = cfg.rows, cfg.cols
    per_beat = cfg.bytes_per_beat * cfg.trits_per_byte
    trits = unpack_trits(s.reshape(-1), s.size * cfg.trits_per_byte, cfg.packing)
    beats = trits.reshape(want[0], per_beat)
    if np.any(beats[:, R * C:]):
        b = int(np.flatnonzero(np.any(beats[:, R * C:], axis=1))[0])
        raise ValueError(f"non-zero pad trit at the end of beat {b}")
    mt, kt = cfg.m_tiles(m), cfg.k_tiles(k)
    full = beats[:, :R * C].reshape(mt, kt, R, C).transpose(0, 2, 1, 3).reshape(mt * R, kt * C)
    if np.any(full[m:, :]) or np.any(full[:, k:]):
        raise ValueError("non-zero trit outside the layer in an edge tile")
    return full[:m, :k].copy()


def act_stream(xq, config: AccelConfig, pad_rng=None) -> np.ndarray:
    """The engine's ``act`` stream of one command: ``(transfers, act_lanes)`` int64 codes.

    ``xq`` is the ``(tokens, K)`` code matrix. The tokens go in groups of
    ``T = config.tokens_per_beat`` (:meth:`AccelConfig.token_groups`); for each group the stream
    holds ``ceil(K/C)`` transfers, transfer ``kt`` carrying chunk ``kt`` of the group's token
    ``j`` (``xq[t, kt*C:(kt+1)*C]``) in lanes ``j*C .. j*C + C-1``. With ``T = 1`` that is one
    chunk per transfer, token after token. Lanes past ``K``, and the lanes of the tokens a last,
    smaller group does not have, are ignored by the engine: 0, or random codes from ``pad_rng``
    (a ``numpy.random.Generator``) to show that they are ignored.
    """
    cfg = _check_config(config)
    x = np.asarray(xq)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"xq must be a 2-D integer array, got {x.dtype} {x.shape}")
    n, k = x.shape
    T, C, kt = cfg.tokens_per_beat, cfg.cols, cfg.k_tiles(k)
    groups = -(-n // T)
    lo = -(1 << (cfg.act_bits - 1))
    if pad_rng is None:
        full = np.zeros((groups * T, kt * C), dtype=np.int64)
    else:
        full = pad_rng.integers(lo, -lo, size=(groups * T, kt * C), dtype=np.int64)
    full[:n, :k] = x
    # (group, token in group, kt, lane) -> (group, kt, token in group, lane)
    return (full.reshape(groups, T, kt, C).transpose(0, 2, 1, 3)
            .reshape(groups * kt, T * C))


def result_order(config: AccelConfig, m: int, tokens: int) -> np.ndarray:
    """Which ``(token, row)`` each ``result`` of one command is, in stream order, and its
    ``last`` flag: ``(tokens * m, 3)`` int64 columns token, row, last.

    Per group of ``T`` tokens (:meth:`AccelConfig.token_groups`), row tile by row tile, the
    group's tokens one after the other, each with the tile's rows in order; ``last`` marks the
    final result of each group. With ``T = 1`` that is every token's ``m`` rows in order,
    ``last`` on each token's row ``m - 1``. ``acc[order[:, 0], order[:, 1]]`` is the stream of
    an ``acc`` matrix ``(tokens, m)``.
    """
    cfg = _check_config(config)
    if not isinstance(m, int) or m < 1 or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"need m >= 1 and tokens >= 1, got m={m!r}, tokens={tokens!r}")
    R = cfg.rows
    out = []
    start = 0
    for g in cfg.token_groups(tokens):
        for r0 in range(0, m, R):
            rows = np.arange(r0, min(r0 + R, m))
            for t in range(start, start + g):
                out.append(np.stack([np.full(rows.size, t), rows, np.zeros_like(rows)], axis=1))
        out[-1][-1, 2] = 1
        start += g
    return np.concatenate(out).astype(np.int64)


def results_matrix(results, config: AccelConfig, m: int, tokens: int) -> np.ndarray:
    """The ``(tokens, m)`` int32 matrix of one command's ``results`` (accumulators in stream
    order, :func:`result_order`)."""
    order = result_order(config, m, tokens)
    got = np.asarray(results)
    if got.shape != (order.shape[0],):
        raise ValueError(f"need {order.shape[0]} results, got shape {got.shape}")
    acc = np.zeros((tokens, m), np.int32)
    acc[order[:, 0], order[:, 1]] = got
    return acc


def zero_chunks(xq, config: AccelConfig) -> np.ndarray:
    """Which activation chunks are all zero: ``bool`` of shape ``(tokens, ceil(K/C))``.

    ``xq`` is the ``(tokens, K)`` integer code matrix of one command; chunk ``kt`` of token
    ``t`` is ``xq[t, kt*C:(kt+1)*C]`` (the lanes past ``K`` of the last chunk count as zero, as
    the engine ignores them). Every weight beat ``(mt, kt)`` of such a chunk adds nothing to any
    accumulator, so a reader may leave it out (issue 18, docs/golden-model.md).
    """
    cfg = _check_config(config)
    x = np.asarray(xq)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"xq must be a 2-D integer array, got {x.dtype} {x.shape}")
    t, k = x.shape
    kt = cfg.k_tiles(k)
    padded = np.zeros((t, kt * cfg.cols), dtype=bool)
    padded[:, :k] = x != 0
    return ~padded.reshape(t, kt, cfg.cols).any(axis=2)


def zero_row_tiles(rows_zero, config: AccelConfig) -> np.ndarray:
    """Which row tiles are wholly marked: ``bool`` of shape ``(tokens, ceil(M/R))``.

    ``rows_zero`` is a ``(tokens, M)`` boolean matrix marking rows whose results are not needed
    (e.g. the up projection's rows where the gate's accumulator is ``<= 0``, so ``ReLU^2`` of
    the gate is 0 and the row's product with it is 0 whatever the up row gives); the rows
    past ``M`` of the last tile count as marked.
    """
    cfg = _check_config(config)
    z = np.asarray(rows_zero)
    if z.ndim != 2 or z.dtype != bool:
        raise ValueError(f"rows_zero must be a 2-D bool array, got {z.dtype} {z.shape}")
    t, m = z.shape
    mt = cfg.m_tiles(m)
    padded = np.ones((t, mt * cfg.rows), dtype=bool)
    padded[:, :m] = z
    return padded.reshape(t, mt, cfg.rows).all(axis=2)


# ----------------------------------------------------------------------------------------------
# Hugging Face BitNet checkpoint layout
# ----------------------------------------------------------------------------------------------
def pack_i2_hf(W) -> np.ndarray:
    """Pack a trit tensor in the Hugging Face transformers BitNet layout.

    ``W`` of shape ``(M, ...)`` becomes ``uint8`` of shape ``(ceil(M/4), ...)``: with
    ``R = ceil(M/4)``, packed row ``j`` holds trit rows ``j, j+R, j+2R, j+3R`` in bits
    ``[1:0], [3:2], [5:4], [7:6]`` as ``trit + 1``; missing rows are code 0 (as the reference
    leaves the zero-initialised bits). Same layout as ``pack_weights`` / ``unpack_weights`` in
    ``src/transformers/integrations/bitnet.py`` (``VALUES_PER_ITEM = 4``).
    """
    t = np.asarray(W)
    if t.ndim < 1:
        raise ValueError("W must have at least one dimension")
    t = validate_trits(t, ndim=t.ndim, name="W")
    m = t.shape[0]
    rows = -(-m // 4)
    out = np.zeros((rows, *t.shape[1:]), dtype=np.uint8)
    for i in range(4):
        part = t[i * rows:(i + 1) * rows]
        out[:part.shape[0]] |= ((part + 1).astype(np.uint8) << (2 * i)).astype(np.uint8)
    return out


def unpack_i2_hf(packed, m: int) -> np.ndarray:
    """Inverse of :func:`pack_i2_hf`: the first ``m`` trit rows (int8).

    Raises ``ValueError`` for code 3 in a used row (naming the packed row/element) or for a
    packed tensor with the wrong number of rows.
    """
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"packed must be uint8, got {p.dtype}")
    rows = -(-int(m) // 4)
    if m < 1 or p.ndim < 1 or p.shape[0] != rows:
        raise ValueError(f"packed has {p.shape[0] if p.ndim else 0} rows, {m} trit rows need "
                         f"{rows}")
    codes = np.concatenate([(p >> (2 * i)) & 3 for i in range(4)], axis=0)[:m]
    if codes.max(initial=0) == 3:
        bad = np.argwhere(codes == 3)
        r = int(bad[0][0])
        rest = tuple(int(v) for v in bad[0][1:])
        raise ValueError(f"invalid i2 code 3 for trit row {r} (packed row {r % rows}, "
                         f"bits {2 * (r // rows) + 1}:{2 * (r // rows)}, index {rest})")
    return codes.astype(np.int8) - 1
