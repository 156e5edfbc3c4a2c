"""rnn_xp on NumPy vs torch.nn.RNN on the CPU: same process, same thread count, float32.

Prints and saves (JSON + Markdown) the time ratio rnn_xp/torch per row for forward and forward+backward, their
geometric means, and achieved GFLOP/s against a NumPy sgemm peak measured in the same run.

    python bench/cpu_vs_torch.py [--out bench/results] [--max-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

import rnn_xp
from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.machine import cpu_model
from rnn_xp.benchmark.peers import RnnXp, Torch
from rnn_xp.benchmark.timing import measure, measure_alternating

CASES = [
    Case(100, 1, 32, 128),
    Case(100, 32, 64, 128),
    Case(100, 64, 256, 256),
    Case(200, 128, 256, 512),
    Case(50, 256, 512, 1024),
    Case(1000, 16, 32, 64),
    Case(100, 32, 64, 128, num_layers=2, bidirectional=True),
]


def sgemm_peak(size: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a float32 (size x size) @ (size x size) NumPy matmul, median of repeats."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    timing = measure(lambda: np.matmul(a, b, out=out), max_seconds=seconds)
    return 2.0 * size**3 / timing.median / 1e9


def run(max_seconds: float) -> dict[str, object]:
    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    peak = sgemm_peak()
    rows = []
    for case in CASES:
        rng = np.random.default_rng(0)
        weights = rnn_xp.RNN(
            case.input_size, case.hidden, num_layers=case.num_layers, bidirectional=case.bidirectional, seed=0
        ).state_dict()
        x = rng.standard_normal((case.seq_len, case.batch, case.input_size)).astype(np.float32)
        grad_out = rng.standard_normal((case.seq_len, case.batch, case.directions * case.hidden)).astype(np.float32)
        ours, theirs = RnnXp("cpu"), Torch("cpu")
        for peer in (ours, theirs):
            peer.setup(case, weights, x, grad_out)
        expected = ours.output()
        error = float(np.max(np.abs(theirs.output() - expected)))
        if error > 1e-4 * max(1.0, float(np.max(np.abs(expected)))):
            msg = f"{case.label}: torch and rnn_xp disagree by {error:.2e}; not timing a wrong answer"
            raise RuntimeError(msg)
        row: dict[str, object] = {**case.as_dict(), "max_abs_diff_vs_torch": error}
        for kind, flops in (("forward", case.forward_flops()), ("train", case.train_flops())):
            method = "forward" if kind == "forward" else "train_step"
            timings = measure_alternating(
                {"rnn_xp": getattr(ours, method), "torch": getattr(theirs, method)}, max_seconds=max_seconds
            )
            ours_t, theirs_t = timings["rnn_xp"], timings["torch"]
            row[kind] = {
                "rnn_xp": ours_t.as_dict(),
                "torch": theirs_t.as_dict(),
                "ratio": ours_t.median / theirs_t.median,
                "rnn_xp_gflops": flops / ours_t.median / 1e9,
                "torch_gflops": flops / theirs_t.median / 1e9,
                "rnn_xp_fraction_of_sgemm_peak": flops / ours_t.median / 1e9 / peak,
            }
        rows.append(row)
        print(_line(row), flush=True)
    summary = {
        kind: math.exp(sum(math.log(r[kind]["ratio"]) for r in rows) / len(rows))  # type: ignore[index]
        for kind in ("forward", "train")
    }
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": cpu_model(),
            "threads": threads,
            "numpy": np.__version__,
            "torch": torch.__version__,
            "rnn_xp": rnn_xp.__version__,
        },
        "sgemm_peak_gflops": peak,
        "rows": rows,
        "geomean_ratio": summary,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _line(row: dict[str, object]) -> str:
    f, t = row["forward"], row["train"]
    return (
        f"{row['label']:<28} fwd {f['rnn_xp']['median_s'] * 1e3:9.2f} ms vs {f['torch']['median_s'] * 1e3:9.2f} ms "  # type: ignore[index]
        f"= {f['ratio']:.2f}x | fwd+bwd {t['rnn_xp']['median_s'] * 1e3:9.2f} ms vs "  # type: ignore[index]
        f"{t['torch']['median_s'] * 1e3:9.2f} ms = {t['ratio']:.2f}x"  # type: ignore[index]
    )


def markdown(result: dict[str, object]) -> str:
    peak = result["sgemm_peak_gflops"]
    lines = [
        f"CPU: {result['machine']['processor']}, {result['machine']['threads']} threads; "  # type: ignore[index]
        f"NumPy sgemm peak {peak:.1f} GFLOP/s; float32",
        "",
        "| case (T-B-I-H) | fwd rnn_xp ms | fwd torch ms | fwd ratio | fwd GFLOP/s | % peak | fwd+bwd rnn_xp ms "
        "| fwd+bwd torch ms | fwd+bwd ratio | fwd+bwd GFLOP/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:  # type: ignore[attr-defined]
        f, t = row["forward"], row["train"]
        lines.append(
            f"| {row['label']} | {f['rnn_xp']['median_s'] * 1e3:.2f} | {f['torch']['median_s'] * 1e3:.2f} "
            f"| {f['ratio']:.2f} | {f['rnn_xp_gflops']:.1f} | {100 * f['rnn_xp_fraction_of_sgemm_peak']:.0f}% "
            f"| {t['rnn_xp']['median_s'] * 1e3:.2f} | {t['torch']['median_s'] * 1e3:.2f} | {t['ratio']:.2f} "
            f"| {t['rnn_xp_gflops']:.1f} |"
        )
    geo = result["geomean_ratio"]
    lines.append(f"| **geometric mean** | | | **{geo['forward']:.2f}** | | | | | **{geo['train']:.2f}** | |")  # type: ignore[index]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--max-seconds", type=float, default=2.0, help="timing budget per implementation and row")
    args = parser.parse_args()
    result = run(args.max_seconds)
    table = markdown(result)
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_vs_torch.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "cpu_vs_torch.md").write_text(table)
    print(f"wrote {args.out / 'cpu_vs_torch.json'} and {args.out / 'cpu_vs_torch.md'}")


if __name__ == "__main__":
    main()
