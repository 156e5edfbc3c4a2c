"""The measured cost model that chooses, for NumPy arrays, between the NumPy in-place loop and the compiled loop.

Per step of one direction, each loop's time is modelled as
``constant + per_weight * H*H + per_product * B*H*H + per_element * B*H`` (call overhead; reading W_hh once a step,
which dominates a matrix-vector product at small B; the multiply-adds; the activation and writes), and the compiled
loop pays once per call ``per_transpose * H*H`` (it makes W_hh^T contiguous; charged as if it were never kept, as
in training, where every step changes W_hh, though :mod:`rnn_xp.loops._transposes` keeps it while W_hh is
unchanged). The constants are not hard-coded: on the first selection for a dtype, :func:`calibrate` times both loops
on twelve shapes, (B, H) in {1, 4, 16, 64} x {32, 128, 256}, T = 24, best of five after an untimed pass, and fits
them by least squares (relative error); the fit is kept for the rest of the process (about half a second, plus
numba's first compile, which numba caches on disk).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

CALIBRATION_SHAPES = tuple((b, h) for b in (1, 4, 16, 64) for h in (32, 128, 256))
CALIBRATION_STEPS = 24
TRUSTED_PRODUCTS = 4 * max(b * h * h for b, h in CALIBRATION_SHAPES)
REPEATS = 5


@dataclass(frozen=True)
class StepCost:
    """Seconds per step of one direction: ``constant + per_weight * H*H + per_product * B*H*H + per_element * B*H``."""

    constant: float
    per_weight: float
    per_product: float
    per_element: float

    def seconds(self, batch: int, hidden: int) -> float:
        return (
            self.constant + self.per_weight * hidden * hidden + self.per_product * batch * hidden * hidden
            + self.per_element * batch * hidden
        )


@dataclass(frozen=True)
class CostModel:
    """Both loops' step costs for one dtype, and the compiled loop's per-call transpose cost (seconds per H*H)."""

    numpy: StepCost
    compiled: StepCost
    per_transpose: float

    def prefers_compiled(self, steps: int, batch: int, hidden: int) -> bool:
        """Whether the compiled loop is predicted faster for a (T, B, H) direction.

        The fit is trusted only up to :data:`TRUSTED_PRODUCTS` multiply-adds a step (4x the largest calibrated
        shape): beyond, a step is a GEMM that BLAS (blocked, threaded) does better, and a slope measured on small
        shapes, noisy on a busy machine, would otherwise decide by extrapolation (it once sent B=512, H=1024 to the
        compiled loop)."""
        if batch * hidden * hidden > TRUSTED_PRODUCTS:
            return False
        compiled = steps * self.compiled.seconds(batch, hidden) + self.per_transpose * hidden * hidden
        return compiled < steps * self.numpy.seconds(batch, hidden)


def fit(samples: list[tuple[int, int, float]]) -> StepCost:
    """Least-squares fit (relative error, non-negative constants) of :class:`StepCost` to (B, H, seconds) samples."""
    features = np.array([[1.0, h * h, b * h * h, b * h] for b, h, _ in samples])
    seconds = np.array([s for _, _, s in samples])
    weighted = features / seconds[:, None]
    solution = np.linalg.lstsq(weighted, np.ones_like(seconds), rcond=None)[0]
    if np.any(solution < 0):  # refit without the negative terms (noise on a busy machine)
        keep = solution >= 0
        solution = np.zeros(features.shape[1])
        solution[keep] = np.linalg.lstsq(weighted[:, keep], np.ones_like(seconds), rcond=None)[0]
    constant, per_weight, per_product, per_element = (max(0.0, float(v)) for v in solution)
    return StepCost(constant, per_weight, per_product, per_element)


@cache
def model(dtype: str) -> CostModel:
    """The calibrated model for ``dtype`` ("float32" or "float64"), measured once per process."""
    return calibrate(dtype)


def calibrate(dtype: str) -> CostModel:
    """Time both loops on :data:`CALIBRATION_SHAPES` and fit their step costs."""
    from rnn_xp.loops import _transposes, compiled, numpy_inplace

    rng = np.random.default_rng(0)
    # A first pass over the shapes, untimed: BLAS's and our thread pools start, numba loads its cache, the clock
    # rises; a fresh process otherwise charges all that to the first shapes and skews the fit.
    for batch, hidden in CALIBRATION_SHAPES:
        projection = rng.standard_normal((CALIBRATION_STEPS, batch, hidden)).astype(dtype)
        weight = rng.standard_normal((hidden, hidden)).astype(dtype)
        h0 = np.zeros((batch, hidden), dtype=dtype)
        for loop in (numpy_inplace, compiled):
            loop.forward_layer(np, [projection.copy()], [None], [weight * 0], [h0], None, "tanh")
    numpy_samples: list[tuple[int, int, float]] = []
    compiled_samples: list[tuple[int, int, float]] = []
    for batch, hidden in CALIBRATION_SHAPES:
        projection = rng.standard_normal((CALIBRATION_STEPS, batch, hidden)).astype(dtype)
        weight = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(dtype)
        numpy_samples.append((batch, hidden, _seconds_per_step(numpy_inplace, projection, weight, transposes=False)))
        compiled_samples.append((batch, hidden, _seconds_per_step(compiled, projection, weight, transposes=True)))
    weight = rng.standard_normal((512, 512)).astype(dtype)
    per_transpose = _best_of(REPEATS, lambda: _transposes.transpose(weight.copy())) / weight.size
    return CostModel(fit(numpy_samples), fit(compiled_samples), per_transpose)


def _seconds_per_step(loop: Any, projection: np.ndarray, weight: np.ndarray, *, transposes: bool) -> float:
    """One direction's forward over ``projection`` (T, B, H), per step, less the copy of the projection (and, for a
    loop that ``transposes``, the check of its kept W_hh^T)."""
    from rnn_xp.loops import _transposes

    num_steps, batch, hidden = projection.shape
    h0 = np.zeros((batch, hidden), dtype=projection.dtype)
    bias = np.zeros(hidden, dtype=projection.dtype)
    seconds = _best_of(
        REPEATS, lambda: loop.forward_layer(np, [projection.copy()], [bias], [weight], [h0], None, "tanh")
    )
    seconds -= _best_of(REPEATS, projection.copy)
    if transposes:  # the kept transpose's check (rnn_xp.loops._transposes)
        seconds -= _best_of(REPEATS, lambda: _transposes.transposed(weight))
    return max(seconds, 1e-9) / num_steps


def _best_of(repeats: int, call: Any) -> float:
    call()  # warm-up (and, for the compiled loop, its compile or cache load)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best
