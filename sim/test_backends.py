"""The in-process backends of ``python -m sim.run_model`` (``sim/backends.py``).

The weight-stream model of the ``pymodel`` backend against the contract, the ``pymodel`` and
``golden`` backends generating like the golden model on the shipped model, the ``amaranth``
backend on real layers (``-m slow``: a whole forward pass).
"""

from __future__ import annotations

import numpy as np
import pytest

from model.accel import AccelConfig
from model.accel_cycles import cycles
from model.bitlinear import ternary_matmul
from model.packing import pack_layer_stream
from sim.backends import AmaranthBackend, GoldenBackend, PyModelBackend, decode_beat
from sim.compare import compare
from sim.generation import generate, generate_pure, run_forward

CONFIGS = [AccelConfig(), AccelConfig(rows=2, cols=3, packing="i2", adder_stages=0),
           AccelConfig(rows=3, cols=5, packing="tq1", adder_stages=1),
           AccelConfig(rows=1, cols=8, packing="i2", max_k=64, max_m=64)]


# ---------------------------------------------------------------------------------------------
# the weight stream the fast backend decodes (docs/architecture.md section 4)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.slug)
@pytest.mark.parametrize("shape", [(1, 1), (7, 11), (16, 16), (9, 33)])
def test_layer_stream_follows_the_contract(config, shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    w = rng.integers(-1, 2, shape).astype(np.int8)
    stream = pack_layer_stream(w, config)
    m, k = shape
    r, c = config.rows, config.cols
    assert stream.shape == (config.beats(m, k), config.bytes_per_beat)
    assert stream.dtype == np.uint8
    beat = 0
    for mt in range(config.m_tiles(m)):
        for kt in range(config.k_tiles(k)):
            trits = decode_beat(stream[beat], config)
            for t in range(r * c):
                row, col = mt * r + t // c, kt * c + t % c
                want = w[row, col] if row < m and col < k else 0
                assert trits[t] == want, (beat, t)
            beat += 1


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.slug)
def test_layer_stream_equals_the_reference(config):
    from sim import golden

    rng = np.random.default_rng(5)
    for shape in [(1, 1), (5, 17), (32, 48), (13, 64)]:
        w = rng.integers(-1, 2, shape).astype(np.int8)
        assert np.array_equal(np.asarray(pack_layer_stream(w, config)),
                              golden.layer_stream(w, config))


def test_decode_beat_rejects_invalid_codes():
    tq1 = AccelConfig(rows=1, cols=5, packing="tq1")
    with pytest.raises(ValueError, match="invalid tq1 byte 0x14"):
        decode_beat(np.array([20], np.uint8), tq1)
    i2 = AccelConfig(rows=1, cols=4, packing="i2")
    with pytest.raises(ValueError, match="code 3"):
        decode_beat(np.array([0b01110101], np.uint8), i2)
    pad = AccelConfig(rows=1, cols=3, packing="i2")
    with pytest.raises(ValueError, match="padding"):
        decode_beat(np.array([0b10010101], np.uint8), pad)



# ---------------------------------------------------------------------------------------------
# pymodel backend: Python model of the engine
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.slug)
def test_fast_backend_edge_cases(config):
    fast = PyModelBackend(config)
    rng = np.random.default_rng(7)
    k_max = min(config.max_k, 70)
    cases = []
    for k, m in [(1, 1), (k_max, 9), (config.cols + 1, config.rows + 1)]:
        for value in (1, -1, 0):
            cases.append((np.full((3, k), -128, np.int8), np.full((m, k), value, np.int8)))
            cases.append((np.full((2, k), 127, np.int8), np.full((m, k), value, np.int8)))
        cases.append((rng.integers(-128, 128, (4, k)).astype(np.int8),
                      rng.integers(-1, 2, (m, k)).astype(np.int8)))
    for i, (xq, w) in enumerate(cases):
        acc, cyc = fast.matmul(f"case{i}", xq, w)
        assert acc.dtype == np.int32 and acc.shape == (xq.shape[0], w.shape[0])
        assert np.array_equal(acc, ternary_matmul(xq, w)), i
        assert cyc == cycles(config, w.shape[0], w.shape[1], xq.shape[0])
    # all -128 against all -1: the accumulator bound K * 128 is reached exactly
    acc, _ = fast.matmul("bound", np.full((1, k_max), -128, np.int8),
                         np.full((2, k_max), -1, np.int8))
    assert acc.tolist() == [[128 * k_max] * 2]
    with pytest.raises(ValueError, match="max_k"):
        fast.matmul("big", np.zeros((1, config.max_k + 1), np.int8),
                    np.zeros((1, config.max_k + 1), np.int8))


def test_pymodel_and_golden_backends_generate_like_the_golden_model(shipped):
    prompt = list(b"And God said")
    pure = generate_pure(shipped, prompt, 6)
    ref = generate(shipped, prompt, 6, None, AccelConfig())
    assert ref.tokens == pure
    for cls in (PyModelBackend, GoldenBackend):
        out = generate(shipped, prompt, 6, cls(AccelConfig()).matmul, AccelConfig())
        compare(ref, out)
    # 7 BitLinear calls per layer for the prompt and for each new token but the last
    assert len(ref.calls) == 7 * shipped.config.n_layers * 6
    # a wrong accumulator anywhere is caught and named
    bad = generate(shipped, prompt, 6, PyModelBackend(AccelConfig()).matmul, AccelConfig())
    bad.calls[10].acc[0, 0] += 1
    with pytest.raises(AssertionError, match=f"call 10 .*{bad.calls[10].name}"):
        compare(ref, bad)


def test_amaranth_backend_on_shipped_layers(shipped):
    """The engine in Amaranth's simulator on real layers of the shipped model (q_proj and
    down_proj of layer 0 with the activations the golden model feeds them): bit- and
    cycle-exact. The whole forward pass is the slow test below."""
    config = AccelConfig()
    seen = []

    def grab(name, xq, trits):
        seen.append((name, np.array(xq), np.array(trits)))
        return ternary_matmul(xq, trits), 0

    run_forward(shipped, list(b"L"), grab, config)
    backend = AmaranthBackend(config)
    for name, xq, trits in (seen[0], seen[6]):
        acc, cyc = backend.matmul(name, xq, trits)
        assert np.array_equal(acc, ternary_matmul(xq, trits)), name
        assert cyc == cycles(config, trits.shape[0], trits.shape[1], xq.shape[0]), name
    assert seen[6][2].shape[1] == 2 * seen[0][2].shape[1]  # down_proj: K = FFN width


@pytest.mark.slow
def test_amaranth_backend_forward_pass(shipped):
    """A full forward pass of the shipped model with every BitLinear in Amaranth's simulator."""
    config = AccelConfig()
    prompt = list(b"Let")
    ref = run_forward(shipped, prompt, None, config)
    hw = run_forward(shipped, prompt, AmaranthBackend(config).matmul, config)
    compare(ref, hw)
    assert len(hw.calls) == 7 * shipped.config.n_layers
    for c in hw.calls:
        assert c.cycles == cycles(config, c.m, c.k, c.tokens), c.name
