"""A training step with ``rnn_xp.torch.RNN`` against the same model with ``torch.nn.RNN``, on the CPU, as ratios.

The model: RNN (one layer, tanh; bidirectional where the row says) + Linear(D*H, 1) on every step, MSE loss, Adam;
a step is forward, loss, backward and ``optimizer.step()``. Both models start from the same weights and train on the
same batch; before timing, one step of each is checked against the other (loss and every gradient, float32). The rows
are ``bench/cpu_vs_peers.py``'s CASES, float32. The two steps alternate in blocks in one process
(:func:`rnn_xp.benchmark.timing.measure_alternating`), and the whole table is measured ``--repeats`` times: each
ratio (rnn_xp step / torch step, below 1: rnn_xp faster) is reported as the median over the repeats with its
range, next to the p25-p75 of the step times.

The boundary column measures what the module costs over rnn_xp's own functional entry: the module's forward and
backward (``out.backward(g)``) against ``rnn_forward`` + ``rnn_backward`` on NumPy arrays of the same data, timed
alternating in the same way.

Threads: torch gets as many as NumPy's BLAS, every core unless ``OPENBLAS_NUM_THREADS`` says otherwise (one thread
each is the control run where both thread pools would otherwise fight over a busy machine's cores). Writes
<out>/<cpu>-torch-module-step.json and .md, with ``-threads<N>`` in the name when OPENBLAS_NUM_THREADS is set
(default out: bench/runs, which git ignores; the project's runs are in bench/results/):

    python bench/torch_module_step.py [--out bench/runs] [--max-seconds 1] [--repeats 3]
    OPENBLAS_NUM_THREADS=1 python bench/torch_module_step.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cpu_vs_peers import CASES  # this script's folder is on sys.path when run as a script

import rnn_xp.torch
from rnn_xp._plan import cpu_loop_name
from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.machine import blas, cpu_model
from rnn_xp.benchmark.results import file_stem
from rnn_xp.benchmark.timing import measure_alternating
from rnn_xp.functional import rnn_backward, rnn_forward


class Model(torch.nn.Module):
    """RNN + Linear(D*H, 1) on every step."""

    def __init__(self, rnn: torch.nn.Module, case: Case) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(case.directions * case.hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out)


def models(case: Case) -> dict[str, Model]:
    """The two models, with the same weights."""
    torch.manual_seed(0)
    kwargs = dict(bidirectional=case.bidirectional)
    ours = Model(rnn_xp.torch.RNN(case.input_size, case.hidden, **kwargs), case)
    theirs = Model(torch.nn.RNN(case.input_size, case.hidden, **kwargs), case)
    theirs.load_state_dict(ours.state_dict())
    return {"rnn_xp": ours, "torch": theirs}


def training_step(model: Model, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = torch.nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def check_same_step(pair: dict[str, Model], x: torch.Tensor, target: torch.Tensor) -> float:
    """One loss and backward of each model from the same weights; the largest gradient difference relative to the
    gradient's scale (raises above 1e-3: a wrong module must not be timed)."""
    grads = {}
    for name, model in pair.items():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(x), target).backward()
        grads[name] = {key: p.grad.clone() for key, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
    worst = 0.0
    for key, expected in grads["torch"].items():
        scale = max(float(expected.abs().max()), 1e-12)
        worst = max(worst, float((grads["rnn_xp"][key] - expected).abs().max()) / scale)
    if worst > 1e-3:
        msg = f"rnn_xp.torch.RNN's gradients differ from torch.nn.RNN's by {worst:.2e} (relative); not timing"
        raise AssertionError(msg)
    return worst


def boundary_calls(rnn: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The module's forward+backward, and rnn_xp.functional's on NumPy views of the same data."""
    params = {name: p.detach().numpy() for name, p in rnn.named_parameters()}
    x_host, grad_host = x.numpy(), grad.numpy()

    def module() -> None:
        out, _ = rnn(x)
        out.backward(grad)

    def functional() -> None:
        _, _, cache = rnn_forward(x_host, params)
        rnn_backward(cache, grad_host)

    return {"module": module, "functional": functional}


def measure_row(case: Case, max_seconds: float) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(case.seq_len, case.batch, case.input_size, generator=generator)
    target = torch.randn(case.seq_len, case.batch, 1, generator=generator)
    pair = models(case)
    worst = check_same_step(pair, x, target)
    steps = {name: training_step(model, x, target) for name, model in pair.items()}
    step_times = measure_alternating(steps, rounds=4, pause=0.25, max_seconds=max_seconds)
    grad = torch.randn(case.seq_len, case.batch, case.directions * case.hidden, generator=generator)
    boundary = measure_alternating(boundary_calls(pair["rnn_xp"].rnn, x, grad), rounds=4, pause=0.25,
                                   max_seconds=max_seconds / 2)
    return {
        "case": {**case.__dict__, "label": case.label},
        "loop": cpu_loop_name("float32", case.batch, case.hidden, case.directions),
        "gradient_check_worst_relative": worst,
        "step": {name: timing.as_dict() for name, timing in step_times.items()},
        "ratio": step_times["rnn_xp"].median / step_times["torch"].median,
        "boundary": {name: timing.as_dict() for name, timing in boundary.items()},
        "boundary_ratio": boundary["module"].median / boundary["functional"].median,
    }


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def markdown(result: dict[str, Any]) -> str:
    repeats = result["runs"]
    lines = [
        f"{result['cpu']} ({result['threads']} threads, {result['blas']}); torch {result['torch']}; float32; "
        f"{len(repeats)} repeats of the table, each step timed alternating in one process", "",
        "Training step (RNN + Linear head, MSE, Adam): ratio = rnn_xp.torch.RNN step / torch.nn.RNN step (below 1: "
        "rnn_xp faster; **bold**: above the issue's 0.6), median over the repeats [min-max]; step times of the last "
        "repeat, median (p25-p75). Boundary = the module's forward+backward / rnn_xp.functional's on NumPy views of "
        "the same data (median over the repeats).", "",
        "| T, B, I, H | dirs | loop | rnn_xp step ms | torch step ms | ratio [range] | boundary |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    medians = []
    for index, row in enumerate(repeats[-1]):
        case = row["case"]
        ratios = [run[index]["ratio"] for run in repeats]
        ratio = statistics.median(ratios)
        medians.append(ratio)
        boundary = statistics.median(run[index]["boundary_ratio"] for run in repeats)
        ours, theirs = row["step"]["rnn_xp"], row["step"]["torch"]
        cell = f"**{ratio:.2f}**" if ratio > 0.6 else f"{ratio:.2f}"
        lines.append(
            f"| {case['seq_len']}, {case['batch']}, {case['input_size']}, {case['hidden']} | "
            f"{'bi' if case['bidirectional'] else 'uni'} | {row['loop']} | "
            f"{ours['median_s'] * 1e3:.3f} ({ours['p25_s'] * 1e3:.3f}-{ours['p75_s'] * 1e3:.3f}) | "
            f"{theirs['median_s'] * 1e3:.3f} ({theirs['p25_s'] * 1e3:.3f}-{theirs['p75_s'] * 1e3:.3f}) | "
            f"{cell} [{min(ratios):.2f}-{max(ratios):.2f}] | {boundary:.2f} |"
        )
    per_repeat = [geometric_mean([row["ratio"] for row in run]) for run in repeats]
    lines.append(f"| **geometric mean** | | | | | {geometric_mean(medians):.2f} "
                 f"[{min(per_repeat):.2f}-{max(per_repeat):.2f}] | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--max-seconds", type=float, default=1.0, help="timing budget per model, row and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="how many times the whole table is measured")
    args = parser.parse_args()
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS")
    threads = int(blas_threads) if blas_threads else os.cpu_count() or 1
    torch.set_num_threads(threads)  # as many threads as NumPy's BLAS takes
    runs = []
    for repeat in range(args.repeats):
        rows = []
        for case in CASES:
            row = measure_row(case, args.max_seconds)
            rows.append(row)
            print(f"repeat {repeat + 1}/{args.repeats} {case.label}: ratio {row['ratio']:.2f}, "
                  f"boundary {row['boundary_ratio']:.2f}", flush=True)
        runs.append(rows)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": cpu_model(),
        "threads": threads,
        "blas": blas(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "model": "RNN (1 layer, tanh) + Linear(D*H, 1) per step, MSE, Adam(lr=1e-4), float32",
        "runs": runs,
    }
    table = markdown(result)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{file_stem(cpu_model())}-torch-module-step" + (f"-threads{threads}" if blas_threads else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table)
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
