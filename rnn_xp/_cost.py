"""The measured cost model that chooses, for NumPy arrays, between the NumPy in-place loop and the compiled loop.

Per (dtype, B, H) that a process meets, both loops are timed once, on this machine, on that very shape: one
direction's forward at :data:`SHORT` and :data:`LONG` steps (median of :data:`REPEATS` after an untimed call), which
gives each loop ``per_call + T * per_step``. The compiled loop also pays for making W_hh^T
(:func:`rnn_xp.loops._transposes.transpose` of a fresh weight) when a call with these very W_hh arrays last found one
changed (:func:`rnn_xp.loops._transposes.likely_reused`; in training every step changes W_hh, and the transpose is
charged; inference and streaming reuse the kept one). A call of T steps then runs the loop with the smaller
predicted time.

Why per shape, not a formula: an earlier model fitted ``constant + a*H^2 + b*B*H^2 + c*B*H`` per step to twelve
shapes with H <= 256 and extrapolated. BLAS is not that smooth. With OpenBLAS's SkylakeX kernels on this project's
AMD EPYC, a B=4, H=512 step costs the NumPy loop 62 us and a B=1 step 12 us (a different GEMM path), so the formula
sent T=64, B=4, H=512 to the NumPy loop at 4.0 ms where the compiled loop takes 1.3 ms, and T=64, B=8, H=1024 too
(15.6 vs 9.4 ms). Measuring costs once per shape: about 1 ms at B=1, H=128, 10 ms at B=1, H=512, 0.1-0.16 s at
B=32, H=1024; shapes beyond :data:`MEASURED_PRODUCTS` multiply-adds a step are GEMMs that BLAS (blocked,
threaded) does best, and go to the NumPy loop unmeasured. Measured at T <= :data:`LONG`, the compiled loop runs on
one thread (:data:`rnn_xp.loops.compiled.MIN_PARALLEL_WORK`) unless 16 steps are enough to split it over the cores,
then both lengths are moved to where it splits (a line through a serial and a split call charged the split's
dispatch to every step: B=8, H=128 measured 6.3-6.8 us a compiled step against 4.7 in a layer). A long call that
is split though its measured lengths were not is faster than measured: the model errs towards the NumPy loop there.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

SHORT, LONG = 4, 16  # the two lengths each loop is timed at
REPEATS = 5
MEASURED_PRODUCTS = 1 << 25  # B*H*H a step: B=32, H=1024 or B=8, H=2048; beyond, the NumPy loop without measuring

_measured: dict[tuple[str, int, int], ShapeCost] = {}
_corrections: dict[tuple[str, int, int], dict[str, float]] = {}  # (dtype, B, H) -> {loop: observed / predicted}
_ratios: dict[tuple[str, int, int], dict[str, list[float]]] = {}  # the last OBSERVED ratios of each loop
_decided: dict[tuple[str, int, int, int, bool, int], bool] = {}  # prefers_compiled's answers, until a correction
_generation = [0]  # bumped whenever _decided is dropped: an answer worked out across a drop is not kept
MAX_DECISIONS = 4096
_feedback_lock = threading.Lock()  # guards _ratios, _corrections, _decided, _generation
OBSERVED = 5  # ratios kept a loop and shape
OBSERVED_FROM = 0.5e-3  # seconds predicted: shorter calls are not observed (their timing is mostly noise)
MISPREDICTED = 1.5  # a median ratio within (1/1.5, 1.5) corrects nothing, so the choice does not wander
_lock = threading.Lock()


@dataclass(frozen=True)
class LoopCost:
    """Seconds of one direction's forward of T steps: ``per_call + T * per_step``."""

    per_call: float
    per_step: float

    def seconds(self, steps: int) -> float:
        return self.per_call + steps * self.per_step

    @classmethod
    def from_times(cls, short_seconds: float, long_seconds: float, short: int = SHORT, long: int = LONG) -> LoopCost:
        """The line through (``short``, ``short_seconds``) and (``long``, ``long_seconds``); noise that makes
        either part negative is clipped to 0."""
        per_step = max(0.0, (long_seconds - short_seconds) / (long - short))
        return cls(max(0.0, short_seconds - short * per_step), per_step)


