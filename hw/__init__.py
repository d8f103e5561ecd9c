"""Multiplier-free BitNet b1.58 datapath in Amaranth HDL 0.5.

Hierarchy (each level a ``wiring.Component`` with its own tests):
:mod:`hw.trit` (2-bit trit code), :mod:`hw.pe` (ternary lane), :mod:`hw.row` (adder tree and
accumulator), :mod:`hw.array` (``R x C`` MAC array), :mod:`hw.decoder` (weight-stream decoder),
:mod:`hw.engine` (the BitLinear engine / sequencer), :mod:`hw.gearbox` (byte-stream width adapter).
The int8 comparison array is :mod:`hw.baseline`; the build flow (``python -m hw.build``) is the
package :mod:`hw.build`, which no RTL module imports.
"""
