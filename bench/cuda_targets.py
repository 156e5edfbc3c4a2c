"""The GPU issue's targets, read off a committed CUDA sweep: rnn_xp time / cuDNN time per row, and which hold.

    python bench/cuda_targets.py bench/results/nvidia-h100-80gb-hbm3-cuda.json

Targets: ratio <= 1.0 on every row; <= 0.5 on every row with B <= 8 (forward and forward+backward).
Prints a Markdown table (one line per case, both directions) and a summary; exits 0 either way (a benchmark
reports, it does not assert).
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnn_xp.benchmark import results
from rnn_xp.benchmark.results import _layers_cell


def main(argv: list[str]) -> int:
    document = results.load(Path(argv[0]))
    table: dict[str, dict[str, float]] = {}
    cases: dict[str, dict] = {}
    for row in document["rows"]:
        if row["device"] != "cuda":
            continue
        ours = row["results"].get("rnn_xp", {}).get("median_s")
        peer = row["results"].get("torch-cudnn", {}).get("median_s")
        if ours and peer:
            table.setdefault(row["case"]["label"], {})[row["direction"]] = ours / peer
            cases[row["case"]["label"]] = row["case"]
    print("| T | B | H | layers | fwd time / cuDNN | fwd+bwd time / cuDNN | target | holds |")
    print("|---:|---:|---:|---|---:|---:|---:|---|")
    held = 0
    for label, ratios in table.items():
        case = cases[label]
        target = 0.5 if case["batch"] <= 8 else 1.0
        ok = all(r <= target for r in ratios.values())
        held += ok
        cells = [f"{ratios[d]:.2f}" if d in ratios else "—" for d in ("fwd", "train")]
        print(f"| {case['seq_len']} | {case['batch']} | {case['hidden']} | {_layers_cell(case)} | "
              f"{cells[0]} | {cells[1]} | ≤ {target} | {'yes' if ok else '**no**'} |")
    print(f"\n{held} of {len(table)} cases meet their target.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
