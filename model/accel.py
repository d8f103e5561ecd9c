"""The accelerator configuration: one frozen, JSON-serializable source of truth.

Every layer of the project reads the same :class:`AccelConfig`: the RTL in ``hw/`` sizes its
ports and registers from it, ``model/`` packs weight streams for it, ``sim/`` builds one Verilator
directory per config, and the build reports print it. This module is plain Python (no Amaranth,
no numpy) so that any consumer can import it.

The weight-stream *beat* is the unit of work: ``rows x cols`` trits, the weights the MAC array
consumes in one cycle. See ``docs/architecture.md`` for the byte layout of a beat.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

__all__ = ["AccelConfig", "MAX_TOKENS_PER_BEAT", "PACKINGS", "TRITS_PER_BYTE", "PRESETS",
           "acc_bound", "acc_width_for", "tree_depth"]

#: Largest ``AccelConfig.tokens_per_beat`` (T copies of the MAC array; 64 is far beyond any
#: device this project builds for).
MAX_TOKENS_PER_BEAT = 64

#: Supported weight packings and how many trits one byte carries.
TRITS_PER_BYTE = {"i2": 4, "tq1": 5}
PACKINGS = tuple(TRITS_PER_BYTE)


def tree_depth(cols: int) -> int:
    """Adder levels of a binary tree over ``cols`` operands: ``ceil(log2(cols))``."""
    return math.ceil(math.log2(cols)) if cols > 1 else 0


def acc_bound(k: int, act_bits: int) -> int:
    """Largest possible ``|acc|`` of a ternary dot product of length ``k``.

    Activation codes lie in ``[-2**(b-1), 2**(b-1) - 1]`` and trits in ``{-1, 0, 1}``, so each term
    is at most ``2**(b-1)`` in magnitude (reached by ``-128 * -1`` for 8-bit codes) and
    ``|acc| <= k * 2**(b-1)``. The bound is tight: ``x = [-2**(b-1)] * k`` with all trits ``-1``
    reaches ``+k * 2**(b-1)``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if act_bits < 2:
        raise ValueError(f"act_bits must be >= 2, got {act_bits}")
    return k * (1 << (act_bits - 1))


