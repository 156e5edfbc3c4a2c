"""rnn_xp on NumPy vs torch.nn.RNN on the CPU, at the sizes of the core issue: a configuration of the sweep.

The cases run through :func:`rnn_xp.benchmark.sweep.run_sweep` (same timing, same correctness check, same JSON
schema as ``rnn-xp bench``); this script only picks the cases and prints the table the README quotes: the time ratio
rnn_xp/torch per row for forward and forward+backward, their geometric means, and GFLOP/s against the sgemm peak
measured in the same run.

    python bench/cpu_vs_torch.py [--out bench/runs] [--max-seconds 2]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from rnn_xp.benchmark import results
from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.sweep import SweepConfig, run_sweep

CASES = (
    Case(100, 1, 32, 128),
    Case(100, 32, 64, 128),
    Case(100, 64, 256, 256),
    Case(200, 128, 256, 512),
    Case(50, 256, 512, 1024),
    Case(1000, 16, 32, 64),
    Case(100, 32, 64, 128, num_layers=2, bidirectional=True),
)


def config(max_seconds: float) -> SweepConfig:
    """The sweep with no grid, only :data:`CASES`, on the CPU against torch."""
    return SweepConfig(devices=["cpu"], seq_lens=(), batches=(), hidden=(), peers=("torch",), max_seconds=max_seconds,
                       extra_cases=CASES)


def markdown(result: dict[str, Any]) -> str:
    """One line per case: times, the rnn_xp/torch ratio (below 1: rnn_xp faster) and GFLOP/s, both directions."""
    by_case: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        by_case.setdefault(row["case"]["label"], {})[row["direction"]] = row
    lines = [
        results.machine_line(result), "",
        "| case | fwd rnn_xp ms | fwd torch ms | fwd ratio | fwd GFLOP/s | % peak | fwd+bwd rnn_xp ms "
        "| fwd+bwd torch ms | fwd+bwd ratio | fwd+bwd GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios: dict[str, list[float]] = {"fwd": [], "train": []}
    for label, rows in by_case.items():
        cells = [label]
        for direction in ("fwd", "train"):
            row = rows[direction]
            ours, torch = row["results"]["rnn_xp"], row["results"]["torch"]
            ratio = ours["median_s"] / torch["median_s"]
            ratios[direction].append(ratio)
            cells += [f"{ours['median_s'] * 1e3:.2f}", f"{torch['median_s'] * 1e3:.2f}", f"{ratio:.2f}",
                      f"{ours['gflops']:.1f}"]
            if direction == "fwd":
                cells.append(f"{100 * ours['fraction_of_peak']:.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    geo = {d: math.exp(sum(map(math.log, r)) / len(r)) for d, r in ratios.items() if r}
    lines.append(f"| **geometric mean** | | | **{geo['fwd']:.2f}** | | | | | **{geo['train']:.2f}** | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--max-seconds", type=float, default=2.0, help="timing budget per implementation and row")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # the same thread count as NumPy's BLAS
    result = run_sweep(config(args.max_seconds))
    table = markdown(result)
    print(table)
    paths = results.save(result, args.out, "cpu_vs_torch")
    (args.out / "cpu_vs_torch.md").write_text(table)
    print(f"wrote {paths['json']} and {args.out / 'cpu_vs_torch.md'}")


if __name__ == "__main__":
    main()
