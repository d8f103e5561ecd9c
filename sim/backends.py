"""What computes every BitLinear of ``python -m sim.run_model``: the backends.

Every backend has ``matmul(name, xq, trits) -> (acc, cycles)``: the integer product
``acc = xq @ trits.T`` of one BitLinear call and the cycles it took.

* ``cocotb-fast`` (default) and ``cocotb-stream``: the engine's generated Verilog under cocotb,
  the generation loop inside the simulator process (:mod:`sim.cosim`);
* ``native``: the engine's Verilog under the Verilator-native C++ driver
  (:class:`sim.native.NativeEngine`, no Python per cycle: the backend for real-size models);
* ``amaranth``: the engine's Amaranth description in Amaranth's own simulator
  (:class:`sim.amaranth_engine.AmaranthEngine`), no Verilog involved;
* ``pymodel``: a Python model of the engine (no RTL): the layer's weight stream packed exactly
  as the engine reads it, decoded beat by beat with invalid codes rejected, accumulated tile by
  tile in the engine's accumulator width; cycles from ``model.accel_cycles.cycles``;
* ``golden``: the golden model's own integer product (the reference; cycle model timing).
"""

from __future__ import annotations

import numpy as np

from model.accel import AccelConfig
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream, unpack_trits

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "AmaranthBackend",
    "GoldenBackend",
    "NativeBackend",
    "PyModelBackend",
    "decode_beat",
    "in_process_backend",
]

BACKENDS = ("cocotb-fast", "cocotb-stream", "native", "amaranth", "pymodel", "golden")
DEFAULT_BACKEND = "cocotb-fast"


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


def in_process_backend(name: str, config: AccelConfig):
    """The backend ``name`` that runs in this process (every one but the ``cocotb-*`` ones)."""
    return {"golden": GoldenBackend, "pymodel": PyModelBackend,
            "amaranth": AmaranthBackend, "native": NativeBackend}[name](config)
