"""The weight beats a model's zero activations make unnecessary, per array shape.

:func:`collect_calls` records every BitLinear call of a golden-model run; :func:`measure` counts,
per decode token on one ``AccelConfig``, the beats a reader must fetch when it leaves out the
beats of all-zero activation chunks (:func:`model.packing.zero_chunks`) and, optionally, the
up-projection row tiles behind an all-non-positive gate (:func:`model.packing.zero_row_tiles`),
with the dense and skipping cycle counts (:func:`model.accel_cycles.tile_cycles`);
:func:`markdown` is the report of ``python -m sim.bench_sparsity``.
"""


from __future__ import annotations

import numpy as np

from model.accel import AccelConfig

__all__ = ["ASSUMPTIONS", "DEFAULT_SHAPES", "PROJECTIONS", "best_per_projection", "collect_calls",
           "markdown", "measure"]

#: The UP5K array shapes of the engine's 40 trits (8 tq1 bytes, one SPRAM word) per beat.
DEFAULT_SHAPES = ((5, 8), (10, 4), (20, 2), (40, 1))
#: BitLinear projections of a layer, in the order the model calls them.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def collect_calls(checkpoint, windows: np.ndarray) -> list[list[dict]]:
    """Run ``checkpoint``'s golden model over ``windows`` (``(n, seq)`` byte tokens); return,
    per window, its BitLinear calls in order: ``{"name", "xq", "acc", "m", "k"}``."""
    from model.bitlinear import ternary_matmul

    act_bits = checkpoint.config.act_bits
    out: list[list[dict]] = []

    def hook(name, xq, trits):
        acc = ternary_matmul(xq, trits, act_bits)
        out[-1].append({"name": name, "xq": np.array(xq, dtype=np.int16), "acc": acc,
                        "m": int(trits.shape[0]), "k": int(trits.shape[1])})
        return acc

    transformer = checkpoint.transformer(matmul=hook)
    for w in windows:
        out.append([])
        transformer.forward(np.asarray(w, dtype=np.int64))
    return out


def _projection(name: str) -> str:
    return name.split(".")[-2]


def measure(calls: list[list[dict]], config: AccelConfig, row_skip: bool = True) -> dict:
    """Dense and skipping figures of ``calls`` (see :func:`collect_calls`) on ``config``."""
    from model.accel_cycles import cycles, tile_cycles
    from model.packing import zero_chunks, zero_row_tiles

    per: dict[str, dict] = {p: {"codes": 0, "zero_codes": 0, "chunks": 0, "zero_chunks": 0,
                                "beats_dense": 0, "beats_skip": 0,
                                "cycles_dense": 0, "cycles_skip": 0}
                            for p in PROJECTIONS}
    tokens = 0
    for window in calls:
        t = window[0]["xq"].shape[0]
        tokens += t
        gate_acc = None
        for call in window:
            proj, m, k, xq = _projection(call["name"]), call["m"], call["k"], call["xq"]
            if proj == "gate_proj":
                gate_acc = call["acc"]
            mt, kt = config.m_tiles(m), config.k_tiles(k)
            zc = zero_chunks(xq, config)                        # (t, kt)
            live_chunks = kt - zc.sum(axis=1)                   # (t,)
            beats = np.repeat(live_chunks[:, None], mt, axis=1)  # (t, mt)
            if row_skip and proj == "up_proj":
                if gate_acc is None or gate_acc.shape != (t, m):
                    raise ValueError(f"{call['name']}: no gate call of the same shape before it")
                beats[zero_row_tiles(gate_acc <= 0, config)] = 0
            p = per[proj]
            p["codes"] += xq.size
            p["zero_codes"] += int(np.count_nonzero(xq == 0))
            p["chunks"] += zc.size
            p["zero_chunks"] += int(zc.sum())
            p["beats_dense"] += t * mt * kt
            p["beats_skip"] += int(beats.sum())
            rows = [config.rows] * (mt - 1) + [m - (mt - 1) * config.rows]
            p["cycles_dense"] += t * cycles(config, m, k, 1)
            p["cycles_skip"] += sum(tile_cycles(config, [int(b) for b in row], rows)
                                    for row in beats)
    bpb = config.bytes_per_beat
    dense_beats = sum(p["beats_dense"] for p in per.values())
    skip_beats = sum(p["beats_skip"] for p in per.values())
    cyc_dense = sum(p["cycles_dense"] for p in per.values())
    cyc_skip = sum(p["cycles_skip"] for p in per.values())
    return {
        "shape": f"{config.rows}x{config.cols}", "accel_config": config.to_dict(),
        "tokens": tokens, "row_skip": row_skip,
        "bytes_per_token_dense": dense_beats * bpb / tokens,
        "bytes_per_token_skip": skip_beats * bpb / tokens,
        "cycles_per_token_dense": cyc_dense / tokens,
        "cycles_per_token_skip": cyc_skip / tokens,
        "by_projection": {name: {
            "zero_code_fraction": p["zero_codes"] / p["codes"],
            "zero_chunk_fraction": p["zero_chunks"] / p["chunks"],
            "beat_fraction_read": p["beats_skip"] / p["beats_dense"],
            "bytes_per_token_dense": p["beats_dense"] * bpb / tokens,
            "bytes_per_token_skip": p["beats_skip"] * bpb / tokens,
            "cycles_per_token_dense": p["cycles_dense"] / tokens,
            "cycles_per_token_skip": p["cycles_skip"] / tokens,
        } for name, p in per.items()},
    }


