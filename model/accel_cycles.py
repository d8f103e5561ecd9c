"""Analytic cycle model of ``hw.engine.BitLinearEngine`` (pure Python, no Amaranth, no numpy).

Definition of the count
-----------------------
Number the clock cycles so that the ``cmd`` transfer (``cmd.valid & cmd.ready`` high at a rising
edge) happens in cycle 0. :func:`cycles` returns the number of the cycle in which the command's
final ``result`` transfer happens, i.e. the number of rising edges from the ``cmd`` transfer edge
to the final ``result`` transfer edge. It holds when the streams never stall: ``act`` and
``weights`` are valid from cycle 0 on (or earlier) with their next item presented every cycle
the engine takes one, and ``result.ready`` is high throughout. The engine is idle before the
command (it has finished any previous one); the next command can transfer in the cycle after.

Model
-----
With ``KT = ceil(K/C)``, ``MT = ceil(M/R)``, ``S = 2`` (``START_LATENCY``: the command's
checks are registered in cycle 0 and decided in cycle 1, its first beat is taken in cycle 2)
and ``L = adder_stages + 2`` (pipeline latency: one issue register that finishes the weight
decoding and holds the activation chunk, then the ``adder_stages`` tree registers, then the
accumulator), the engine takes one weight beat per cycle from cycle ``S`` on and issues it to
the array one cycle later. The ``N = tokens * MT`` row tiles finish in order; tile ``i``
delivers ``n_i`` results (``R``, except ``M - (MT-1) R`` for the last row tile of each token).
Tile 0's accumulators are copied to the drain bank in cycle ``E_0 = S + KT + L`` and its
results transfer in cycles ``E_0 + 1 .. E_0 + n_0``. Tile ``i + 1`` completes ``KT`` beats
later, but its copy waits until the drain bank is free, so ``E_{i+1} = E_i + max(KT, n_i)``. Hence::

    cycles = S + L + KT + sum_{i < N-1} max(KT, n_i) + n_{N-1}

The array stalls ``max(0, n_i - KT)`` cycles per row tile: only when a tile has more rows than
the layer has column tiles (``ceil(K/C) < rows``); otherwise it takes one beat every cycle.

With ``T = tokens_per_beat > 1`` the tokens go in groups of ``T`` (the last group holds the
rest), one pass of the ``MT x KT`` beats per group, and tile ``i`` of a group of ``g`` tokens
delivers ``n_i = g x rows`` results (``model.packing.result_order``); the recurrence and the
sum are the same, over ``N = groups * MT`` tiles. The array stalls when ``KT < T x rows``.
"""

from __future__ import annotations

from .accel import AccelConfig

__all__ = ["cycles", "ideal_cycles", "tile_cycles", "stall_cycles", "array_latency",
           "pipeline_latency", "ISSUE_LATENCY", "START_LATENCY"]

#: Extra cycles before a command's first beat can issue: the engine registers the command's
#: checks in its transfer cycle, decides in the next and takes the first beat in the one after
#: (first beat issued in cycle ``START_LATENCY + 1``).
START_LATENCY = 2
#: Registers between the issue of a weight beat and the MAC array (``hw.engine`` issue stage).
ISSUE_LATENCY = 1


def array_latency(config: AccelConfig) -> int:
    """Cycles from a beat entering the MAC array to its effect in the accumulators."""
    return config.adder_stages + 1


def pipeline_latency(config: AccelConfig) -> int:
    """Cycles from the issue of a weight beat to its effect in the accumulators (``L``)."""
    return ISSUE_LATENCY + array_latency(config)


def _check(config: AccelConfig, m: int, k: int, tokens: int) -> None:
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config must be an AccelConfig, got {type(config).__name__}")
    config.check_layer(m, k)
    if not isinstance(tokens, int) or tokens < 1 or tokens > 65535:
        raise ValueError(f"tokens must be an int in [1, 65535], got {tokens!r}")