LOOPS = ("numpy", "transposed", "compiled")  # names of the loops the model chooses between


@dataclass(frozen=True)
class ShapeCost:
    """The loops' costs for one (dtype, B, H), and the compiled loop's cost of making W_hh^T (seconds a call).

    ``transposed``: the float32 NumPy loop with its GEMM written (H, B) (:mod:`rnn_xp.loops.numpy_transposed`);
    None where it is not measured (float64). ``corrections``: a loop's observed time over its predicted time in
    this process's calls (:func:`observe`), which multiplies its prediction; 1 where there is none."""

    numpy: LoopCost
    compiled: LoopCost
    transpose: float
    transposed: LoopCost | None = None

    def seconds(self, loop: str, steps: int, *, transpose_kept: bool = False, directions: int = 1,
                cores: int = 1) -> float | None:
        """Predicted seconds of one layer's recurrence in ``loop`` (one of :data:`LOOPS`), all its directions: the
        NumPy loops run them one after the other, the compiled loop at once on ``cores`` cores
        (:func:`rnn_xp.loops.compiled._units`) and pays for W_hh^T unless it is kept. None: not measured."""
        if loop == "compiled":
            rounds = -(-directions // max(1, cores))
            return rounds * (self.compiled.seconds(steps) + (0.0 if transpose_kept else self.transpose))
        cost = self.numpy if loop == "numpy" else self.transposed
        return None if cost is None else directions * cost.seconds(steps)

    def fastest(self, steps: int, *, transpose_kept: bool = False, directions: int = 1, cores: int = 1,
                corrections: dict[str, float] | None = None, among: tuple[str, ...] = LOOPS) -> str:
        """The loop of ``among`` with the smallest corrected prediction (ties: the earlier one)."""
        best, best_seconds = among[0], float("inf")
        for loop in among:
            seconds = self.seconds(loop, steps, transpose_kept=transpose_kept, directions=directions, cores=cores)
            if seconds is not None:
                seconds *= (corrections or {}).get(loop, 1.0)
                if seconds < best_seconds:
                    best, best_seconds = loop, seconds
        return best

    def prefers_transposed(self, steps: int, corrections: dict[str, float] | None = None) -> bool:
        """Whether the transposed NumPy loop is predicted faster than the plain one for T = ``steps``."""
        return self.fastest(steps, corrections=corrections, among=("numpy", "transposed")) == "transposed"

    def numpy_seconds(self, steps: int) -> float:
        """One direction's forward in the faster of the NumPy loops (uncorrected)."""
        seconds = self.seconds("transposed" if self.prefers_transposed(steps) else "numpy", steps)
        assert seconds is not None
        return seconds

    def prefers_compiled(self, steps: int, *, transpose_kept: bool = False, directions: int = 1, cores: int = 1,
                         corrections: dict[str, float] | None = None) -> bool:
        return self.fastest(steps, transpose_kept=transpose_kept, directions=directions, cores=cores,
                            corrections=corrections) == "compiled"


def prefers_compiled(dtype: str, steps: int, batch: int, hidden: int, *, transpose_kept: bool = False,
                     directions: int = 1) -> bool:
    """Whether the compiled loop is predicted fastest for a layer of ``directions`` (T, B, H) directions of
    ``dtype`` ("float32"/"float64"); ``transpose_kept``: W_hh^T is expected to be reused, not made."""
    if batch * hidden * hidden > MEASURED_PRODUCTS:
        return False
    key = (dtype, steps, batch, hidden, transpose_kept, directions)
    decided = _decided.get(key)  # the same call again: ~3 us less per call (a B=1 call takes ~80 us)
    if decided is None:
        from rnn_xp.loops import _workers

        cost = shape_cost(dtype, batch, hidden)
        with _feedback_lock:
            generation = _generation[0]
            corrections = dict(_corrections.get((dtype, batch, hidden), {}))
        decided = cost.prefers_compiled(steps, transpose_kept=transpose_kept, directions=directions,
                                        cores=_workers.count(), corrections=corrections)
        with _feedback_lock:
            if _generation[0] == generation and len(_decided) < MAX_DECISIONS:  # no correction came in between
                _decided[key] = decided
    return decided


def _forget_decisions() -> None:
    """Drop the kept answers (with :data:`_feedback_lock` held, or in a fresh child)."""
    _decided.clear()
    _generation[0] += 1


def _after_fork_in_child() -> None:
    # A child may run on other CPUs (rnn_xp.loops._workers): decide again there. Its locks may have been copied
    # held by a thread of the parent that does not exist here: new ones.
    global _lock, _feedback_lock
    _lock, _feedback_lock = threading.Lock(), threading.Lock()
    _forget_decisions()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def prefers_transposed(dtype: str, steps: int, batch: int, hidden: int) -> bool:
    """Whether, of the NumPy loops, the transposed one (:mod:`rnn_xp.loops.numpy_transposed`) is predicted faster
    for T = ``steps``; float32 only, and never beyond :data:`MEASURED_PRODUCTS` (not measured there)."""
    if dtype != "float32" or batch * hidden * hidden > MEASURED_PRODUCTS:
        return False
    cost = shape_cost(dtype, batch, hidden)
    with _feedback_lock:
        corrections = dict(_corrections.get((dtype, batch, hidden), {}))
    return cost.prefers_transposed(steps, corrections)


def observe(dtype: str, steps: int, batch: int, hidden: int, loop: str, seconds: float, *, transpose_kept: bool,
            directions: int) -> None:
    """Feedback from a call: one layer's recurrence in ``loop`` took ``seconds`` (the mean over its layers).

    Its ratio to the prediction (held within [1/4, 4]) joins that loop's last :data:`OBSERVED` on (dtype, B, H);
    from three on, their median is the loop's correction when it is off by :data:`MISPREDICTED` or more (a median:
    a call stalled once, e.g. 5.2 ms among 1.2-1.3 ms at T=64, B=8, H=512, must not move the choice; the threshold:
    noise must not make the same call run one loop now and another later, whose results differ in the last bit).
    Calls predicted under :data:`OBSERVED_FROM` and the first call of a loop on a shape (it may make W_hh^T, warm
    caches) are not counted. Why: measured at :data:`SHORT` and :data:`LONG` steps, a compiled loop
    split over the cores was predicted 2.7 ms at T=100, B=64, H=256 and took 5-9 ms in a layer: after the layer's
    input-projection GEMM OpenBLAS's worker thread spins on a CPU for about 0.1 s, and a call longer than the
    scheduler's time slice shares that CPU with it. Shapes the model never measured are ignored."""
    cost = _measured.get((dtype, batch, hidden))
    if cost is None or seconds <= 0.0:
        return
    from rnn_xp.loops import _workers

    predicted = cost.seconds(loop, steps, transpose_kept=transpose_kept, directions=directions,
                             cores=_workers.count())
    if not predicted or predicted < OBSERVED_FROM:
        return
    ratio = min(4.0, max(0.25, seconds / predicted))
    key = (dtype, batch, hidden)
    with _feedback_lock:  # not _lock, which a measurement holds for up to a second
        history = _ratios.setdefault(key, {})
        if loop not in history:  # the first call: not counted
            history[loop] = []
            return
        recent = history[loop]
        recent.append(ratio)
        del recent[:-OBSERVED]
        median = sorted(recent)[len(recent) // 2]  # (np.median costs ~10 us; a call here may take 0.5 ms)
        if len(recent) >= 3 and not 1 / MISPREDICTED < median < MISPREDICTED:
            if _corrections.setdefault(key, {}).get(loop) != median:
                _corrections[key][loop] = median
                _forget_decisions()
        elif loop in _corrections.get(key, {}):
            del _corrections[key][loop]
            _forget_decisions()


def shape_cost(dtype: str, batch: int, hidden: int) -> ShapeCost:
    """The costs of (dtype, B, H), measured on the first request of the process and kept (thread-safe)."""
    key = (dtype, batch, hidden)
    cost = _measured.get(key)
    if cost is None:
        with _lock:
            cost = _measured.get(key)
            if cost is None:
                cost = _measured[key] = measure(dtype, batch, hidden)
    return cost


def measure(dtype: str, batch: int, hidden: int) -> ShapeCost:
    """Time the loops on one direction of (B, H) in ``dtype`` at :data:`SHORT` and :data:`LONG` steps: the NumPy
    loop, the compiled loop and, for float32, the transposed NumPy loop."""
    from rnn_xp.loops import _aligned, _transposes, compiled, numpy_inplace, numpy_transposed

    # Both lengths on the same side of the compiled loop's split over the cores (it splits from MIN_PARALLEL_WORK
    # multiply-adds a layer): a line through one serial and one split call would charge the split to every step.
    split_from = -(-compiled.MIN_PARALLEL_WORK // (batch * hidden * hidden))
    short, long = (SHORT, LONG) if split_from > LONG or split_from <= SHORT else (split_from, split_from + LONG - SHORT)
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((long, batch, hidden)).astype(dtype)
    weight = _aligned.contiguous((rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(dtype))  # a layer's
    costs = {}
    loops: list[tuple[str, Any]] = [("numpy", numpy_inplace), ("compiled", compiled)]
    if dtype == "float32":
        loops.append(("transposed", numpy_transposed))
    for name, loop in loops:
        short_seconds, long_seconds = (_forward_seconds(loop, projection[:steps], weight) for steps in (short, long))
        costs[name] = LoopCost.from_times(short_seconds, long_seconds, short, long)
    transpose = 0.0  # one aligned sample: the compiled forward reads W_hh itself (compiled.uses_row_dots)
    if not compiled.uses_row_dots(batch, [weight]):
        transpose = max(0.0, _median_of(lambda: _transposes.transpose(weight.copy())) - _median_of(weight.copy))
    return ShapeCost(numpy=costs["numpy"], compiled=costs["compiled"], transpose=transpose,
                     transposed=costs.get("transposed"))


def _forward_seconds(loop: Any, projection: np.ndarray, weight: np.ndarray) -> float:
    """One direction's forward over ``projection`` (T, B, H) as a layer runs it: right after the GEMM that makes its
    input projection (here ``projection @ weight``, by the loop's own ``project`` where it has one, else into the
    array the loop works in), less that GEMM alone.

    The GEMM belongs in the timing: OpenBLAS's threads keep spinning for a while after one, and a compiled loop
    split over the cores then waits for a CPU (measured at T=100, B=64, I=H=256: 7.8 ms in a layer, where the loop
    alone, timed without the GEMM before it, predicted less than the NumPy loop's 6.4)."""
    num_steps, batch, hidden = projection.shape
    rows = projection.reshape(num_steps * batch, hidden)
    work = np.empty_like(projection)
    h0 = np.zeros((batch, hidden), dtype=projection.dtype)
    bias = np.zeros(hidden, dtype=projection.dtype)

    own_projection = getattr(loop, "project", None)  # a loop that makes its layer's projection itself

    def project() -> np.ndarray:
        if own_projection is not None:
            result: np.ndarray = own_projection(np, rows, weight, (num_steps, batch, hidden))
            return result
        np.matmul(rows, weight, out=work.reshape(num_steps * batch, hidden))
        return work

    def project_and_run() -> None:
        loop.forward_layer(np, [project()], [bias], [weight], [h0], None, "tanh")

    return max(0.0, _median_of(project_and_run) - _median_of(project))


def _median_of(call: Any) -> float:
    """The median of :data:`REPEATS` timed calls after an untimed one (thread pools start, numba compiles or loads
    its cache, caches fill). The median, not the best: a compiled loop split over the cores varies from call to call
    (T=64, B=4, H=512 in a layer: best 1.4 ms, median 2.6), and the choice should fit the typical call."""
    call()
    seconds = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))
