"""pytest configuration for ``sim/``.

The cocotb test modules (``sim/cocotb_*.py``) hold ``@cocotb.test`` coroutines that only run
inside a simulator; they are never named ``test_*`` and are ignored here as well, so pytest
never collects them. Every ``sim/test_*.py`` builds its DUT through :mod:`sim.runner` and
runs the cocotb module in a simulator subprocess.
"""

collect_ignore_glob = ["cocotb_*.py", "fast_top.py", "fixtures.py", "bench.py"]
