"""Print how closely the project's loaders reproduce each reference checkpoint (numpy only).

Run from the repo root: ``python tests/data/checkpoints/compare.py [--json FILE]``. For every
variant of ``manifest.json``: the largest logit difference relative to the reference's largest
|logit|, the next-token agreement, the largest relative difference of the BitLinear scales, the
accumulators on the reference's codes (exact or not) and how many of the golden model's own
activation codes differ from the reference's. ``tests/test_checkpoint_reference.py`` asserts
the bounds; this prints the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from model import checkpoint as ckpt  # noqa: E402
from model.bitlinear import ternary_matmul  # noqa: E402


def compare(name: str, v: dict) -> dict:
    path = HERE / v["checkpoint"]
    ck = (ckpt.load_gguf(path, hidden_act=v.get("hidden_act")) if v["format"] == "gguf"
          else ckpt.load(path))
    with np.load(HERE / v["reference"]) as z:
        ref = {k: z[k] for k in z.files}
    seen = {}

    def hook(p, xq, trits):
        seen.setdefault(p, xq.copy())
        return ternary_matmul(xq, trits)

    rel, same, total = 0.0, 0, 0
    for i, (seq, want) in enumerate(zip(ref["tokens"], ref["logits"], strict=True)):
        got = ck.transformer(matmul=hook if i == 0 else None).forward(seq)
        rel = max(rel, float(np.abs(got - want).max() / np.abs(want).max()))
        same += int((got.argmax(-1) == want.argmax(-1)).sum())
        total += len(seq)
    gamma_rel = max(abs(float(t.gamma) / float(ref[p + ":gamma"]) - 1)
                    for p, t in ck.ternary.items())
    acc_exact = all(np.array_equal(ternary_matmul(ref[p + ":xq"], t.trits), ref[p + ":acc"])
                    for p, t in ck.ternary.items())
    codes = sum(ref[p + ":xq"].size for p in seen)
    differ = sum(int(np.count_nonzero(seen[p] != ref[p + ":xq"])) for p in seen)
    return {"max_rel_logit_diff": rel, "argmax_equal": f"{same}/{total}",
            "max_rel_gamma_diff": gamma_rel, "acc_exact": acc_exact,
            "codes_differ": f"{differ}/{codes}", "projections": len(ck.ternary)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    manifest = json.loads((HERE / "manifest.json").read_text())
    rows = {name: compare(name, v) for name, v in sorted(manifest["variants"].items())}
    print("| variant | max rel. logit diff | argmax equal | max rel. gamma diff | acc exact | "
          "codes differing |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['max_rel_logit_diff']:.2e} | {r['argmax_equal']} | "
              f"{r['max_rel_gamma_diff']:.1e} | {r['acc_exact']} | {r['codes_differ']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
