"""``sim.token_bench.run_token`` (``python -m sim.bench_model``'s pass): every BitLinear call of
a forward pass on the native engine pool, each exact and cycle-exact, the pass itself equal to
the golden model's, and the projection figures derived from the measured calls."""

from __future__ import annotations

import pytest

from model.accel import AccelConfig
from model.accel_cycles import cycles

CONFIG = AccelConfig(rows=4, cols=16, max_k=1024, max_m=1024)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    from model.checkpoint import open_checkpoint
    from model.checkpoint.synthetic import BITNET_2B4T, write_hf

    small = BITNET_2B4T.replace(vocab_size=300, d_model=64, n_layers=2, n_heads=4,
                                n_kv_heads=2, d_ff=160, max_seq=32)
    return open_checkpoint(write_hf(tmp_path_factory.mktemp("ckpt") / "m", small, seed=3))


@pytest.mark.parametrize("workers", [1, 2])
def test_every_call_of_the_pass_on_the_engine(reader, workers):
    from model.transformer import param_shapes
    from sim.runner import SimulatorUnavailable
    from sim.token_bench import by_projection, project, run_token

    seen = []
    try:
        run = run_token(reader, [5, 7, 11], CONFIG, workers=workers,
                        progress=lambda n, total, s: seen.append((n, total)))
    except SimulatorUnavailable as exc:
        pytest.skip(str(exc))
    names = [n for n, (_, bit) in param_shapes(reader.config).items() if bit]
    calls = run["calls"]
    assert sorted(c["name"] for c in calls) == sorted(names)     # each once, none extra
    assert seen[-1] == (len(names), len(names))
    for c in calls:
        assert c["tokens"] == 3
        assert c["cycles"] == cycles(CONFIG, c["m"], c["k"], 3), c["name"]
    assert run["workers"] == workers and run["wall_seconds"] >= run["golden_seconds"] > 0
    per = by_projection(calls)
    assert per["gate_proj"]["calls"] == 2 and per["gate_proj"]["m"] == 160
    proj = project(calls, CONFIG, 48.0, [100.0])
    assert proj["cycles_per_token"] == sum(c["cycles"] for c in calls)


def test_a_pass_whose_engine_result_differs_fails_naming_the_call(reader, monkeypatch):
    """The pass goes on with the golden product while the engine simulates; the engine's
    result is compared with it, so a difference (here: a golden product made wrong for one
    projection) fails the pass and names the call."""
    import model.bitlinear
    from sim.native import NativeEngineError
    from sim.token_bench import run_token

    real = model.bitlinear.ternary_matmul

    def off_by_one_for_v(xq, trits, act_bits=8):
        acc = real(xq, trits, act_bits)
        if trits.shape == (reader.config.kv_dim, reader.config.d_model) and not off.done:
            off.done = True
            acc = acc.copy()
            acc[1, 2] += 1
        return acc

    off = off_by_one_for_v
    off.done = False
    monkeypatch.setattr(model.bitlinear, "ternary_matmul", off_by_one_for_v)
    with pytest.raises(NativeEngineError, match=r"layers\.0\.self_attn\.k_proj.*accumulator "
                                                r"\(1, 2\)"):
        run_token(reader, [5, 7, 11], CONFIG, workers=2)
