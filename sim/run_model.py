"""Generate text with every BitLinear computed by the simulated accelerator.

``python -m sim.run_model --checkpoint model/data/bitnet_kjv.npz --prompt "And God said" \
--tokens 16``

The golden model (:mod:`model.transformer`) runs the network; its ``matmul`` hook hands every
BitLinear integer product ``acc = xq @ trits.T`` of every layer to a *backend*:

* ``cocotb-fast`` (default): the engine's generated Verilog under cocotb (Verilator, or Icarus
  with ``SIM=icarus``) through the fast whole-layer path (:class:`sim.fast.FastEngine` on
  :class:`sim.fast_top.FastTop`: weights resident in a simulated memory, the engine fed at full
  rate by a small sequencer); cycles counted by the hardware;
* ``cocotb-stream``: the same Verilog of the bare ``BitLinearEngine``, every stream driven cycle
  by cycle from Python (:class:`sim.engine_tb.EngineTB`, results also checked by its scoreboard);
* ``native``: the engine's Verilog under the Verilator-native C++ driver
  (:class:`sim.native.NativeEngine`, no Python per cycle: the backend for real-size models);
* ``amaranth``: the engine's Amaranth description in Amaranth's own simulator
  (:class:`sim.amaranth_engine.AmaranthEngine`), no Verilog involved;
* ``pymodel``: a Python model of the engine (no RTL): the layer's weight stream packed exactly
  as the engine reads it, decoded beat by beat with invalid codes rejected, accumulated tile by
  tile in the engine's accumulator width; cycles from ``model.accel_cycles.cycles``;
* ``golden``: the golden model's own integer product (reference only; cycle model timing).

For the cocotb backends the generation loop runs inside the simulator process
(:mod:`sim.cocotb_run_model`), for the others in this process. Every run first generates with
the pure golden model, then with the backend, and asserts that the generated tokens and every
BitLinear accumulator are equal bit for bit. It prints cycles per token, weight bytes streamed
per token and tokens/s at the Fmax of ``build/ice40/report.json`` (or ``--fmax``; the output
says which).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model import cli
from model.accel import AccelConfig
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream, unpack_trits

__all__ = [
    "BACKENDS",
    "CallRecord",
    "AmaranthBackend",
    "PyModelBackend",
    "GoldenBackend",
    "GenerationResult",
    "decode_beat",
    "generate",
    "generate_pure",
    "run_forward",
    "build_engine_sim",
    "run_cosim",
    "read_build",
    "NativeBackend",
    "Prepared",
    "RunModelError",
    "check_engine_fits",
    "execute",
    "prepare",
    "run",
    "main",
]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = ROOT / "model" / "data" / "bitnet_kjv.npz"
REPORT = ROOT / "build" / "ice40" / "report.json"
BACKENDS = ("cocotb-fast", "cocotb-stream", "native", "amaranth", "pymodel", "golden")
DEFAULT_BACKEND = "cocotb-fast"
#: Fmax (MHz) used when there is no build report and no --fmax: the design target of
#: docs/architecture.md for the iCE40 UP5K (stated as such in the output)
DEFAULT_FMAX_MHZ = 48.0



@dataclasses.dataclass
class CallRecord:
    """One BitLinear call: which layer, its size, the accumulators and what it cost."""

    step: int
    name: str
    m: int
    k: int
    tokens: int
    acc: np.ndarray
    cycles: int
    weight_bytes: int


class GoldenBackend:
    """The golden model's integer product; timing from the analytic cycle model."""

    name = "golden"

    def __init__(self, config: AccelConfig):
        self.config = config

    def matmul(self, name: str, xq: np.ndarray, trits: np.ndarray) -> tuple[np.ndarray, int]:
        from model.accel_cycles import cycles

        m, k = trits.shape
        return ternary_matmul(xq, trits), cycles(self.config, m, k, xq.shape[0])


def decode_beat(data: np.ndarray, config: AccelConfig) -> np.ndarray:
    """One beat's bytes -> ``rows * cols`` trits (:func:`model.packing.unpack_trits`), rejecting
    invalid codes and non-zero padding trits as the decoder does."""
    n = config.rows * config.cols
    b = np.asarray(data, dtype=np.uint8)
    trits = unpack_trits(b, b.size * config.trits_per_byte, config.packing)
    if np.any(trits[n:]):
        raise ValueError("non-zero padding trits in weight beat")
    return trits[:n]