def _tile_results(config: AccelConfig, m: int, tokens: int) -> list[int]:
    """Results of every row tile of a command, in stream order: ``g * n_i`` for tile ``i``
    of a group of ``g`` tokens (``model.packing.result_order``)."""
    mt, r = config.m_tiles(m), config.rows
    rows = [r] * (mt - 1) + [m - (mt - 1) * r]
    return [g * n for g in config.token_groups(tokens) for n in rows]


def stall_cycles(config: AccelConfig, m: int, k: int, tokens: int = 1) -> int:
    """Cycles the array waits for the drain bank during one command (0 if ``KT >= T * rows``)."""
    _check(config, m, k, tokens)
    kt = config.k_tiles(k)
    # the final tile's results drain after the last beat and are not a stall
    return sum(max(0, n - kt) for n in _tile_results(config, m, tokens)[:-1])


def cycles(config: AccelConfig, m: int, k: int, tokens: int = 1) -> int:
    """Exact cycle count of one command with unstalled streams (see the module docstring).

    Parameters
    ----------
    config : AccelConfig
        The engine configuration.
    m, k : int
        Layer shape (``M`` outputs, ``K`` inputs); must fit ``config``.
    tokens : int
        Tokens processed by the command.

    Returns
    -------
    int
        Cycles from the ``cmd`` transfer to the final ``result`` transfer.
    """
    _check(config, m, k, tokens)
    kt, mt, r = config.k_tiles(k), config.m_tiles(m), config.rows
    fill = START_LATENCY + pipeline_latency(config)
    if config.tokens_per_beat == 1:
        # the closed form of the recurrence (equal to the general sum below)
        tail_rows = m - (mt - 1) * r
        per_token = (mt - 1) * max(kt, r) + max(kt, tail_rows)
        return fill + kt + tokens * per_token - max(kt, tail_rows) + tail_rows
    res = _tile_results(config, m, tokens)
    return fill + kt + sum(max(kt, n) for n in res[:-1]) + res[-1]


def ideal_cycles(config: AccelConfig, m: int, k: int, tokens: int = 1) -> int:
    """Weight beats of the command: the cycle count of a stall-free, zero-latency engine (one
    pass of the layer per group of ``T`` tokens)."""
    _check(config, m, k, tokens)
    return len(config.token_groups(tokens)) * config.beats(m, k)


def tile_cycles(config: AccelConfig, beats, rows) -> int:
    """Cycle count of the recurrence of the module docstring with any beats per row tile.

    ``beats[i]`` weight beats and ``rows[i]`` results for row tile ``i`` (in stream order,
    all tokens; with ``T > 1`` a tile's results are its rows times its group's tokens):
    ``E_0 = S + L + beats[0]``, ``E_{i+1} = E_i + max(beats[i+1], rows[i])``,
    the count is ``E_{N-1} + rows[N-1]``. With ``beats[i] = ceil(K/C)`` it is :func:`cycles`
    (the count the engine is tested against). With fewer beats in a tile it is the count an
    engine that leaves out the beats of zero activation chunks (``model.packing.zero_chunks``)
    would take at one beat per cycle, a tile of no beats costing only its drain; that engine
    is not built yet (issue 18), so this is a projection for choosing its shape.
    """
    if not isinstance(config, AccelConfig):
        raise TypeError(f"config must be an AccelConfig, got {type(config).__name__}")
    beats, rows = list(beats), list(rows)
    if not beats or len(beats) != len(rows):
        raise ValueError(f"need one beat count per row tile: {len(beats)} beats, "
                         f"{len(rows)} rows")
    kt_max = config.k_tiles(config.max_k)
    for b, n in zip(beats, rows, strict=True):
        if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b <= kt_max:
            raise ValueError(f"beats per tile must be ints in [0, {kt_max}], got {b!r}")
        if (not isinstance(n, int) or isinstance(n, bool)
                or not 1 <= n <= config.rows * config.tokens_per_beat):
            raise ValueError(f"results per tile must be ints in "
                             f"[1, {config.rows * config.tokens_per_beat}], got {n!r}")
    e = START_LATENCY + pipeline_latency(config) + beats[0]
    for b, n in zip(beats[1:], rows[:-1], strict=True):
        e += max(b, n)
    return e + rows[-1]
