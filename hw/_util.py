"""Helpers shared by the ``hw`` components (and the board's): parameter validation, signatures
made from one parameter."""

import functools

from amaranth.lib import wiring

__all__ = ["ParamSignature", "check_int", "silence_unused", "validated"]


class ParamSignature(wiring.Signature):
    """A signature built from one parameter (an engine's ``AccelConfig``, a memory's depth):
    equal, hashed and shown by its class and that parameter (``param``)."""

    def __init__(self, param, members):
        self._param = param
        super().__init__(members)

    @property
    def param(self):
        return self._param

    def __eq__(self, other):
        return type(other) is type(self) and other.param == self._param

    def __hash__(self):
        return hash((type(self), self._param))

    def __repr__(self):
        return f"{type(self).__name__}({self._param!r})"


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