class PyModelBackend:
    """Python model of the engine, cycles from the cycle model (see the module docstring)."""

    name = "pymodel"

    def __init__(self, config: AccelConfig):
        self.config = config
        self._streams: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _weights(self, name: str, trits: np.ndarray) -> np.ndarray:
        """The trit matrix as the engine sees it: decoded from the packed weight stream."""
        cached = self._streams.get(name)
        if cached is not None and np.array_equal(cached[0], trits):
            return cached[1]
        cfg = self.config
        m, k = trits.shape
        stream = pack_layer_stream(trits, cfg)
        if stream.shape != (cfg.beats(m, k), cfg.bytes_per_beat):
            raise AssertionError(f"{name}: stream shape {stream.shape}")
        mt, kt = cfg.m_tiles(m), cfg.k_tiles(k)
        w = np.zeros((mt * cfg.rows, kt * cfg.cols), dtype=np.int8)
        for beat, data in enumerate(stream):
            tile = decode_beat(data, cfg).reshape(cfg.rows, cfg.cols)
            i, j = divmod(beat, kt)
            w[i * cfg.rows:(i + 1) * cfg.rows, j * cfg.cols:(j + 1) * cfg.cols] = tile
        if np.any(w[m:]) or np.any(w[:, k:]):
            raise AssertionError(f"{name}: weight stream has non-zero padding")
        self._streams[name] = (trits.copy(), w)
        return w

    def matmul(self, name: str, xq: np.ndarray, trits: np.ndarray) -> tuple[np.ndarray, int]:
        from model.accel_cycles import cycles

        cfg = self.config
        m, k = trits.shape
        cfg.check_layer(m, k)
        lo, hi = -(1 << (cfg.act_bits - 1)), (1 << (cfg.act_bits - 1)) - 1
        if xq.min(initial=0) < lo or xq.max(initial=0) > hi:
            raise ValueError(f"{name}: activation codes outside the {cfg.act_bits}-bit range")
        w = self._weights(name, trits)
        x = np.zeros((xq.shape[0], w.shape[1]), dtype=np.int64)
        x[:, :k] = xq
        # accumulate one k-tile (one beat per row group) at a time, as the array does
        acc = np.zeros((xq.shape[0], w.shape[0]), dtype=np.int64)
        for j in range(cfg.k_tiles(k)):
            sl = slice(j * cfg.cols, (j + 1) * cfg.cols)
            acc += x[:, sl] @ w[:, sl].T.astype(np.int64)
        lim = 1 << (cfg.acc_width - 1)
        if acc.min(initial=0) < -lim or acc.max(initial=0) >= lim:
            raise AssertionError(f"{name}: accumulator overflows {cfg.acc_width} bits")
        return acc[:, :m].astype(np.int32), cycles(cfg, m, k, xq.shape[0])


class AmaranthBackend:
    """The engine in Amaranth's simulator (:class:`sim.amaranth_engine.AmaranthEngine`)."""

    name = "amaranth"

    def __init__(self, config: AccelConfig):
        from sim.amaranth_engine import AmaranthEngine

        self.config = config
        self.engine = AmaranthEngine(config)

    def matmul(self, name: str, xq: np.ndarray, trits: np.ndarray) -> tuple[np.ndarray, int]:
        return self.engine.run_layer(xq, trits)


class NativeBackend:
    """The engine's Verilog under the Verilator-native driver; cycles counted by the driver."""

    name = "native"

    def __init__(self, config: AccelConfig):
        from sim.native import NativeEngine

        self.config = config
        self.engine = NativeEngine(config)

    def matmul(self, name: str, xq: np.ndarray, trits: np.ndarray) -> tuple[np.ndarray, int]:
        return self.engine.run_layer(xq, trits)

    def close(self) -> None:
        self.engine.close()


@dataclasses.dataclass
class GenerationResult:
    """Tokens and per-call records of one generation."""

    prompt: list[int]
    tokens: list[int]
    calls: list[CallRecord]
    seconds: float

    def text(self) -> str:
        """The tokens as the text of a byte-level model."""
        return bytes(self.tokens).decode("utf-8", errors="replace")

    def per_step(self, key: str) -> list[int]:
        steps = sorted({c.step for c in self.calls})
        return [sum(getattr(c, key) for c in self.calls if c.step == s) for s in steps]