def acc_width_for(k: int, act_bits: int) -> int:
    """Smallest two's complement width that holds every accumulator value for length ``k``.

    The range to hold is ``[-bound, +bound]`` with ``bound = acc_bound(k, act_bits)``; a signed
    ``w``-bit register holds ``[-2**(w-1), 2**(w-1) - 1]``, so ``w = bit_length(bound) + 1``.
    """
    return acc_bound(k, act_bits).bit_length() + 1


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of the BitLinear engine.

    Parameters
    ----------
    rows : int
        ``R``: output rows computed in parallel (accumulators in the MAC array).
    cols : int
        ``C``: lanes per row, i.e. activation codes consumed per cycle.
    act_bits : int
        Activation code width: 8 (BitNet b1.58) or 4 (BitNet a4.8).
    packing : str
        Weight-stream packing, ``"i2"`` (4 trits/byte) or ``"tq1"`` (5 trits/byte, base 3).
    max_k : int
        Largest input dimension ``K`` the engine accepts; sizes the activation buffer and, through
        :func:`acc_width_for`, the accumulators.
    max_m : int
        Largest output dimension ``M`` the engine accepts; sizes the row counters.
    adder_stages : int
        Pipeline registers inserted in each row's adder tree (0 = purely combinational tree).
    tokens_per_beat : int
        ``T``: tokens each weight beat is applied to (multi-token weight reuse). The engine holds
        ``T`` tokens' activations and ``T`` MAC arrays that share one decoded beat, so it does
        ``R x C x T`` MACs per weight read; a command's tokens go through in groups of ``T``
        (the last group may be smaller), one pass of the weight stream per group. ``1`` is the
        one-token engine. Stream formats: ``docs/architecture.md`` section 5.
    """

    rows: int = 4
    cols: int = 16
    act_bits: int = 8
    packing: str = "tq1"
    max_k: int = 1024
    max_m: int = 4096
    adder_stages: int = 1
    tokens_per_beat: int = 1

    def __post_init__(self):
        for name in ("rows", "cols", "max_k", "max_m"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"AccelConfig.{name} must be a positive int, got {value!r}")
        if self.act_bits not in (4, 8):
            raise ValueError(f"AccelConfig.act_bits must be 4 or 8, got {self.act_bits!r}")
        if self.packing not in TRITS_PER_BYTE:
            raise ValueError(
                f"AccelConfig.packing must be one of {PACKINGS}, got {self.packing!r}")
        if (not isinstance(self.adder_stages, int) or isinstance(self.adder_stages, bool)
                or self.adder_stages < 0):
            raise ValueError(
                f"AccelConfig.adder_stages must be an int >= 0, got {self.adder_stages!r}")
        if self.adder_stages > self.tree_depth:
            raise ValueError(
                f"AccelConfig.adder_stages={self.adder_stages} exceeds the adder tree depth "
                f"{self.tree_depth} for cols={self.cols}")
        if (not isinstance(self.tokens_per_beat, int) or isinstance(self.tokens_per_beat, bool)
                or not 1 <= self.tokens_per_beat <= MAX_TOKENS_PER_BEAT):
            raise ValueError(f"AccelConfig.tokens_per_beat must be an int in "
                             f"[1, {MAX_TOKENS_PER_BEAT}], got {self.tokens_per_beat!r}")
        if self.max_k > 65535 or self.max_m > 65535:
            raise ValueError("AccelConfig.max_k and max_m must be <= 65535 (16-bit counters)")

    # -- derived quantities --------------------------------------------------------------------
    @property
    def macs_per_cycle(self) -> int:
        """Ternary multiply-accumulates per cycle: ``rows * cols * tokens_per_beat``."""
        return self.rows * self.cols * self.tokens_per_beat

    @property
    def act_lanes(self) -> int:
        """Activation codes per ``act`` transfer: ``cols`` codes of each of ``T`` tokens."""
        return self.cols * self.tokens_per_beat

    def token_groups(self, tokens: int) -> list[int]:
        """Sizes of the groups of ``T`` tokens a command of ``tokens`` goes through, in order
        (all ``T`` but the last, which holds the rest)."""
        t = self.tokens_per_beat
        return [t] * (tokens // t) + ([tokens % t] if tokens % t else [])

    @property
    def trits_per_beat(self) -> int:
        return self.rows * self.cols

    @property
    def trits_per_byte(self) -> int:
        return TRITS_PER_BYTE[self.packing]

    @property
    def bytes_per_beat(self) -> int:
        """Bytes of one weight beat; a beat starts on a byte boundary, unused trits are 0."""
        return -(-self.trits_per_beat // self.trits_per_byte)

    @property
    def bits_per_trit(self) -> float:
        """Stored bits per weight trit, including the padding at the end of each beat."""
        return 8 * self.bytes_per_beat / self.trits_per_beat

    @property
    def tree_depth(self) -> int:
        """Levels of the binary adder tree that sums ``cols`` lanes (:func:`tree_depth`)."""
        return tree_depth(self.cols)

    @property
    def acc_width(self) -> int:
        """Accumulator width proven sufficient for ``max_k`` (see :func:`acc_width_for`)."""
        return acc_width_for(self.max_k, self.act_bits)

    def k_tiles(self, k: int) -> int:
        return -(-k // self.cols)

    def m_tiles(self, m: int) -> int:
        return -(-m // self.rows)

    def beats(self, m: int, k: int) -> int:
        """Weight beats of one pass over an ``m x k`` layer (one token group's)."""
        return self.m_tiles(m) * self.k_tiles(k)

    def check_layer(self, m: int, k: int) -> None:
        """Raise ``ValueError`` if an ``m x k`` layer does not fit this engine."""
        if not (1 <= k <= self.max_k):
            raise ValueError(f"K={k} outside [1, max_k={self.max_k}]")
        if not (1 <= m <= self.max_m):
            raise ValueError(f"M={m} outside [1, max_m={self.max_m}]")

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> AccelConfig:
        if not isinstance(data, dict):
            raise TypeError(f"AccelConfig.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown AccelConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> AccelConfig:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> AccelConfig:
        return dataclasses.replace(self, **changes)

    @property
    def slug(self) -> str:
        """A short name for build directories: ``r4c16a8tq1k1024m4096s1`` (``t2`` appended for
        ``tokens_per_beat = 2``)."""
        tokens = f"t{self.tokens_per_beat}" if self.tokens_per_beat > 1 else ""
        return (f"r{self.rows}c{self.cols}a{self.act_bits}{self.packing}"
                f"k{self.max_k}m{self.max_m}s{self.adder_stages}{tokens}")


#: Named configurations (``python -m hw.build --preset``). ``up5k`` is the engine's default build
#: (see docs/build.md for how it was chosen).
PRESETS = {
    # every adder level of the 16-lane tree registered: the setting that meets 48 MHz
    # (docs/hardware.md, "Measured: iCE40 place and route")
    "up5k": AccelConfig(rows=4, cols=16, act_bits=8, packing="tq1", max_k=1024, max_m=4096,
                        adder_stages=4),
    "tiny": AccelConfig(rows=2, cols=4, act_bits=8, packing="tq1", max_k=64, max_m=64,
                        adder_stages=1),
}
