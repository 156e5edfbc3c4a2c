"""The reduced GPU sweep of a device run (tools/gpu_session.py): forward and forward+backward against cuDNN, with the
CPU timed on the same rows (the GPU/CPU column), on the 14 rows that missed on the H100 and 6 that did not.

    python bench/gpu_sweep.py --out DIR [--max-seconds 0.15] [--list]

Writes DIR/sweep.json (the `rnn-xp bench` result schema) and prints the Markdown table and the verdict. Each case is
measured on the CPU and the GPU before the next (rnn_xp.benchmark.sweep), so a run stopped by SIGINT keeps whole
CPU/GPU pairs. The H100 run: bench/results/nvidia-h100-80gb-hbm3-cuda.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnn_xp.benchmark.cases import Case

INPUT_SIZE = 64
# Forward slower than cuDNN on the H100: every H=128 row, H=2048 at B=64, H=4096 at B=1.
MISSED = tuple([Case(t, b, INPUT_SIZE, 128) for b in (1, 8, 64, 256) for t in (64, 256, 1024)]
               + [Case(256, 64, INPUT_SIZE, 2048), Case(256, 1, INPUT_SIZE, 4096)])
# Faster there (regressions would show): the persistent kernel at mid sizes, bidirectional, the per-step path's edge.
WON = (Case(256, 8, INPUT_SIZE, 512), Case(1024, 64, INPUT_SIZE, 512), Case(256, 64, INPUT_SIZE, 1024),
       Case(1024, 8, INPUT_SIZE, 1024), Case(256, 8, INPUT_SIZE, 2048),
       Case(256, 64, INPUT_SIZE, 512, bidirectional=True))
ROWS = MISSED + WON


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--max-seconds", type=float, default=0.15, help="timing budget per implementation and row")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    options = parser.parse_args(argv)
    if options.list:
        for case in ROWS:
            print(("missed " if case in MISSED else "won    ") + case.label)
        return 0
    from rnn_xp.benchmark import results
    from rnn_xp.benchmark.sweep import SweepConfig, run_sweep
    from rnn_xp.benchmark.verdict import verdict

    config = SweepConfig(devices=["cpu", "cuda"], seq_lens=(), batches=(), hidden=(), input_size=INPUT_SIZE,
                         peers=("torch-cudnn",), quick=True, max_seconds=options.max_seconds, extra_cases=ROWS)
    result = run_sweep(config, progress_bar=False,
                       on_row=lambda row: print(json.dumps({k: row[k] for k in ("device", "direction", "speedup_vs")}
                                                           | {"case": row["case"]["label"]}), flush=True))
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n")
    print(results.markdown(result, with_verdict=False))
    print("\n".join(verdict(result)))
    return 130 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
