"""rnn_xp on the CPU against torch.nn.RNN, ONNX Runtime (RNN op) and JAX (jit(lax.scan); jit(grad)), as ratios.

One run of :func:`rnn_xp.benchmark.sweep.run_sweep` over :data:`CASES` (the rows of issue 13 and a spread of the goal
grid: T 64..1000, B 1..512, H 32..1024, uni- and bidirectional), float32, one layer, tanh: every implementation gets
the same weights and input, a peer's output is checked against rnn_xp's before its time counts, and each
implementation is timed in a process of its own, one after the other (``--in-process``: all in this process,
alternating in blocks, as a user who embeds rnn_xp beside torch and JAX runs it; written to ``...-in-process``).
Ratio = rnn_xp time / peer time (below 1: rnn_xp faster). Also the per-step
latency at B=1 for H in {32, 128, 512} next to the arithmetic floor 2·H·(H+I) / (sgemm peak measured in the run).
Threads: torch and ONNX Runtime get every core (as NumPy's BLAS and XLA take by default).

NumPy's BLAS kernels: ``--openblas-coretype auto`` times every process with ``OPENBLAS_CORETYPE`` removed from its
environment (OpenBLAS then picks its kernels from the CPU, as on a machine that does not set it); a core name forces
that core; by default (``inherit``) the environment is left as it is. Only NumPy's OpenBLAS reads the variable (torch
uses MKL/oneDNN, XLA its own kernels). The table's first line names the kernels that ran, and a forced core is part
of the file name (``...-openblas-haswell-cpu-vs-peers``).

Writes <out>/<cpu>-cpu-vs-peers.json and .md (default out: bench/runs, which git ignores; the README quotes the
project's run, kept in bench/results/):

    python bench/cpu_vs_peers.py [--out bench/runs] [--max-seconds 1] [--openblas-coretype auto]   # make bench-peers
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rnn_xp.benchmark import results
from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.machine import cpu_model
from rnn_xp.benchmark.sweep import SweepConfig, run_sweep

CASES = (
    Case(1000, 1, 16, 32),
    Case(100, 1, 32, 128),
    Case(64, 1, 64, 512),
    Case(256, 4, 64, 128),
    Case(64, 8, 64, 256),
    Case(100, 8, 64, 128, bidirectional=True),
    Case(100, 32, 64, 128),
    Case(64, 32, 64, 1024),
    Case(100, 64, 256, 256),
    Case(200, 128, 256, 512),
    Case(64, 512, 64, 256),
    Case(64, 512, 64, 256, bidirectional=True),
)
LATENCY_HIDDEN = (32, 128, 512)  # the B=1 rows above with these H give the per-step latency table
PEERS = ("torch", "onnxruntime", "jax")


def config(max_seconds: float, only: str | None = None) -> SweepConfig:
    """The sweep of every implementation in one process, or (``only``) the one that times just ``only``."""
    if only is None:
        return SweepConfig(devices=["cpu"], seq_lens=(), batches=(), hidden=(), peers=PEERS,
                           max_seconds=max_seconds, extra_cases=CASES)
    peers = () if only == "rnn_xp" else (only,)
    return SweepConfig(devices=["cpu"], seq_lens=(), batches=(), hidden=(), peers=peers, max_seconds=max_seconds,
                       extra_cases=CASES, timed=(only,))


def environment(openblas_coretype: str) -> dict[str, str]:
    """The environment the timing processes get: this one, with ``OPENBLAS_CORETYPE`` removed (``auto``), set to a
    core name, or as it is (``inherit``)."""
    env = dict(os.environ)
    if openblas_coretype == "auto":
        env.pop("OPENBLAS_CORETYPE", None)
    elif openblas_coretype != "inherit":
        env["OPENBLAS_CORETYPE"] = openblas_coretype
    return env


def isolated_sweep(max_seconds: float, workdir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Each implementation timed in a process of its own (one after the other), merged into one result.

    In one process the libraries' thread pools disturb each other: at T=200, B=128, H=512 rnn_xp took 100 ms alone
    and 146 ms (median of nine calls) right after a block of JAX calls. A user runs one of them; so does this.
    Every process still checks its implementation's output against rnn_xp's before timing it."""
    parts: dict[str, dict[str, Any]] = {}
    for name in ("rnn_xp", *PEERS):
        path = workdir / f"{name}.json"
        command = [sys.executable, __file__, "--only", name, "--max-seconds", str(max_seconds), "--json", str(path)]
        subprocess.run(command, check=True, env=env)
        parts[name] = json.loads(path.read_text())
    merged = parts["rnn_xp"]
    merged["isolated"] = True
    merged["missing_peers"] = [m for part in parts.values() for m in part["missing_peers"]]
    peer_rows = {
        name: {(row["case"]["label"], row["direction"]): row for row in part["rows"]}
        for name, part in parts.items() if name != "rnn_xp"
    }
    for row in merged["rows"]:
        ours = row["results"]["rnn_xp"].get("median_s")
        for name, rows in peer_rows.items():
            theirs = rows.get((row["case"]["label"], row["direction"]))
            if theirs is None or name not in theirs["results"]:
                continue
            row["results"][name] = theirs["results"][name]
            seconds = theirs["results"][name].get("median_s")
            if ours and seconds:
                row["speedup_vs"][name] = seconds / ours
    return merged


