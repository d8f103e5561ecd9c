"""The 2-bit datapath trit code (``docs/architecture.md`` section 2).

``nz`` (bit 0) says the weight is non-zero, ``neg`` (bit 1) gives its sign:
``00`` is 0, ``01`` is +1, ``11`` is -1, ``10`` (``nz=0, neg=1``) is invalid.
"""

from amaranth.lib import data

__all__ = ["Trit", "trit_code", "trit_value"]


class Trit(data.Struct):
    """Layout of one datapath trit: ``nz`` (bit 0) and ``neg`` (bit 1)."""

    nz: 1
    neg: 1


def trit_code(value: int) -> int:
    """Return the 2-bit code (as an int, ``nz | neg << 1``) of a trit value in {-1, 0, +1}."""
    if value == 0:
        return 0b00
    if value == 1:
        return 0b01
    if value == -1:
        return 0b11
    raise ValueError(f"a trit is -1, 0 or +1, got {value!r}")


def trit_value(code: int) -> int:
    """Inverse of :func:`trit_code`; raises ``ValueError`` for the invalid code ``0b10``."""
    try:
        return {0b00: 0, 0b01: 1, 0b11: -1}[code]
    except KeyError:
        raise ValueError(f"invalid trit code {code:#04b}") from None
