"""The build flow: ``python -m hw.build`` (:mod:`hw.build.__main__`) and one module per job.

The RTL is in ``hw/``; nothing there imports this package. :mod:`hw.build.ice40` and
:mod:`hw.build.ecp5` are the only importers of the board package :mod:`fpga` (for ``--top fpga``).

- :mod:`hw.build.checks`: :class:`~hw.build.checks.BuildError`, the size limit, the multiplier
  check.
- :mod:`hw.build.toolchain`: find and run Yosys, nextpnr-ice40, icepack, nextpnr-ecp5, ecppack.
- :mod:`hw.build.harness`: the pin harness around a component; :func:`~hw.build.harness.make_dut`.
- :mod:`hw.build.yosys`: the Yosys scripts of the iCE40 synthesis.
- :mod:`hw.build.seeds`: the nextpnr seed search.
- :mod:`hw.build.ice40`: the iCE40 build and the UP5K area estimate / fit check.
- :mod:`hw.build.ecp5`: the ECP5 build (ULX3S, OrangeCrab, ECPIX-5) and its fit checks.
- :mod:`hw.build.generic`: the generic CMOS gate area (``--target generic``).
- :mod:`hw.build.gatesim`: the gate-level netlist simulator with toggle counts.
- :mod:`hw.build.workload`: the shipped model's layers the energy figures run.
- :mod:`hw.build.activity`: activity-based energy on the gate netlists.
- :mod:`hw.build.energy`: the operation-count energy model and the energy tables.
- :mod:`hw.build.compare`: the ternary array beside the int8 baseline array (on the ECP5 also
  the int8 array on MULT18X18D).
- :mod:`hw.build.report`: tool-report parsing, ``report.json`` / ``report.md``, the summary.
- :mod:`hw.build.plot`: ``comparison.png``.
- :mod:`hw.build.sweep`: ``python -m hw.build.sweep``, a grid of array shapes.
"""