def _loop_chosen(case: dict[str, Any]) -> str:
    from rnn_xp._plan import cpu_loop_name

    return cpu_loop_name("float32", case["batch"], case["hidden"], 2 if case["bidirectional"] else 1)


def markdown(result: dict[str, Any]) -> str:
    """The ratio table (misses of the goal in bold), their geometric means, and the B=1 latency table."""
    by_case: dict[str, dict[str, Any]] = {}
    for row in result["rows"]:
        by_case.setdefault(row["case"]["label"], {})[row["direction"]] = row
    lines = [
        results.machine_line(result), "",
        "Each implementation timed in a process of its own." if result.get("isolated") else
        "All implementations timed in one process, alternating in blocks.", "",
        "Ratio = rnn_xp time / peer time (below 1: rnn_xp faster; **bold**: the goal, <= 1.0, is missed).", "",
        "| T, B, I, H | dirs | loop | fwd ms | fwd vs torch | fwd vs ONNX Runtime | fwd vs JAX jit(scan) "
        "| fwd+bwd ms | fwd+bwd vs torch | fwd+bwd vs JAX jit(grad) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    columns = (("fwd", "torch"), ("fwd", "onnxruntime"), ("fwd", "jax"), ("train", "torch"), ("train", "jax"))
    ratios: dict[tuple[str, str], list[float]] = {c: [] for c in columns}
    for rows in by_case.values():
        case = next(iter(rows.values()))["case"]
        cells = [f"{case['seq_len']}, {case['batch']}, {case['input_size']}, {case['hidden']}",
                 "bi" if case["bidirectional"] else "uni",
                 result.get("loops", {}).get(case["label"]) or _loop_chosen(case)]
        for direction in ("fwd", "train"):
            row = rows.get(direction)
            ours = None if row is None else row["results"].get("rnn_xp", {}).get("median_s")
            cells.append("" if ours is None else f"{ours * 1e3:.3f}")
            for column_direction, peer in columns:
                if column_direction != direction:
                    continue
                theirs = None if row is None else row["results"].get(peer, {}).get("median_s")
                if ours is None or theirs is None:
                    cells.append("n/a")
                    continue
                ratio = ours / theirs
                ratios[(direction, peer)].append(ratio)
                cells.append(f"**{ratio:.2f}**" if ratio > 1.0 else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    geo = ["" if not r else f"{math.exp(sum(map(math.log, r)) / len(r)):.2f}" for r in ratios.values()]
    lines.append(f"| **geometric mean** | | | | {geo[0]} | {geo[1]} | {geo[2]} | | {geo[3]} | {geo[4]} |")
    for missing in result.get("missing_peers", []):
        lines.append(f"\n- `{missing['peer']}` missing: {missing['reason']}")
    lines += ["", latency_table(result, by_case)]
    return "\n".join(lines) + "\n"


def latency_table(result: dict[str, Any], by_case: dict[str, dict[str, Any]]) -> str:
    """Per-step forward latency at B=1 (median time / T) for each implementation, next to the arithmetic floor."""
    peak = result["gemm_peak_gflops"].get("cpu", float("nan")) * 1e9
    lines = [
        f"Per-step forward latency at B=1, µs (floor = 2·H·(H+I) flop / {peak / 1e9:.0f} GFLOP/s, the sgemm peak "
        "measured in the run on all cores):", "",
        "| H | I | T | floor | rnn_xp | torch | ONNX Runtime | JAX |", "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in by_case.values():
        row = rows.get("fwd")
        if row is None:
            continue
        case = row["case"]
        if case["batch"] != 1 or case["hidden"] not in LATENCY_HIDDEN or case["bidirectional"]:
            continue
        floor = 2.0 * case["hidden"] * (case["hidden"] + case["input_size"]) / peak
        cells = [str(case["hidden"]), str(case["input_size"]), str(case["seq_len"]), f"{floor * 1e6:.3f}"]
        for name in ("rnn_xp", *PEERS):
            seconds = row["results"].get(name, {}).get("median_s")
            cells.append("n/a" if seconds is None else f"{seconds / case['seq_len'] * 1e6:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--max-seconds", type=float, default=1.0, help="timing budget per implementation and row")
    parser.add_argument("--in-process", action="store_true",
                        help="time every implementation in this one process (their thread pools then disturb each "
                        "other); by default each is timed in a process of its own")
    parser.add_argument("--openblas-coretype", default="inherit", metavar="{inherit,auto,CORE}",
                        help="NumPy's OpenBLAS kernels in the timing processes: inherit (the environment as it is), "
                        "auto (OPENBLAS_CORETYPE removed: OpenBLAS's own choice for this CPU) or a core name")
    parser.add_argument("--only", choices=("rnn_xp", *PEERS), help=argparse.SUPPRESS)  # one isolated process
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # where that process writes its result
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # the same thread count as NumPy's BLAS, ONNX Runtime and XLA
    if args.only is not None:
        result = run_sweep(config(args.max_seconds, args.only), progress_bar=False)
        if args.only == "rnn_xp":  # the loop the plan chose for each row
            result["loops"] = {row["case"]["label"]: _loop_chosen(row["case"]) for row in result["rows"]}
        args.json.write_text(json.dumps(result))
        return
    env = environment(args.openblas_coretype)
    if args.in_process:
        if env.get("OPENBLAS_CORETYPE") != os.environ.get("OPENBLAS_CORETYPE"):
            parser.error("--openblas-coretype: expected inherit with --in-process (OpenBLAS is loaded already), "
                         f"got {args.openblas_coretype}")
        result = run_sweep(config(args.max_seconds))
    else:
        with tempfile.TemporaryDirectory() as workdir:
            result = isolated_sweep(args.max_seconds, Path(workdir), env)
    table = markdown(result)
    print(table)
    forced = env.get("OPENBLAS_CORETYPE")
    stem = results.file_stem(cpu_model())
    stem += (f"-openblas-{results.file_stem(forced)}" if forced else "") + "-cpu-vs-peers"
    stem += "-in-process" if args.in_process else ""
    paths = results.save(result, args.out, stem)
    paths["markdown"].write_text(table)
    print(f"wrote {paths['json']} and {paths['markdown']}")


if __name__ == "__main__":
    main()
