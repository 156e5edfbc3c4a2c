"""The measurements behind the CPU plan's fixed rule (:data:`rnn_xp._plan.CPU_CHOICES`): for float32 and float64, one
and two directions, hidden sizes 32..1024 and batches 1..128, a layer's forward (T=64, I=64) in each CPU loop (the
NumPy loop, the compiled loop, the transposed NumPy loop), alternating, median of the repeats
(:func:`rnn_xp.tuning.measure_cpu`, the very code ``rnn-xp tune`` runs on a user's machine). ``--rounds N`` measures
the whole grid N times; each cell's choice takes, per loop, the median over the rounds of its time / the NumPy loop's
time in the same round (the loops alternate within a round, so a round's ratio is fair even when the machine was
disturbed, and the median drops a round where the disturbance hit one loop); the table shows that median ratio and
the spread over the rounds.

Writes <out>/<cpu>-loop-rule.json and .md (default out: bench/runs, which git ignores; the project's run is kept in
bench/results/) and prints the table as the Python literal that ``rnn_xp/_plan.py`` holds:

    python bench/loop_rule.py [--out bench/runs] [--budget 0.3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from rnn_xp import tuning
from rnn_xp.benchmark import results
from rnn_xp.benchmark.machine import blas, cpu_model

CONFIGS = (("float32", 1), ("float32", 2), ("float64", 1), ("float64", 2))


LOOPS = ("numpy", "compiled", "numpy_transposed")
OTHERS = (("compiled", "compiled loop"), ("numpy_transposed", "transposed NumPy loop"))


def measure(budget: float, rounds: int) -> dict[str, Any]:
    rows = []
    for dtype, directions in CONFIGS:
        tables = [tuning.measure_cpu(dtype, directions, budget=budget, progress=print) for _ in range(rounds)]
        for key in sorted(set().union(*tables)):
            seen = [table[key] for table in tables if key in table]
            row = {"dtype": dtype, "directions": directions, "hidden": key[0], "batch": key[1]}
            row.update({f"{loop}_s": statistics.median(s[loop] for s in seen if loop in s)
                        for loop in LOOPS if any(loop in s for s in seen)})
            row["ratios"] = {loop: sorted(s[loop] / s["numpy"] for s in seen if loop in s) for loop, _ in OTHERS}
            rows.append(row)
    result = {"machine": {**tuning.this_machine(), "blas": blas()}, "steps": tuning.STEPS, "rounds": rounds,
              "input_size": tuning.INPUT_SIZE, "batches": list(tuning.BATCHES), "rows": rows}
    return refit(result)


def median_ratio(ratios: list[float], rounds: int) -> float:
    """The median over the rounds of a loop's ratio to the NumPy loop, a round that did not time the loop (the
    compiled loop is left out along H once it has lost twice) counted as a loss."""
    return statistics.median([*ratios, *[math.inf] * (rounds - len(ratios))])


def refit(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its choices (re)computed from the rows' median ratios over the rounds."""
    result["choices"] = {}
    for dtype, directions in CONFIGS:
        table = {(r["hidden"], r["batch"]): {"numpy": 1.0} | {loop: median_ratio(ratios, result["rounds"])
                                                               for loop, ratios in r["ratios"].items() if ratios}
                 for r in result["rows"] if (r["dtype"], r["directions"]) == (dtype, directions)}
        result["choices"][f"{dtype},{directions}"] = tuning.winners(table, tuning.HIDDEN_SIZES, tuning.BATCHES)
    return result


def markdown(result: dict[str, Any]) -> str:
    batches = result["batches"]
    machine = result["machine"]
    lines = [
        f"{machine['cpu']} ({machine['usable_cpus']} usable CPUs, {machine['blas']}); a layer's forward, "
        f"T={result['steps']}, I={result['input_size']}, {result['rounds']} rounds: each loop's time / the NumPy "
        "loop's time in the same round, the median over the rounds (a round that left the compiled loop out, once "
        "it had lost twice at smaller batches, counts as a loss: *lost*), with the lowest and highest measured "
        f"ratio (**bold**, at most {tuning.WIN_MARGIN}: fast enough to be chosen; blank: not measured in any round). "
        "*plan*: the letters of rnn_xp._plan.CPU_CHOICES, one per batch: the NumPy loop (n) unless the compiled loop "
        f"(c) or the transposed NumPy loop (t) takes at most {tuning.WIN_MARGIN} of its time, then the faster of those "
        "(rnn_xp.tuning.winners).", "",
    ]
    by_key = {(r["dtype"], r["directions"], r["hidden"], r["batch"]): r for r in result["rows"]}
    for dtype, directions in CONFIGS:
        choices = result["choices"][f"{dtype},{directions}"]
        for loop, title in OTHERS:
            lines += [f"## {dtype}, {'bidirectional' if directions == 2 else 'one direction'}: the {title}", "",
                      "| H \\ B | " + " | ".join(str(b) for b in batches) + " | plan |",
                      "|---:|" + "---:|" * len(batches) + "---|"]
            for hidden in tuning.HIDDEN_SIZES:
                cells = []
                for batch in batches:
                    row = by_key.get((dtype, directions, hidden, batch))
                    if row is None or f"{loop}_s" not in row:
                        cells.append("")
                        continue
                    spread = row["ratios"][loop]
                    ratio = median_ratio(spread, result["rounds"])
                    spread_text = f" ({spread[0]:.2f}-{spread[-1]:.2f})" if len(spread) > 1 else ""
                    text = "lost" if math.isinf(ratio) else f"{ratio:.2f}"
                    cells.append((f"**{text}**" if ratio <= tuning.WIN_MARGIN else text) + spread_text)
                lines.append(f"| {hidden} | " + " | ".join(cells) + f" | `{choices[str(hidden)]}` |")
            lines.append("")
    return "\n".join(lines)


def literal(result: dict[str, Any]) -> str:
    lines = ["CPU_CHOICES: dict[tuple[str, int], dict[int, str]] = {"]
    for dtype, directions in CONFIGS:
        rows = result["choices"][f"{dtype},{directions}"]
        body = ", ".join(f'{hidden}: "{letters}"' for hidden, letters in rows.items())
        lines.append(f'    ("{dtype}", {directions}): {{{body}}},')
    return "\n".join([*lines, "}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of timing per loop and shape")
    parser.add_argument("--rounds", type=int, default=3, help="times the whole grid is measured")
    parser.add_argument("--refit", type=Path, default=None,
                        help="instead of measuring, recompute the choices of an earlier result JSON")
    args = parser.parse_args()
    result = refit(json.loads(args.refit.read_text())) if args.refit else measure(args.budget, args.rounds)
    result["choices"] = {key: {str(h): letters for h, letters in rows.items()}
                         for key, rows in result["choices"].items()}
    table = markdown(result) + "\n"
    path = results.save_table(result, table, args.out, results.file_stem(cpu_model()) + "-loop-rule")
    print(table)
    print(literal(result))
    print(f"wrote {path} and .md")


if __name__ == "__main__":
    main()
