"""Helpers shared by the ``hw`` components: parameter validation."""

import functools

__all__ = ["check_int", "validated"]


def check_int(name, value, low, high=None):
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not bool) in ``[low, high]``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (
            high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int in {bound}, got {value!r}")


def validated(init):
    """Decorate a component ``__init__`` so a rejected construction does not warn.

    Amaranth registers every ``Elaboratable`` at creation and warns (an error under our pytest
    config) when one is garbage-collected unused; an object whose constructor raised is never
    used, so it is silenced here.
    """
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except Exception:
            self._MustUse__silence = True
            raise
    return wrapper
