"""One real BitLinear layer on the simulated engine, bit-exact and cycle-exact.

:func:`layer_input` is the real input of a projection: the activation codes the golden model
feeds it for a prompt (the model runs up to that projection and stops). :func:`run` computes
``acc = xq @ trits.T`` on the engine's Verilog under the Verilator-native driver
(:class:`sim.native.NativeEngine`), checks every accumulator against the golden model and the
cycle count against ``model.accel_cycles.cycles`` and returns the figures.
"""

from __future__ import annotations

import time

import numpy as np

from model.accel import AccelConfig

__all__ = ["DEFAULT_CONFIG", "PROJECTIONS", "RunLayerError", "layer_input", "run"]

#: ``--proj`` names -> parameter-name infix.
PROJECTIONS = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
               "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
               "down": "mlp.down_proj"}
#: Engine of the default run: 4 x 16 lanes, every 2B4T layer fits (K, M <= 6912).
DEFAULT_CONFIG = AccelConfig(rows=4, cols=16, max_k=6912, max_m=6912)


class RunLayerError(Exception):
    """A bad input or a failed check: one line for the user, exit status 1."""


class _Captured(Exception):
    pass


def layer_input(reader, tokens, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(xq, trits)`` of projection ``name`` when the golden model runs ``tokens``: the model
    runs up to that projection and stops (later layers are never read)."""
    from model.bitlinear import ternary_matmul

    got = {}

    def hook(n, xq, trits):
        if n == name:
            got["xq"], got["trits"] = xq.copy(), trits
            raise _Captured
        return ternary_matmul(xq, trits)

    try:
        reader.transformer(matmul=hook).forward(tokens)
    except _Captured:
        pass
    return got["xq"], got["trits"]


def run(xq: np.ndarray, trits: np.ndarray, config: AccelConfig, fmax_mhz: float | None = None,
        fmax_source: str = "") -> dict:
    """Run ``acc = xq @ trits.T`` on the native engine; compare; return the figures."""
    from model.accel_cycles import cycles as model_cycles
    from model.packing import pack_layer_stream
    from sim.native import NativeEngine, NativeEngineError, check_call

    m, k = trits.shape
    t = xq.shape[0]
    t0 = time.perf_counter()
    stream = pack_layer_stream(trits, config)
    pack_s = time.perf_counter() - t0
    with NativeEngine(config) as eng:
        t0 = time.perf_counter()
        acc, cyc = eng.run_layer(xq, stream=stream, shape=(m, k))
        call_s = time.perf_counter() - t0
        sim_s = eng.last_sim_seconds
    try:
        check_call(config, xq, trits, acc, cyc)
    except NativeEngineError as e:
        raise RunLayerError(str(e)) from None
    out = {"m": m, "k": k, "tokens": t, "accel_config": config.to_dict(),
           "cycles": cyc, "model_cycles": model_cycles(config, m, k, t),
           "beats_per_token": config.beats(m, k),
           "weight_bytes": t * config.beats(m, k) * config.bytes_per_beat,
           "exact": True, "cycles_equal": True,
           "pack_seconds": round(pack_s, 3), "sim_seconds": round(sim_s, 3),
           "call_seconds": round(call_s, 3),
           "sim_cycles_per_s": cyc / sim_s if sim_s > 0 else None,
           "fmax_mhz": fmax_mhz, "fmax_source": fmax_source}
    if fmax_mhz:
        out["seconds_at_clock"] = cyc / (fmax_mhz * 1e6)
    return out
