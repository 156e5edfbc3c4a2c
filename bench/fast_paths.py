"""What each remaining CPU fast path is worth at the user level: a layer call (float32, forward and forward+backward)
with the fast path against the same call without it, on the rows of the CPU table (bench/cpu_vs_peers.py) where the
path runs. A fast path stays only where it wins at least 10% on some row.

- compiled loop: the numba loop against the NumPy loop, on the rows the plan sends to it;
- one-sample dot products (rnn_xp.loops.compiled.uses_row_dots): against the compiled loop's sums of rows of W^T;
- 64-byte aligned parameters (rnn_xp._arrays.aligned_empty): against the same values 4 bytes off alignment;
- contiguous W_hh^T in the NumPy loop (rnn_xp.loops.numpy_inplace.recurrent_operand): against the transposed view;
- the transposed NumPy loop (rnn_xp.loops.numpy_transposed): against the NumPy loop, on the rows the plan sends to it;

Both variants alternate in one process; medians of the repeats; ratio = with / without (below 0.9: the path pays).

    python bench/fast_paths.py [--out bench/runs] [--budget 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import rnn_xp
from rnn_xp._arrays import aligned_empty
from rnn_xp._plan import cpu_loop_name
from rnn_xp.benchmark import results
from rnn_xp.benchmark.machine import blas, cpu_model
from rnn_xp.loops import compiled, numpy_inplace

sys.path.insert(0, str(Path(__file__).parent))
from cpu_vs_peers import CASES  # the CPU table's rows


@contextmanager
def _patched(module: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def _misaligned(rnn: rnn_xp.RNN) -> rnn_xp.RNN:
    """The layer with every parameter moved 4 bytes past a 64-byte boundary (same values)."""
    for name, value in rnn.parameters().items():
        storage = aligned_empty((value.size + 1,), value.dtype)
        moved = storage[1:].reshape(value.shape)
        moved[...] = value
        rnn.set_parameter(name, moved)
    return rnn


PATHS: dict[str, dict[str, Any]] = {
    "compiled loop": {"applies": lambda case: cpu_loop_name("float32", case.batch, case.hidden,
                                                             case.directions) == "compiled",
                      "loops": ("compiled", "numpy")},
    "one-sample dot products": {"applies": lambda case: case.batch == 1, "loops": ("compiled", "compiled"),
                                "without": lambda: _patched(compiled, "uses_row_dots", lambda batch: False)},
    "aligned parameters": {"applies": lambda case: case.batch == 1, "loops": ("compiled", "compiled"),
                           "layer_without": _misaligned},
    "contiguous W_hh^T (NumPy loop)": {"applies": lambda case: cpu_loop_name("float32", case.batch, case.hidden,
                                                                              case.directions) == "numpy",
                                       "loops": ("numpy", "numpy"),
                                       "without": lambda: _patched(numpy_inplace, "recurrent_operand",
                                                                   lambda weight: weight.T)},
    "transposed NumPy loop": {"applies": lambda case: cpu_loop_name("float32", case.batch, case.hidden,
                                                                     case.directions) == "numpy_transposed",
                              "loops": ("numpy_transposed", "numpy")},
}


def _call(rnn: rnn_xp.RNN, x: np.ndarray, grad: np.ndarray, train: bool) -> Callable[[], None]:
    def call() -> None:
        rnn(x)
        if train:
            rnn.backward(grad)

    return call


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def measure(budget: float, only: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for name, path in PATHS.items():
        if only is not None and name != only:
            continue
        for case in CASES:
            if not path["applies"](case):
                continue
            rng = np.random.default_rng(0)
            x = rng.standard_normal((case.seq_len, case.batch, case.input_size)).astype(np.float32)
            grad = rng.standard_normal((case.seq_len, case.batch, case.directions * case.hidden)).astype(np.float32)
            layers = []
            for loop in path["loops"]:
                layers.append(rnn_xp.RNN(case.input_size, case.hidden, bidirectional=case.bidirectional, seed=0,
                                         loop=loop))
            layers[1] = path.get("layer_without", lambda rnn: rnn)(layers[1])
            contexts = (_nothing, path.get("without", _nothing))
            for train in (False, True):
                samples: list[list[float]] = [[], []]
                calls = [_call(layer, x, grad, train) for layer in layers]
                for variant in (0, 1):
                    with contexts[variant]():
                        calls[variant]()  # warm-up
                started = time.perf_counter()
                while time.perf_counter() - started < 2 * budget or len(samples[0]) < 5:
                    for variant in (0, 1):
                        with contexts[variant]():
                            begin = time.perf_counter()
                            calls[variant]()
                            samples[variant].append(time.perf_counter() - begin)
                with_s, without_s = (statistics.median(s) for s in samples)
                rows.append({"path": name, "case": case.label, "train": train, "with_s": with_s,
                             "without_s": without_s, "ratio": with_s / without_s})
                print(f"{name:34s} {case.label:26s} {'fwd+bwd' if train else 'fwd':7s} "
                      f"{with_s * 1e3:9.3f} vs {without_s * 1e3:9.3f} ms  {with_s / without_s:.2f}", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "Ratio = time with the fast path / time without it, a layer call (below 0.9: it pays 10% or "
             "more).", "", "| fast path | T, B, I, H (dirs) | fwd ms with / without | fwd ratio | fwd+bwd ratio | "
             "pays on the row |", "|---|---|---|---:|---:|---|"]
    by_key: dict[tuple[str, str], dict[bool, dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault((row["path"], row["case"]), {})[row["train"]] = row
    for (name, case), pair in by_key.items():
        forward, train = pair[False], pair[True]
        pays = "yes" if min(forward["ratio"], train["ratio"]) <= 0.9 else "no"
        lines.append(f"| {name} | {case} | {forward['with_s'] * 1e3:.3f} / {forward['without_s'] * 1e3:.3f} | "
                     f"{forward['ratio']:.2f} | {train['ratio']:.2f} | {pays} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/runs"))
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per variant and row")
    parser.add_argument("--only", choices=list(PATHS), default=None, help="measure this fast path only")
    args = parser.parse_args()
    rows = measure(args.budget, args.only)
    header = f"{cpu_model()} ({blas()}); float32, one layer, alternating in one process, medians."
    table = markdown(rows, header)
    print(table)
    path = results.save_table(rows, table, args.out, results.file_stem(cpu_model()) + "-fast-paths")
    print(f"wrote {path} and .md")


if __name__ == "__main__":
    main()
