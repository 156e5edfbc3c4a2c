"""The first call of a new shape against later calls of it (float32 forward, loop="auto", numba's cache warm).

Each shape in a process of its own, after calls of unrelated shapes on both CPU loops, one and two directions,
forward and backward (so the process has loaded rnn_xp and numba's kernels, as a process that has used rnn_xp
before): the first call of the shape, then the median of later calls. A second column gives the first call in a
fresh process (imports and numba's cache load included).
Nothing is measured inside rnn_xp's calls (there is no calibration), so the first call of a shape costs what any
call does, plus NumPy's first touches of new buffers.

    python bench/first_call.py [--out bench/runs]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

# (T, B, I, H, directions): the CPU table's shapes, both loops, and bidirectional ones
SHAPES = ((1000, 1, 16, 32, 1), (100, 1, 32, 128, 1), (64, 1, 64, 512, 1), (256, 4, 64, 128, 1),
          (64, 8, 64, 256, 1), (100, 8, 64, 128, 2), (100, 32, 64, 128, 1), (64, 32, 64, 1024, 1),
          (100, 64, 256, 256, 1), (64, 512, 64, 256, 2))

_CHILD = """
import sys, time, statistics, json
import numpy as np
started = time.perf_counter()
import rnn_xp
T, B, I, H, D, warm = (int(v) for v in sys.argv[1:7])
if warm:
    for batch, loop, bidirectional in ((3, "compiled", False), (3, "numpy", True), (1, "compiled", True),
                                       (3, "numpy", False)):
        other = rnn_xp.RNN(5, 24, bidirectional=bidirectional, seed=9, loop=loop)
        out, _ = other(np.ones((7, batch, 5), dtype=np.float32))
        other.backward(np.ones_like(out))
rnn = rnn_xp.RNN(I, H, bidirectional=D == 2, seed=0)
x = np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)
begin = time.perf_counter()
rnn(x)
first = time.perf_counter() - begin
later = []
for _ in range(7):
    begin = time.perf_counter()
    rnn(x)
    later.append(time.perf_counter() - begin)
print(json.dumps({"first_s": first, "later_s": statistics.median(later),
                  "since_start_s": time.perf_counter() - started}))
"""


def run(shape: tuple[int, ...], warm: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, *map(str, shape), str(int(warm))], capture_output=True,
                         text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--repeats", type=int, default=3, help="processes per shape (the median is reported)")
    args = parser.parse_args()
    run(SHAPES[0], True)  # numba's on-disk cache filled
    rows = []
    for shape in SHAPES:
        warm = [run(shape, True) for _ in range(args.repeats)]
        cold = [run(shape, False) for _ in range(args.repeats)]
        rows.append({
            "shape": shape,
            "first_s": statistics.median(r["first_s"] for r in warm),
            "later_s": statistics.median(r["later_s"] for r in warm),
            "first_in_fresh_process_s": statistics.median(r["first_s"] for r in cold),
            "ratios": sorted(r["first_s"] / r["later_s"] for r in warm),
        })
    lines = ["The first call of a new shape against later calls (float32 forward, loop=\"auto\"), median of "
             f"{args.repeats} processes; ratio range over the processes.", "",
             "| T, B, I, H | dirs | first call ms | later call ms | first / later | range | first call in a fresh "
             "process ms |", "|---|---|---:|---:|---:|---|---:|"]
    for row in rows:
        steps, batch, inputs, hidden, directions = row["shape"]
        lines.append(f"| {steps}, {batch}, {inputs}, {hidden} | {'bi' if directions == 2 else 'uni'} | "
                     f"{row['first_s'] * 1e3:.3f} | "
                     f"{row['later_s'] * 1e3:.3f} | {row['first_s'] / row['later_s']:.2f} | "
                     f"{row['ratios'][0]:.2f}-{row['ratios'][-1]:.2f} | {row['first_in_fresh_process_s'] * 1e3:.1f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    from rnn_xp.benchmark import results
    from rnn_xp.benchmark.machine import cpu_model

    path = results.save_table(rows, table, args.out, results.file_stem(cpu_model()) + "-first-call")
    print(f"wrote {path} and .md")


if __name__ == "__main__":
    main()
