"""Helpers shared by the ``hw`` components: parameter validation."""

import functools

__all__ = ["check_int", "silence_unused", "validated"]


def check_int(name, value, low, high=None):
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not bool) in ``[low, high]``
    (``>= low`` without ``high``), naming ``name`` and the bound."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (
            high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")


def silence_unused(elaboratable):
    """Mark ``elaboratable`` as deliberately never elaborated: no ``UnusedElaboratable`` warning.

    Amaranth registers every ``Elaboratable`` at creation and warns (an error under our pytest
    config) when one is garbage-collected unused. This is the one place that sets Amaranth's
    private flag for it; returns ``elaboratable``.
    """
    elaboratable._MustUse__silence = True
    return elaboratable


def validated(init):
    """Decorate a component ``__init__`` so a rejected construction does not warn.

    An object whose constructor raised is never used, so it is silenced
    (:func:`silence_unused`) before the exception propagates. Every component that validates
    its parameters in ``__init__`` uses this decorator.
    """
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except Exception:
            silence_unused(self)
            raise
    return wrapper
