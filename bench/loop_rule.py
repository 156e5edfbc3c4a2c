"""The measurements behind the CPU plan's fixed rule (:data:`rnn_xp._plan.COMPILED_MAX_BATCH`): for float32 and float64,
one and two directions, hidden sizes 32..1024 and batches 1..128, a layer's forward (T=64, I=64) in the NumPy loop
and in the compiled loop, alternating, median of the repeats (:func:`rnn_xp.tuning.measure_cpu`, the very code
``rnn-xp tune`` runs on a user's machine).

Writes <out>/<cpu>-loop-rule.json and .md (default out: bench/runs, which git ignores; the project's run is kept in
bench/results/) and prints the table as the Python literal that ``rnn_xp/_plan.py`` holds:

    python bench/loop_rule.py [--out bench/runs] [--budget 0.3]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from rnn_xp import tuning
from rnn_xp.benchmark.machine import blas, cpu_model

CONFIGS = (("float32", 1), ("float32", 2), ("float64", 1), ("float64", 2))


def measure(budget: float) -> dict[str, Any]:
    rows = []
    choices = {}
    for dtype, directions in CONFIGS:
        table = tuning.measure_cpu(dtype, directions, budget=budget, progress=print)
        for (hidden, batch), seconds in sorted(table.items()):
            rows.append({"dtype": dtype, "directions": directions, "hidden": hidden, "batch": batch,
                         "numpy_s": seconds["numpy"], "compiled_s": seconds["compiled"]})
        choices[f"{dtype},{directions}"] = tuning.fit_max_batch(table, tuning.HIDDEN_SIZES, tuning.BATCHES)
    return {"machine": {**tuning.this_machine(), "blas": blas()}, "steps": tuning.STEPS,
            "input_size": tuning.INPUT_SIZE, "batches": list(tuning.BATCHES), "rows": rows, "choices": choices}


def markdown(result: dict[str, Any]) -> str:
    batches = result["batches"]
    machine = result["machine"]
    lines = [
        f"{machine['cpu']} ({machine['usable_cpus']} usable CPUs, {machine['blas']}); a layer's forward, "
        f"T={result['steps']}, I={result['input_size']}: compiled loop time / NumPy loop time (**bold**, below 1: the "
        "compiled loop is faster; blank: not measured, counted as the NumPy loop's). *plan*: the compiled loop up to "
        "this batch, the threshold that loses the least time over the row (rnn_xp.tuning.fit_max_batch).", "",
    ]
    by_key = {(r["dtype"], r["directions"], r["hidden"], r["batch"]): r for r in result["rows"]}
    for dtype, directions in CONFIGS:
        lines += [f"## {dtype}, {'bidirectional' if directions == 2 else 'one direction'}", "",
                  "| H \\ B | " + " | ".join(str(b) for b in batches) + " | plan |",
                  "|---:|" + "---:|" * len(batches) + "---|"]
        choices = result["choices"][f"{dtype},{directions}"]
        for hidden in tuning.HIDDEN_SIZES:
            cells = []
            for batch in batches:
                row = by_key.get((dtype, directions, hidden, batch))
                if row is None:
                    cells.append("")
                    continue
                ratio = row["compiled_s"] / row["numpy_s"]
                cells.append(f"**{ratio:.2f}**" if ratio <= 1.0 else f"{ratio:.2f}")
            lines.append(f"| {hidden} | " + " | ".join(cells) + f" | {choices[str(hidden)]} |")
        lines.append("")
    return "\n".join(lines)


def literal(result: dict[str, Any]) -> str:
    lines = ["COMPILED_MAX_BATCH: dict[tuple[str, int], dict[int, int]] = {"]
    for dtype, directions in CONFIGS:
        rows = result["choices"][f"{dtype},{directions}"]
        body = ", ".join(f"{hidden}: {largest}" for hidden, largest in rows.items())
        lines.append(f'    ("{dtype}", {directions}): {{{body}}},')
    return "\n".join([*lines, "}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of timing per loop and shape")
    args = parser.parse_args()
    result = measure(args.budget)
    result["choices"] = {key: {str(h): largest for h, largest in rows.items()}
                         for key, rows in result["choices"].items()}
    stem = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")[:40] + "-loop-rule"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    print(literal(result))
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
