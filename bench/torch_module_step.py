"""A training step with ``rnn_xp.torch.RNN`` against the same model with ``torch.nn.RNN``, on the CPU, as ratios.

The model: RNN (one layer, tanh; bidirectional where the row says) + Linear(D*H, 1) on every step, MSE loss, Adam;
a step is forward, loss, backward and ``optimizer.step()``. Both models start from the same weights and train on the
same batch; before timing, one step of each is checked against the other (every gradient, float32). The rows are
``bench/cpu_vs_peers.py``'s CASES, float32. In each timing process the two steps alternate in blocks
(:func:`rnn_xp.benchmark.timing.measure_alternating`); ratio = rnn_xp step / torch step (below 1: rnn_xp faster).

Two environments, each in processes of its own, taking turns ``--repeats`` times: the environment as it is, and
``OMP_WAIT_POLICY=PASSIVE``. In one process torch's OpenMP workers and NumPy's OpenBLAS workers both spin between
their parallel regions, and on a machine with few cores each pool's spinning takes the CPU the other's next region
needs (bench/results/amd-epyc-torch-module-step.md: on the 2-core development machine an rnn_xp step at T=100, B=1,
H=128 took 8.0 ms in the default environment and 1.4 ms in the passive one). PASSIVE makes torch's workers sleep,
which speeds rnn_xp's step and slows torch.nn.RNN's, so the table also pairs rnn_xp (passive) with torch (default):
each in its faster setting.

The boundary column measures what the module costs over rnn_xp's own functional entry: the module's forward and
backward (``out.backward(g)``) against ``rnn_forward`` + ``rnn_backward`` on NumPy arrays of the same data, timed
alternating in the same way.

Threads: torch gets as many as NumPy's BLAS, every core unless ``OPENBLAS_NUM_THREADS`` says otherwise. Writes
<out>/<cpu>-torch-module-step.json and .md (``-threads<N>`` in the name when OPENBLAS_NUM_THREADS is set; default
out: bench/runs, which git ignores; the project's run is in bench/results/):

    python bench/torch_module_step.py [--out bench/runs] [--max-seconds 1] [--repeats 3] [--rows LABEL ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
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


def measure_table(cases: list[Case], max_seconds: float) -> dict[str, Any]:
    """Every row, in this process and its environment."""
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS")
    threads = int(blas_threads) if blas_threads else os.cpu_count() or 1
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]  # other processes on the machine: the timings are only as quiet as it was
    rows = []
    for case in cases:
        row = measure_row(case, max_seconds)
        rows.append(row)
        print(f"  {case.label}: ratio {row['ratio']:.2f}, boundary {row['boundary_ratio']:.2f}", flush=True)
    return {"threads": threads, "environment": {name: os.environ.get(name) for name in ENVIRONMENT_VARIABLES},
            "load_average_1min": [load_before, os.getloadavg()[0]], "rows": rows}


ENVIRONMENTS = {"default": None, "passive": "PASSIVE"}  # OMP_WAIT_POLICY in the timing process
ENVIRONMENT_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")


def run_child(environment: str, arguments: list[str], workdir: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if ENVIRONMENTS[environment] is not None:
        env["OMP_WAIT_POLICY"] = str(ENVIRONMENTS[environment])
    path = workdir / f"{environment}.json"
    subprocess.run([sys.executable, __file__, "--child", "--json", str(path), *arguments], check=True, env=env)
    return dict(json.loads(path.read_text()))


def ratios_by_repeat(runs: dict[str, list[dict[str, Any]]], column: str) -> list[list[float]]:
    """ratios[repeat][row] of a column: an environment's own ratio, or "best" (rnn_xp in the passive process over
    torch in the default one of the same repeat)."""
    if column != "best":
        return [[row["ratio"] for row in table["rows"]] for table in runs[column]]
    return [[ours["step"]["rnn_xp"]["median_s"] / theirs["step"]["torch"]["median_s"]
             for ours, theirs in zip(passive["rows"], default["rows"], strict=True)]
            for passive, default in zip(runs["passive"], runs["default"], strict=True)]


def ratio_cell(values: list[float]) -> str:
    ratio = statistics.median(values)
    text = f"**{ratio:.2f}**" if ratio > 0.6 else f"{ratio:.2f}"
    return f"{text} [{min(values):.2f}-{max(values):.2f}]"


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]  # runs[environment][repeat]: one table
    first = runs["default"][0]
    loads = [load for tables in runs.values() for table in tables for load in table["load_average_1min"]]
    lines = [
        f"{result['cpu']} ({first['threads']} threads for torch and NumPy's BLAS, {result['blas']}); torch "
        f"{result['torch']}; float32; {result['repeats']} repeats of the table per environment, each in a process of "
        "its own, the environments taking turns; in each process the two steps alternate in blocks. Load average "
        f"(1 min) at the start and end of the timing processes: {min(loads):.2f}-{max(loads):.2f}.", "",
        "Training step (RNN + Linear head, MSE, Adam). Ratio = rnn_xp.torch.RNN step / torch.nn.RNN step (below 1: "
        "rnn_xp faster; **bold**: above the issue's 0.6): median over the repeats [min-max]. Step times: median over "
        "the repeats of each repeat's median, ms. *default*: the environment as it is; *passive*: "
        "`OMP_WAIT_POLICY=PASSIVE` (torch's OpenMP workers sleep instead of spinning between parallel regions). "
        "*best*: rnn_xp passive / torch default, each in its faster environment, repeat by repeat. Boundary = the "
        "module's forward+backward / rnn_xp.functional's on NumPy views of the same data, passive.", "",
        "| T, B, I, H | dirs | loop | default: rnn_xp | torch | ratio | passive: rnn_xp | torch | ratio | best ratio "
        "| boundary |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    columns = ("default", "passive", "best")
    ratios = {column: ratios_by_repeat(runs, column) for column in columns}
    for index, row in enumerate(first["rows"]):
        case = row["case"]
        cells = [f"{case['seq_len']}, {case['batch']}, {case['input_size']}, {case['hidden']}",
                 "bi" if case["bidirectional"] else "uni", row["loop"]]
        for environment in ENVIRONMENTS:
            steps = [table["rows"][index]["step"] for table in runs[environment]]
            cells += [f"{statistics.median(step[name]['median_s'] for step in steps) * 1e3:.3f}"
                      for name in ("rnn_xp", "torch")]
            cells.append(ratio_cell([repeat[index] for repeat in ratios[environment]]))
        cells.append(ratio_cell([repeat[index] for repeat in ratios["best"]]))
        cells.append(f"{statistics.median(table['rows'][index]['boundary_ratio'] for table in runs['passive']):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    means = {}
    for column in columns:
        per_row = [statistics.median(values) for values in zip(*ratios[column], strict=True)]
        per_repeat = [geometric_mean(repeat) for repeat in ratios[column]]
        means[column] = f"{geometric_mean(per_row):.2f} [{min(per_repeat):.2f}-{max(per_repeat):.2f}]"
    lines.append(f"| **geometric mean** | | | | | {means['default']} | | | {means['passive']} | {means['best']} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--max-seconds", type=float, default=1.0, help="timing budget per model, row and repeat")
    parser.add_argument("--repeats", type=int, default=3, help="how many times the table is measured per environment")
    parser.add_argument("--rows", nargs="+", metavar="LABEL", help="only these rows (labels such as T100-B1-I32-H128)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one timing process
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # where it writes its table
    args = parser.parse_args()
    cases = [case for case in CASES if args.rows is None or case.label in args.rows]
    if not cases:
        parser.error(f"--rows: expected labels among {[case.label for case in CASES]}; got {args.rows}")
    if args.child:
        args.json.write_text(json.dumps(measure_table(cases, args.max_seconds)))
        return
    arguments = ["--max-seconds", str(args.max_seconds), *(["--rows", *args.rows] if args.rows else [])]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ENVIRONMENTS}
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(args.repeats):
            for environment in ENVIRONMENTS:
                print(f"repeat {repeat + 1}/{args.repeats}, environment {environment}:", flush=True)
                runs[environment].append(run_child(environment, arguments, Path(workdir)))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": cpu_model(),
        "blas": blas(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "model": "RNN (1 layer, tanh) + Linear(D*H, 1) per step, MSE, Adam(lr=1e-4), float32",
        "repeats": args.repeats,
        "runs": runs,
    }
    table = markdown(result)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    stem = f"{file_stem(cpu_model())}-torch-module-step" + (f"-threads{threads}" if threads else "")
    stem += "" if args.rows is None else "-rows"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table)
    print(f"wrote {args.out / stem}.json and .md")


if __name__ == "__main__":
    main()
