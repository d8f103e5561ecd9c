"""The cocotb test modules: ``@cocotb.test`` coroutines that run inside the simulator.

:class:`sim.runner.SimBuild` runs them by module name (``build.run("sim.tb.engine", ...)``) in
a simulator subprocess; pytest never collects them (``sim/conftest.py``). Each is named after
what it drives: ``infra`` (the drivers and scoreboard on :class:`sim.fixtures.ChunkSum`),
``decoder``, ``array``, ``engine``, ``fast`` (the fast path on :class:`sim.fast_top.FastTop`),
``board`` (the board core and the host library), ``run_model`` (the generation loop of
``python -m sim.run_model``) and ``bench`` (``python -m sim.bench``).
"""
