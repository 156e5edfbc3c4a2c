"""rnn_xp on JAX arrays (the ``lax.scan`` loop, rnn_xp.loops.jax_scan) against a hand-written ``lax.scan`` RNN: the
first call of ``jax.jit`` (tracing + compiling + one run) and a later call, for the forward and for ``jit(grad)``.

The hand-written RNN is the benchmark's JAX peer (:func:`rnn_xp.benchmark.peers_jax.forward`: the input projection
as one matmul, then one ``lax.scan`` per direction). Both sides: CPU, float32, I=16, H=64, B=8, one tanh layer,
h0 = 0, the same weights and input; the forward returns ``out``; ``jit(grad)`` differentiates
``sum(out * grad_out)`` with respect to every parameter and x. With ``lengths`` (rows marked so) the lengths are an
argument of the jitted function, i.e. traced, on both sides (drawn in [T/2, T], the first = T).

Every (T, function, lengths, implementation) has its first call timed in a fresh process, so that no compile cache
helps it (JAX's persistent cache is off); the processes of the implementations alternate, repeat after repeat, and
a first-call ratio (rnn_xp / lax.scan) pairs the two processes of one repeat. A later call is the median of up to 30
calls after 3 warm-up calls; in rnn_xp's process they alternate, call by call, with the hand-written scan's
(compiled after rnn_xp's first call), and the later-call ratio is the median of those pairs: calls made under the
same load, which on a shared machine varies more between processes than the ratio does. Optionally
(``--generic-up-to``) the generic loop (``loop="generic"``, the unrolled Python loop that JAX arrays got before) at
the smaller T, for the before/after.

Targets (issue 25): the first ``jit(grad)`` call at T=1000 at most 2x the hand-written scan's; a later call at most
1.2x. Writes <out>/<cpu>-jax-scan.json and .md (default out: bench/runs, which git ignores; the project's run is
kept in bench/results/):

    python bench/jax_scan.py [--out bench/runs] [--repeats 3] [--steps 100 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rnn_xp.benchmark.machine import cpu_model, describe
from rnn_xp.benchmark.results import file_stem

INPUT, HIDDEN, BATCH = 16, 64, 8
IMPLEMENTATIONS = ("rnn_xp", "lax.scan")
FUNCTIONS = ("forward", "jit(grad)")
LATER_CALLS, WARM_UP_CALLS, LATER_SECONDS = 30, 3, 3.0


def child(implementation: str, function: str, num_steps: int, with_lengths: bool) -> dict[str, Any]:
    """Time the first call of ``implementation`` in this (fresh) process, then its later calls; for rnn_xp and the
    generic loop, the later calls alternate with the hand-written scan's (compiled after the first call was timed),
    so that their ratio pairs calls made under the same load."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)
    import jax.numpy as jnp

    from rnn_xp.benchmark.peers_jax import forward as scan_forward
    from rnn_xp.functional import rnn_forward
    from rnn_xp.params import ParamLayout, init_params

    rng = np.random.default_rng(1)
    params = {k: jnp.asarray(v) for k, v in
              init_params(ParamLayout(INPUT, HIDDEN, 1, 1, True), seed=0, dtype="float32").items()}
    x = jnp.asarray(rng.standard_normal((num_steps, BATCH, INPUT), dtype=np.float32))
    grad_out = jnp.asarray(rng.standard_normal((num_steps, BATCH, HIDDEN), dtype=np.float32))
    lengths = rng.integers(num_steps // 2, num_steps + 1, BATCH).astype(np.int32)
    lengths[0] = num_steps
    arguments = (params, x, jnp.asarray(lengths) if with_lengths else None)

    def compiled(name: str) -> Any:
        def run(p: dict[str, Any], x: Any, lengths: Any | None) -> Any:
            if name == "lax.scan":
                return scan_forward(p, x, lengths, 1, 1)
            return rnn_forward(x, p, lengths=lengths, loop="generic" if name == "generic" else "auto")[0]

        def loss(p: dict[str, Any], x: Any, lengths: Any | None) -> Any:
            return jnp.sum(run(p, x, lengths) * grad_out)

        return jax.jit(run) if function == "forward" else jax.jit(jax.grad(loss, argnums=(0, 1)))

    own = compiled(implementation)
    jax.block_until_ready((arguments, grad_out, jnp.zeros(1) + 1))  # the CPU client is up
    start = time.perf_counter()
    jax.block_until_ready(own(*arguments))
    first = time.perf_counter() - start
    timed = {implementation: own}
    if implementation != "lax.scan":
        timed["lax.scan"] = compiled("lax.scan")
    for call in timed.values():
        for _ in range(WARM_UP_CALLS):
            jax.block_until_ready(call(*arguments))
    later: dict[str, list[float]] = {name: [] for name in timed}
    began = time.perf_counter()
    while len(later[implementation]) < LATER_CALLS and (
        len(later[implementation]) < 5 or time.perf_counter() - began < LATER_SECONDS * len(timed)
    ):
        for name, call in timed.items():
            start = time.perf_counter()
            jax.block_until_ready(call(*arguments))
            later[name].append(time.perf_counter() - start)
    result = {"first_s": first, "later_s": statistics.median(later[implementation]), "later_samples_s": later}
    if implementation != "lax.scan":
        result["later_over_scan"] = statistics.median([a / b for a, b in zip(*later.values(), strict=True)])
    return result


def run_child(implementation: str, function: str, num_steps: int, with_lengths: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", implementation, function, str(num_steps), str(int(with_lengths))]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        msg = f"{' '.join(command)} failed:\n{done.stderr}"
        raise RuntimeError(msg)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(steps: list[int], repeats: int, generic_up_to: int) -> list[dict[str, Any]]:
    rows = []
    for num_steps in steps:
        for function in FUNCTIONS:
            for with_lengths in (False, True):
                implementations = IMPLEMENTATIONS + (("generic",) if num_steps <= generic_up_to else ())
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in implementations}
                for repeat in range(repeats):
                    # alternate which implementation goes first, so that a drift in the machine's load is shared
                    order = implementations if repeat % 2 == 0 else implementations[::-1]
                    for name in order:
                        runs[name].append(run_child(name, function, num_steps, with_lengths))
                        print(f"T={num_steps} {function} lengths={with_lengths} {name} repeat {repeat}: "
                              f"first {runs[name][-1]['first_s']:.3f} s, later "
                              f"{1e3 * runs[name][-1]['later_s']:.3f} ms", file=sys.stderr, flush=True)
                row: dict[str, Any] = {"steps": num_steps, "function": function, "lengths": with_lengths,
                                       "runs": runs}
                for name in implementations:
                    for what in ("first", "later"):
                        row[f"{name} {what}"] = spread([r[f"{what}_s"] for r in runs[name]])
                    if name != "lax.scan":
                        row[f"{name}/lax.scan first"] = spread([
                            a["first_s"] / b["first_s"] for a, b in zip(runs[name], runs["lax.scan"], strict=True)
                        ])
                        row[f"{name}/lax.scan later"] = spread([r["later_over_scan"] for r in runs[name]])
                rows.append(row)
    return rows


def _cell(entry: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
    return (f"{scale * entry['median']:.{digits}g} [{scale * entry['min']:.{digits}g}–"
            f"{scale * entry['max']:.{digits}g}]")


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# rnn_xp's lax.scan loop against a hand-written lax.scan RNN (JAX {result['jax']}, CPU)",
        "",
        f"{result['machine']['cpu']['model']}, {result['machine']['cpu']['logical_cores']} logical cores; float32, "
        f"I={INPUT}, H={HIDDEN}, B={BATCH}, one tanh layer; {result['repeats']} repeats, each call timed in a "
        "fresh process. Cells: median [min–max] over the repeats; ratios rnn_xp / lax.scan (below 1: rnn_xp is "
        "faster): first calls paired by repeat, later calls alternated in rnn_xp's process. `generic`: rnn_xp's "
        "generic loop (unrolled by jit), what JAX arrays ran before this loop.",
        "",
        "| T | function | lengths | implementation | first call (s) | first / lax.scan | later call (ms) | "
        "later / lax.scan |",
        "|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        names = [n for n in ("rnn_xp", "generic", "lax.scan") if f"{n} first" in row]
        for name in names:
            ratio = name != "lax.scan"
            lines.append(
                f"| {row['steps']} | {row['function']} | {'traced' if row['lengths'] else 'none'} | {name} | "
                f"{_cell(row[f'{name} first'])} | "
                f"{_cell(row[f'{name}/lax.scan first'], digits=2) if ratio else ''} | "
                f"{_cell(row[f'{name} later'], 1e3)} | "
                f"{_cell(row[f'{name}/lax.scan later'], digits=2) if ratio else ''} |"
            )
    lines += ["", "Targets (issue 25): `jit(grad)` at T=1000, first call <= 2x lax.scan's, later call <= 1.2x:"]
    for row in result["rows"]:
        if row["steps"] == 1000 and row["function"] == "jit(grad)":
            first, later = row["rnn_xp/lax.scan first"]["median"], row["rnn_xp/lax.scan later"]["median"]
            lines.append(f"- lengths {'traced' if row['lengths'] else 'none'}: first {first:.2f}x "
                         f"({'met' if first <= 2 else 'missed'}), later {later:.2f}x "
                         f"({'met' if later <= 1.2 else 'missed'}) (medians)")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        implementation, function, num_steps, with_lengths = sys.argv[2:6]
        print(json.dumps(child(implementation, function, int(num_steps), with_lengths == "1")))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--generic-up-to", type=int, default=100,
                        help="also time the generic loop at T up to this (its compile time grows with T)")
    args = parser.parse_args()
    import jax

    result = {"jax": jax.__version__, "machine": describe(), "repeats": args.repeats,
              "sizes": {"input": INPUT, "hidden": HIDDEN, "batch": BATCH, "dtype": "float32"},
              "rows": measure(args.steps, args.repeats, args.generic_up_to)}
    table = markdown(result)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = file_stem(cpu_model()) + "-jax-scan"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table)
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