def best_per_projection(shapes: list[dict]) -> dict:
    """The shape with the fewest skipping cycles for each projection, and the token's totals
    if each projection ran in its own shape (an array that can switch shapes per command)."""
    choice = {p: min(shapes, key=lambda s: s["by_projection"][p]["cycles_per_token_skip"])
              for p in PROJECTIONS}
    return {"choice": {p: s["shape"] for p, s in choice.items()},
            "bytes_per_token_skip": sum(s["by_projection"][p]["bytes_per_token_skip"]
                                        for p, s in choice.items()),
            "cycles_per_token_skip": sum(s["by_projection"][p]["cycles_per_token_skip"]
                                         for p, s in choice.items())}


def markdown(rep: dict) -> str:
    clock = rep["clock_mhz"]
    lines = [f"# Weight beats the a4.8 activations make unnecessary ({rep['checkpoint']})", "",
             f"{rep['tokens']} tokens ({rep['windows']} validation windows of "
             f"{rep['seq_len']}), engine clock {clock:g} MHz.", "",
             "| shape | bytes/token dense | skipping | ratio | cycles/token dense | skipping "
             "| tokens/s dense | skipping | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in rep["shapes"]:
        bd, bs = s["bytes_per_token_dense"], s["bytes_per_token_skip"]
        cd, cs = s["cycles_per_token_dense"], s["cycles_per_token_skip"]
        lines.append(f"| {s['shape']} | {bd:,.0f} | {bs:,.0f} | {bs / bd:.3f} | {cd:,.0f} | "
                     f"{cs:,.0f} | {clock * 1e6 / cd:,.0f} | {clock * 1e6 / cs:,.0f} | "
                     f"{cd / cs:.3f} |")
    base = rep["shapes"][0]
    best = rep["best_per_projection"]
    bd, cd = base["bytes_per_token_dense"], base["cycles_per_token_dense"]
    bs, cs = best["bytes_per_token_skip"], best["cycles_per_token_skip"]
    lines += ["", f"Against the dense stream of the first shape ({base['shape']}, "
              f"{bd:,.0f} bytes, {cd:,.0f} cycles per token): each shape skipping reads "
              + ", ".join(f"{s['shape']} {s['bytes_per_token_skip'] / bd:.3f}x bytes at "
                          f"{cd / s['cycles_per_token_skip']:.3f}x tokens/s"
                          for s in rep["shapes"])
              + "; the best shape per projection ("
              + ", ".join(f"{p.removesuffix('_proj')} {v}" for p, v in best["choice"].items())
              + f") {bs / bd:.3f}x bytes at {cd / cs:.3f}x tokens/s."]
    lines += ["", "Fraction of all-zero activation chunks per projection (zero codes in "
              "brackets) and, after `/`, the fraction of its beats still read:", "",
              "| shape | " + " | ".join(p.removesuffix("_proj") for p in PROJECTIONS) + " |",
              "|---|" + "---:|" * len(PROJECTIONS)]
    for s in rep["shapes"]:
        cells = []
        for p in PROJECTIONS:
            f = s["by_projection"][p]
            cells.append(f"{f['zero_chunk_fraction']:.2f} ({f['zero_code_fraction']:.2f}) / "
                         f"{f['beat_fraction_read']:.2f}")
        lines.append(f"| {s['shape']} | " + " | ".join(cells) + " |")
    lines += ["", "Assumptions: " + rep["assumptions"], ""]
    return "\n".join(lines)


ASSUMPTIONS = (
    "the skipping engine is a projection (not built yet) that takes the beats it needs one per "
    "cycle, knows the zero flags before its beats start and spends no cycle on a skipped beat; "
    "its drain is the dense engine's (a tile of no beats costs its drain only; "
    "model.accel_cycles.tile_cycles). The dense figures are the engine's tested cycle model. "
    "One command per projection per decode token; only the BitLinear projections are counted "
    "(not norms, attention, LM head or the host link). Up-projection row tiles are skipped when "
    "all their gate accumulators are <= 0 (row skip on). Codes come from the golden model over "
    "whole windows, equal to a decode of the same text.")