class Progress:
    """A progress line on stderr: tokens generated, BitLinear calls done, elapsed seconds.

    Call it as ``progress(i, n)`` after token ``i`` of ``n``; :meth:`call` after every
    BitLinear call (redraws at most 5 times a second); :meth:`note` prints a message line.
    """

    def __init__(self, prefix: str, n_tokens: int, stream=None):
        self.prefix, self.n = prefix, n_tokens
        self.stream = stream or sys.stderr
        self.tokens = self.calls = 0
        self.t0 = time.time()
        self._drawn = 0.0

    def _draw(self, force: bool = False) -> None:
        now = time.time()
        tty = getattr(self.stream, "isatty", lambda: False)()
        # on a terminal: one line redrawn in place; in a log: a line per token only
        if (not force and (not tty or now - self._drawn < 0.2)):
            return
        self._drawn = now
        phase = "prefill" if self.tokens == 0 else f"token {self.tokens}/{self.n}"
        line = f"{self.prefix}: {phase}, {self.calls} BitLinear calls, {now - self.t0:.0f} s"
        if self.tokens:
            eta = (now - self.t0) / self.tokens * (self.n - self.tokens)
            line += f", ETA {eta:.0f} s"
        if tty:
            print("\r" + line, end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def __call__(self, i: int, n: int) -> None:
        self.tokens, self.n = i, n
        self._draw(force=True)
        if i >= n and getattr(self.stream, "isatty", lambda: False)():
            print(file=self.stream, flush=True)

    def call(self, n_calls: int | None = None) -> None:
        self.calls = self.calls + 1 if n_calls is None else n_calls
        self._draw()

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def _recording_hook(backend, config: AccelConfig, calls: list[CallRecord], state: dict,
                    progress=None):
    on_call = getattr(progress, "call", None)

    def hook(name, xq, trits):
        acc, cyc = backend(name, xq, trits)
        m, k = trits.shape
        calls.append(CallRecord(state["step"], name, m, k, xq.shape[0], np.array(acc, copy=True),
                                int(cyc), config.beats(m, k) * config.bytes_per_beat))
        if on_call is not None:
            on_call()
        return acc
    return hook


def generate(ck, prompt: list[int], n_tokens: int, backend: Callable | None,
             config: AccelConfig, progress: Callable[[int, int], None] | None = None
             ) -> GenerationResult:
    """Greedy generation with every BitLinear through ``backend(name, xq, trits)``.

    ``backend=None`` records the golden accumulators from the golden integer product (the
    reference the backends are compared with). ``progress(i, n)`` is called after every token;
    if it has a ``call()`` method (:class:`Progress`), that is called after every BitLinear.
    """
    calls: list[CallRecord] = []
    state = {"step": 0}
    if backend is None:
        backend = GoldenBackend(config).matmul
    model = ck.transformer(matmul=_recording_hook(backend, config, calls, state, progress))

    def on_token(i, _token):
        state["step"] = i + 1   # the BitLinear calls that follow feed token i
        if progress is not None:
            progress(i + 1, n_tokens)

    t0 = time.time()
    tokens = model.generate(list(prompt), n_tokens, on_token=on_token)
    return GenerationResult(list(prompt), tokens, calls, time.time() - t0)


def generate_pure(ck, prompt: list[int], n_tokens: int) -> list[int]:
    """Greedy tokens of the pure golden model (no ``matmul`` hook): ``Transformer.generate``."""
    return ck.transformer().generate(list(prompt), n_tokens)


def run_forward(ck, prompt: list[int], backend: Callable | None, config: AccelConfig,
                progress=None) -> GenerationResult:
    """One full forward pass over ``prompt`` (no KV cache) with every BitLinear through
    ``backend``; ``tokens`` are the greedy next-token predictions at every position."""
    calls: list[CallRecord] = []
    if backend is None:
        backend = GoldenBackend(config).matmul
    model = ck.transformer(matmul=_recording_hook(backend, config, calls, {"step": 0},
                                                  progress))
    t0 = time.time()
    logits = model.forward(np.asarray(prompt, dtype=np.int64))
    return GenerationResult(list(prompt), [int(t) for t in np.argmax(logits, axis=-1)], calls,
                            time.time() - t0)


COSIM_PATHS = ("fast", "stream")


def build_engine_sim(config: AccelConfig, path: str = "fast"):
    """The cached simulator build (:class:`sim.runner.SimBuild`) a cocotb backend runs on.

    ``path="fast"``: :class:`sim.fast_top.FastTop` (the engine plus weight/activation/result
    memories, ``sim.fast.build_fast_engine``); ``"stream"``: the bare ``BitLinearEngine``, the
    same build directory ``sim/test_engine.py`` uses for this config.
    """
    if path not in COSIM_PATHS:
        raise ValueError(f"path must be one of {COSIM_PATHS}, got {path!r}")
    if (config, path) not in _BUILDS:
        if path == "fast":
            from sim.fast import build_fast_engine

            _BUILDS[config, path] = build_fast_engine(config)
        else:
            from hw.engine import BitLinearEngine
            from sim.runner import SimBuild

            _BUILDS[config, path] = SimBuild(BitLinearEngine(config=config),
                                             dut="bitlinear_engine", key=config.slug)
    return _BUILDS[config, path]


_BUILDS: dict = {}


def _poll_progress(path: Path, progress, stop) -> None:
    """Forward the cocotb process's progress file (``tokens n calls``) to ``progress``."""
    seen = None
    while not stop.wait(0.3):
        try:
            text = path.read_text().split()
        except OSError:
            continue
        if len(text) == 3 and text != seen:
            seen = text
            i, n, c = map(int, text)
            progress.call(c)
            if 0 < i < n:
                progress(i, n)


def run_cosim(checkpoint: Path, prompt: list[int], n_tokens: int, config: AccelConfig,
              mode: str = "generate", work_dir: Path | None = None, path: str = "fast",
              progress: Progress | None = None) -> GenerationResult:
    """Run :mod:`sim.cocotb_run_model` on the simulated engine and return its results.

    ``mode`` is ``generate`` (``n_tokens`` greedy tokens) or ``forward`` (one forward pass);
    ``path`` is ``fast`` or ``stream`` (see :func:`build_engine_sim`).
    Raises ``sim.runner.CocotbFailure`` if the cocotb test failed.
    """
    import tempfile
    import threading

    from sim.cocotb_run_model import load_result

    if mode not in ("generate", "forward"):
        raise ValueError(f"mode must be 'generate' or 'forward', got {mode!r}")
    if progress is not None:
        progress.note(f"building/checking the {path}-path simulator model "
                      "(cached in sim_build/; a cold Verilator build takes about a minute)")
    t0 = time.time()
    build = build_engine_sim(config, path)
    if progress is not None:
        progress.note(f"simulator build: {'rebuilt' if build.rebuilt else 'cached'} "
                      f"({time.time() - t0:.0f} s), {build.build_dir}")
        progress.t0 = time.time()
    work = Path(work_dir or tempfile.mkdtemp(prefix="run_model_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = work / "result.npz"
    prog = work / "progress.txt"
    for f in (out, prog):
        if f.exists():
            f.unlink()
    params = {"checkpoint": str(Path(checkpoint).resolve()), "prompt": list(prompt),
              "tokens": int(n_tokens), "mode": mode, "out": str(out), "progress": str(prog),
              "accel_config": config.to_dict()}
    stop = threading.Event()
    poller = None
    if progress is not None:
        poller = threading.Thread(target=_poll_progress, args=(prog, progress, stop), daemon=True)
        poller.start()
    try:
        build.run("sim.cocotb_run_model", params=params, test_dir=work)
    finally:
        stop.set()
        if poller is not None:
            poller.join()
    if not out.exists():
        raise AssertionError(f"co-simulation wrote no result; see {work}")
    res = load_result(out)
    if progress is not None and mode == "generate":
        progress.call(len(res.calls))
        progress(n_tokens, n_tokens)
    return res


def compare(ref: GenerationResult, hw: GenerationResult) -> None:
    """Assert equal tokens and equal accumulators of every BitLinear call, in order."""
    if len(ref.calls) != len(hw.calls):
        raise AssertionError(f"{len(hw.calls)} BitLinear calls, golden made {len(ref.calls)}")
    for i, (a, b) in enumerate(zip(ref.calls, hw.calls, strict=True)):
        if a.name != b.name or a.acc.shape != b.acc.shape or not np.array_equal(a.acc, b.acc):
            bad = np.argwhere(a.acc != b.acc) if a.acc.shape == b.acc.shape else []
            raise AssertionError(
                f"call {i} (step {a.step}, {a.name}): hardware accumulators differ from the "
                f"golden model ({len(bad)} differences, first at {bad[:1].tolist()})")
    if ref.tokens != hw.tokens:
        raise AssertionError(f"tokens differ: golden {ref.tokens} hardware {hw.tokens}")


def read_build(report: Path = REPORT) -> dict:
    """What ``python -m hw.build`` reported about the design it built.

    Returns ``{"config": AccelConfig or None, "fmax_mhz": float or None, "clock_mhz": float or
    None}``: the engine configuration of the build, nextpnr's achieved Fmax, and the clock the
    design runs at (board tops: the PLL clock; ``None`` for bare-engine builds). All ``None``
    when there is no readable report.
    """
    out = {"config": None, "fmax_mhz": None, "clock_mhz": None}
    try:
        data = json.loads(Path(report).read_text())
    except (OSError, ValueError):
        return out
    if not isinstance(data, dict):
        return out
    timing = data.get("timing")
    if isinstance(timing, dict):
        for key in ("fmax_mhz", "clock_mhz"):
            if isinstance(timing.get(key), (int, float)):
                out[key] = float(timing[key])
    if isinstance(data.get("config"), dict):
        try:
            out["config"] = AccelConfig.from_dict(data["config"])
        except (TypeError, ValueError):
            pass
    return out


def summarize(res: GenerationResult, config: AccelConfig, fmax_mhz: float | None,
              fmax_source: str, backend: str) -> dict:
    """Figures of a generation: cycles and weight bytes per token, tokens/s."""
    cyc = res.per_step("cycles")
    wb = res.per_step("weight_bytes")
    decode_cyc = cyc[1:] if len(cyc) > 1 else cyc
    out = {
        "backend": backend,
        "accel_config": config.to_dict(),
        "prompt_tokens": len(res.prompt),
        "generated_tokens": len(res.tokens),
        "bitlinear_calls": len(res.calls),
        "prefill_cycles": cyc[0],
        "cycles_per_token": float(np.mean(decode_cyc)),
        "weight_bytes_per_token": float(np.mean(wb[1:] if len(wb) > 1 else wb)),
        "fmax_mhz": fmax_mhz,
        "fmax_source": fmax_source,
        "wall_seconds": round(res.seconds, 2),
    }
    if fmax_mhz:
        out["tokens_per_s"] = fmax_mhz * 1e6 / out["cycles_per_token"]
    return out


class RunModelError(ValueError):
    """A bad input found before the run (the CLI prints it as one ``error:`` line)."""


@dataclasses.dataclass
class Prepared:
    """A checked run: the opened checkpoint, the prompt's tokens and the engine."""

    checkpoint: Path
    ck: object
    tokens: list[int]
    config: AccelConfig
    config_source: str
    build: dict


def prepare(checkpoint: Path, prompt: str | None, n_tokens: int, backend: str = DEFAULT_BACKEND,
            config: AccelConfig | None = None, report: Path = REPORT,
            token_ids: list[int] | None = None):
    """Check a run's inputs before any long work (a :class:`Prepared` run);
    :class:`RunModelError` names what is wrong."""
    from model import checkpoint as ckpt

    if backend not in BACKENDS:
        raise RunModelError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise RunModelError(f"--tokens must be >= 1, got {n_tokens!r}")
    build = read_build(report)
    # by default simulate the engine that was built, so that its clock applies to the cycles
    config_source = "the given config"
    if config is None:
        config, config_source = ((build["config"], f"the build in {report}") if build["config"]
                                 else (AccelConfig(), "AccelConfig() (no build report)"))
    try:
        ck = ckpt.open_checkpoint(checkpoint)
    except ckpt.CheckpointError as e:
        raise RunModelError(str(e)) from None
    c = ck.config
    if token_ids is not None:
        tokens = list(token_ids)
    elif c.vocab_size != 256:
        raise RunModelError(f"the model is not byte-level (vocabulary {c.vocab_size}): give "
                            "token ids (--tokens-in)")
    else:
        try:
            tokens = list(prompt.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise RunModelError(f"the prompt cannot be encoded as UTF-8 ({e.reason} at "
                                f"{e.start})") from None
    if not tokens:
        raise RunModelError("the prompt must not be empty")
    if min(tokens) < 0 or max(tokens) >= c.vocab_size:
        raise RunModelError(f"token ids must lie in [0, {c.vocab_size})")
    if len(tokens) + n_tokens > c.max_seq:
        raise RunModelError(f"prompt + tokens = {len(tokens) + n_tokens} exceeds the model's "
                            f"context of {c.max_seq}")
    check_engine_fits(config, c)
    return Prepared(Path(checkpoint), ck, tokens, config, config_source, build)


def check_engine_fits(config: AccelConfig, model_config) -> None:
    """:class:`RunModelError` unless the engine ``config`` takes every BitLinear layer of a
    model of shape ``model_config``."""
    from model.transformer import param_shapes

    for shape, is_bit in param_shapes(model_config).values():
        if is_bit:
            try:
                config.check_layer(*shape)
            except ValueError as e:
                raise RunModelError(f"the engine {config.slug} cannot run a {shape[0]} x "
                                    f"{shape[1]} layer of this model: {e}") from None


def run(checkpoint: Path, prompt: str | None, n_tokens: int, backend: str = DEFAULT_BACKEND,
        config: AccelConfig | None = None, fmax: float | None = None,
        report: Path = REPORT, quiet: bool = False, token_ids: list[int] | None = None) -> dict:
    """Run the golden reference and the backend, compare, and return the summary dict.

    The prompt is ``prompt`` as UTF-8 bytes (byte-level models) or ``token_ids``. The
    checkpoint is opened lazily (:func:`model.checkpoint.open_checkpoint`), so a 2B-class
    model runs a layer at a time. Bad inputs raise :class:`RunModelError` before any work."""
    return execute(prepare(checkpoint, prompt, n_tokens, backend, config, report, token_ids),
                   n_tokens, backend, fmax, report, quiet)


def execute(prep: Prepared, n_tokens: int, backend: str = DEFAULT_BACKEND,
            fmax: float | None = None, report: Path = REPORT, quiet: bool = False) -> dict:
    """The run of a :func:`prepare`-d input (see :func:`run`)."""
    checkpoint, ck, tokens = prep.checkpoint, prep.ck, prep.tokens
    config, config_source, build = prep.config, prep.config_source, prep.build
    pure = generate_pure(ck, tokens, n_tokens)
    ref = generate(ck, tokens, n_tokens, None, config)
    if ref.tokens != pure:
        raise AssertionError(f"golden with the exact hook {ref.tokens} != pure golden {pure}")
    if not quiet:
        print(f"golden reference: {n_tokens} tokens, {len(ref.calls)} BitLinear calls "
              f"({ref.seconds:.1f} s)", file=sys.stderr, flush=True)
    show = None if quiet else Progress(backend, n_tokens)
    if backend.startswith("cocotb-"):
        hw = run_cosim(checkpoint, tokens, n_tokens, config, path=backend.split("-", 1)[1],
                       progress=show)
    else:
        impl = {"golden": GoldenBackend, "pymodel": PyModelBackend,
                "amaranth": AmaranthBackend, "native": NativeBackend}[backend](config)
        try:
            hw = generate(ck, tokens, n_tokens, impl.matmul, config, show)
        finally:
            if hasattr(impl, "close"):
                impl.close()
    compare(ref, hw)
    if fmax is not None:
        fmax_mhz, source = fmax, "--fmax"
    elif build["fmax_mhz"] is not None and build["config"] == config:
        # a board top runs at its PLL clock (below its Fmax); a bare engine at its Fmax
        if build["clock_mhz"] is not None:
            fmax_mhz = min(build["clock_mhz"], build["fmax_mhz"])
            source = (f"the board clock of {report} (Fmax {build['fmax_mhz']:.2f} MHz, "
                      f"clock {build['clock_mhz']:.2f} MHz)")
        else:
            fmax_mhz, source = build["fmax_mhz"], f"the achieved Fmax in {report}"
    else:
        fmax_mhz = DEFAULT_FMAX_MHZ
        other = build["config"].slug if build["config"] else "?"
        why = (f"no build report at {report}" if build["fmax_mhz"] is None else
               f"{report} is of another engine ({other})")
        source = (f"{why}: the {DEFAULT_FMAX_MHZ:g} MHz design target, not a measured clock "
                  "(run python -m hw.build for this config or pass --fmax)")
    out = summarize(hw, config, fmax_mhz, source, backend)
    out["config_source"] = config_source
    out["text"] = (hw.text() if ck.config.vocab_size == 256
                   else ",".join(str(t) for t in hw.tokens))
    out["golden_equal"] = True
    from model.accel_cycles import cycles

    # the simulated backends measure cycles: they must equal the cycle model for every call
    off = [c for c in hw.calls if c.cycles != cycles(config, c.m, c.k, c.tokens)]
    out["cycles_equal_model"] = not off
    if off:
        c = off[0]
        raise AssertionError(f"{len(off)} calls took other than model.accel_cycles.cycles, e.g. "
                             f"{c.name} M={c.m} K={c.k} T={c.tokens}: {c.cycles} cycles, model "
                             f"{cycles(config, c.m, c.k, c.tokens)}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(prog="python -m sim.run_model", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=cli.existing_path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--prompt", default="And God said", help="text prompt (byte-level models)")
    p.add_argument("--prompt-file", type=Path, default=None, help="read the text prompt here")
    p.add_argument("--tokens-in", type=cli.token_ids, default=None,
                   help="token ids of the prompt, e.g. 1,2,3 (models that are not byte-level)")
    p.add_argument("--tokens", type=cli.positive_int, default=16)
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help=f"what computes every BitLinear (default {DEFAULT_BACKEND})")
    p.add_argument("--fmax", type=cli.positive_float, default=None,
                   help="Fmax in MHz (default: build report)")
    p.add_argument("--config", type=cli.accel_config, default=None,
                   help="AccelConfig as JSON or a path to a JSON file (default: the engine "
                        "of build/ice40/report.json, else AccelConfig())")
    p.add_argument("--json", type=cli.output_file, default=None,
                   help="also write the summary here")
    args = p.parse_args(argv)
    token_ids = args.tokens_in
    if args.prompt_file is not None:
        try:
            args.prompt = args.prompt_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            p.error(f"--prompt-file {args.prompt_file}: {e}")
    try:
        prep = prepare(args.checkpoint, args.prompt, args.tokens, args.backend, args.config,
                       token_ids=token_ids)
    except RunModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        out = execute(prep, args.tokens, args.backend, args.fmax)
    except ModuleNotFoundError as e:
        print(f"error: {e.name} is needed for this backend and is not importable", file=sys.stderr)
        return 2
    except Exception as e:
        from sim.runner import SimulatorUnavailable

        if isinstance(e, SimulatorUnavailable):
            print(f"error: {e}; choose another --backend (amaranth, pymodel, golden)",
                  file=sys.stderr)
            return 2
        raise
    print(f"prompt:    {args.prompt!r}" if token_ids is None else f"prompt:    {token_ids}")
    print(f"generated: {out['text']!r}")
    print(f"backend {out['backend']}: tokens and all {out['bitlinear_calls']} BitLinear "
          "accumulators equal the golden model bit for bit; every call's cycles equal "
          "model.accel_cycles.cycles")
    print(f"engine {AccelConfig.from_dict(out['accel_config']).slug} "
          f"(from {out['config_source']}): prefill "
          f"{out['prefill_cycles']} cycles for {out['prompt_tokens']} prompt tokens; "
          f"{out['cycles_per_token']:.0f} cycles/token, "
          f"{out['weight_bytes_per_token']:.0f} weight bytes streamed/token")
    if out["fmax_mhz"]:
        print(f"at {out['fmax_mhz']:.2f} MHz ({out['fmax_source']}): "
              f"{out['tokens_per_s']:.1f} tokens/s (BitLinear layers only)")
    else:
        print(f"Fmax: {out['fmax_source']}")
    print(f"wall time of the {out['backend']} run: {out['wall_seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
