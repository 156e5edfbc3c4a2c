"""The plan: which time loop runs a call, decided once at the public entry from what the call is.

- NumPy arrays: the compiled loop (:mod:`rnn_xp.loops.compiled`) or the NumPy loop (:mod:`rnn_xp.loops.numpy_inplace`,
  or :mod:`rnn_xp.loops.numpy_transposed` with each step's product written the other way round), by a fixed rule of
  the dtype, the batch, the hidden size and the number of directions (:func:`cpu_loop_name`): never by timings
  taken inside a call, so the same call runs the same loop, and gives the same bits, in every run and process.
  Without numba, the NumPy loop where the rule names the compiled one. ``loop="numpy"``, ``"numpy_transposed"`` or
  ``"compiled"`` force one.
- CuPy arrays: :class:`rnn_xp.loops.cuda.CudaLoop`, unless ``RNN_XP_FORCE_GENERIC=1`` (read once, at import) or the
  caller asks for the generic loop;
- JAX arrays: :mod:`rnn_xp.loops.jax_scan` (one ``lax.scan`` per direction), unless the caller asks for the generic
  loop;
- everything else (array-api-strict, torch), and truncated BPTT everywhere: :mod:`rnn_xp.loops.generic`.

The rule's table is :data:`CPU_CHOICES`, measured on this project's machine (how: ``bench/loop_rule.py``; the
measurements beside it in ``bench/results/``). A user who wants the choice fitted to their own machine runs
``rnn-xp tune`` (:mod:`rnn_xp.tuning`), which measures the same table here and writes a plan file that later
processes load instead: an input like any other, so results stay deterministic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import array_api_compat

from rnn_xp import tuning
from rnn_xp._arrays import is_cupy, is_numpy
from rnn_xp.loops import TimeLoop, numba_available

FORCE_GENERIC: bool = os.environ.get("RNN_XP_FORCE_GENERIC", "").strip().lower() in {"1", "true", "yes", "on"}

# The CPU loop for each measured cell on this project's machine (a 2-core AMD EPYC; three rounds of
# bench/loop_rule.py, which runs rnn_xp.tuning.measure_cpu and picks by rnn_xp.tuning.winners; the ratios are in
# bench/results/amd-epyc-loop-rule.md), by (dtype, directions) and hidden size: one letter per batch of BATCHES,
# "n" the NumPy loop, unless "c" the compiled loop or "t" the NumPy loop with the step's product transposed took at
# most 0.9 of its time there.
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128)
CPU_CHOICES: dict[tuple[str, int], dict[int, str]] = {
    ("float32", 1): {32: "cccccnnn", 64: "ccccnnnn", 128: "cccnnnnn", 256: "cnnncnnn", 512: "ctcctnnn",
                     1024: "tttttttn"},
    ("float32", 2): {32: "cccccnnn", 64: "ccccnnnn", 128: "cccnnnnn", 256: "cnnncnnn", 512: "ctcttttn",
                     1024: "tttttttn"},
    ("float64", 1): {32: "cccnnnnn", 64: "cnnnnnnn", 128: "cnnnnnnn", 256: "tnnntnnn", 512: "ttntnnnn",
                     1024: "tnnnnnnn"},
    ("float64", 2): {32: "ccnnnnnn", 64: "cnnnnnnn", 128: "cnnnnnnn", 256: "cnnntnnn", 512: "ttntnnnn",
                     1024: "tnnnnnnn"},
}
LOOP_LETTERS = {"c": "compiled", "n": "numpy", "t": "numpy_transposed"}
CPU_LOOPS = ("numpy", "numpy_transposed", "compiled")


def cpu_loop_name(dtype: str, batch: int, hidden: int, directions: int) -> str:
    """"compiled", "numpy" or "numpy_transposed": the loop for a NumPy layer of this dtype, batch, hidden size and
    directions, from the tuned plan's table when one is loaded and measured this dtype and directions
    (:func:`rnn_xp.tuning.active_plan`), else from :data:`CPU_CHOICES`."""
    plan = tuning.active_plan()
    if plan is not None and (dtype, directions) in plan.cpu:
        name = lookup(plan.cpu, plan.batches, dtype, batch, hidden, directions)
    else:
        name = lookup(CPU_CHOICES, BATCHES, dtype, batch, hidden, directions)
    return "numpy" if name == "compiled" and not numba_available() else name


def lookup(choices: dict[tuple[str, int], dict[int, str]], batches: Sequence[int], dtype: str, batch: int,
           hidden: int, directions: int) -> str:
    """The loop that was faster at the measured (batch, hidden) nearest to the call's, on a log scale (ties: the
    smaller); the NumPy loop (BLAS) beyond twice the largest measured batch or hidden size, or for a dtype and
    number of directions not measured."""
    rows = choices.get((dtype, directions))
    if not rows or batch > 2 * max(batches) or hidden > 2 * max(rows):
        return "numpy"
    letters = rows[_nearest(sorted(rows), hidden)]
    return LOOP_LETTERS[letters[list(batches).index(_nearest(sorted(batches), batch))]]


def _nearest(values: Sequence[int], value: int) -> int:
    """The entry of ``values`` (ascending, positive) closest to ``value`` in log2; ties: the smaller."""
    return min(values, key=lambda v: (abs(math.log2(v / value)), v))


def choose_loop(
    xp: Any, *, loop: str = "auto", dtype: str = "float32", batch: int = 1, hidden: int = 1, directions: int = 1
) -> TimeLoop:
    """The time loop for a call on arrays of ``xp`` (``loop`` already validated by
    :func:`rnn_xp._checks.check_loop`).

    Raises
    ------
    ValueError
        A CPU loop forced on arrays that are not NumPy's, or ``"compiled"`` without numba.
    """
    if loop in CPU_LOOPS and not is_numpy(xp):
        msg = f"loop={loop!r} runs on NumPy arrays only; got arrays of {xp.__name__}"
        raise ValueError(msg)
    if loop == "compiled" and not numba_available():
        msg = "loop='compiled' needs numba (pip install numba); it is not installed"
        raise ValueError(msg)
    if loop == "generic":
        return generic_loop()
    if is_numpy(xp):
        if loop == "auto":
            loop = cpu_loop_name(dtype, batch, hidden, directions)
        if loop == "compiled":
            from rnn_xp.loops import compiled

            return compiled  # a module implementing the protocol
        if loop == "numpy_transposed":
            from rnn_xp.loops import numpy_transposed

            return numpy_transposed
        from rnn_xp.loops import numpy_inplace

        return numpy_inplace
    if is_cupy(xp) and not FORCE_GENERIC:
        from rnn_xp.loops.cuda import CudaLoop

        plan = tuning.active_plan()
        return CudaLoop(path="auto" if plan is None else plan.cuda_path(dtype, batch, hidden, directions))
    if array_api_compat.is_jax_namespace(xp):
        from rnn_xp.loops import jax_scan

        return jax_scan  # a module implementing the protocol
    return generic_loop()


def backward_loop(forward_loop: TimeLoop, truncate: int | None) -> TimeLoop:
    """The loop that runs a backward: the forward's, or the generic loop where it must truncate and cannot."""
    if truncate is None or forward_loop.TRUNCATES:
        return forward_loop
    return generic_loop()


def generic_loop() -> TimeLoop:
    """The generic Array-API loop (the one that truncates BPTT)."""
    from rnn_xp.loops import generic

    return generic  # a module implementing the protocol
