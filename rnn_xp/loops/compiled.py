"""The compiled CPU time loop: numba kernels that run a whole direction of a layer in one call (small batches).

Interface: :class:`rnn_xp.loops.TimeLoop`. At small batch a step of the NumPy loop is three or four NumPy calls of
about a microsecond each, far more than its arithmetic; here a step is a few nanoseconds of loop overhead plus the
arithmetic (see :mod:`rnn_xp.loops._kernels`). Semantics are the NumPy loop's: padded steps select the previous
state, relu keeps NaN, gradients into padding and dead relu units are set to 0. Truncated BPTT goes to the generic
loop. Directions, and slices of the batch, run on threads (one per core) when the layer is big enough.

numba is imported, and the kernels compiled (or loaded from numba's on-disk cache), on the first call, never at
``import rnn_xp``. :func:`available` says whether numba is installed; without it selection runs the NumPy loop.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import numpy as np

from rnn_xp.loops import _aligned, _transposes, _workers

TRUNCATES = False

# Below this many multiply-adds (T*B*H*H per direction) a layer runs on the calling thread: handing work to the
# workers and back costs about 40 microseconds (rnn_xp.loops._workers), the time of about two million multiply-adds.
MIN_PARALLEL_WORK = 1 << 21

# From this H one sample's single direction is split by rows of W_hh over the cores (see _row_parts), and a part
# that has waited this many cycles (~10 us at 2.6 GHz: three steps of a half at H=512) for another's units of a step
# makes them itself.
ROW_SPLIT_MIN_HIDDEN = 512
PATIENCE_CYCLES = 25_000


@cache
def available() -> bool:
    """Whether numba is installed (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def _kernels() -> Any:
    from rnn_xp.loops import _kernels

    return _kernels


def _cores() -> int:
    return _workers.count()


def _units(directions: int, num_steps: int, batch: int, hidden: int) -> list[tuple[int, int, int]]:
    """(direction, first, stop): the pieces of a layer that run independently (directions, and slices of the batch:
    samples do not interact), as many as the cores when the work is worth it."""
    cores = _cores()
    chunks = 1
    if num_steps * batch * hidden * hidden >= MIN_PARALLEL_WORK:
        chunks = max(1, min(batch, cores // directions))
    bounds = [batch * c // chunks for c in range(chunks + 1)]
    return [(d, bounds[c], bounds[c + 1]) for d in range(directions) for c in range(chunks)]


def uses_row_dots(batch: int, weights_hh: list[np.ndarray]) -> bool:
    """Whether the forward reads W_hh itself, one dot product per row (:func:`rnn_xp.loops._kernels.add_row_dots`:
    no W_hh^T to make or to check against a kept copy), rather than rows of the kept W_hh^T: for one sample, when
    every W_hh is 64-byte aligned (the layer's own parameters are) or H <= 256. Measured in a layer, T=100, B=1,
    H=128: 36 us (aligned) and 46 us (16-byte aligned) against 57 with W_hh^T; T=64, H=512: 486 and 571 against
    510-516."""
    return batch == 1 and all(_aligned.is_aligned(w) or w.shape[0] <= 256 for w in weights_hh)


def _row_parts(directions: int, num_steps: int, hidden: int) -> int:
    """Into how many row ranges one sample's single direction is split, one per core
    (:func:`rnn_xp.loops._kernels.forward_rows_shared`): from H = :data:`ROW_SPLIT_MIN_HIDDEN` with enough work,
    and only with pinned workers (unpinned, two spinning parts may share a CPU); else 1 (one thread).

    Why from H=512: measured in bare calls, T=64, B=1 float32, 2 cores, one thread against two: H=256 122 vs 131
    us (each step's wait, ~1 us, outweighs the halved reads), H=512 526 vs 347 (each core's half of W_hh, 512 KiB,
    stays in its own L2; one thread streams all 1 MiB from L3), H=1024 2578 vs 1362."""
    cores = _cores()
    if directions != 1 or cores < 2 or hidden < ROW_SPLIT_MIN_HIDDEN or not _workers.pinned():
        return 1
    if num_steps * hidden * hidden < MIN_PARALLEL_WORK:
        return 1
    return min(cores, hidden // 16)


def _run(calls: list[Callable[[], None]]) -> None:
    """Run the calls (numba kernels that release the GIL) at once on the pinned workers."""
    _workers.run(calls)


def _lengths(lengths: np.ndarray | None, num_steps: int, batch: int) -> np.ndarray:
    if lengths is None:
        return np.full(batch, num_steps, dtype=np.int32)
    return np.ascontiguousarray(lengths, dtype=np.int32)


def project(xp: Any, flat_input: np.ndarray, weight_ih: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The input projection flat_input (T*B, I) @ W_ih^T -> (T, B, H); by a numba kernel on the calling thread
    where the forward will split one sample's steps over the cores (:func:`_row_parts`), else by OpenBLAS.

    Why: OpenBLAS runs a GEMM of that size (T=64, I=64, H=512) on its threads, and its worker then spins on a CPU
    for ~0.1 s; the parts of the split forward wait for each other every step, and one whose CPU it takes holds
    the call up: T=64, B=1, H=512 in a loop of layer calls, 90th percentile 1.2 ms against a median of 0.41
    (without OpenBLAS's threads: 0.44 and 0.42). The kernel takes about as long as OpenBLAS on one thread (26 us
    against 27-33 there)."""
    num_steps, batch, hidden = shape
    if batch == 1 and _row_parts(1, num_steps, hidden) > 1 and flat_input.dtype == weight_ih.dtype:
        out = np.zeros((num_steps * batch, hidden), dtype=flat_input.dtype)
        _kernels().add_product(out, np.ascontiguousarray(flat_input), _transposes.transposed(weight_ih), 0,
                               num_steps * batch)
        return out.reshape(shape)
    return np.reshape(flat_input @ weight_ih.T, shape)


def forward_layer(
    xp: Any,
    projections: list[np.ndarray],
    biases: list[np.ndarray | None],
    weights_hh: list[np.ndarray],
    h0s: list[np.ndarray],
    lengths: np.ndarray | None,
    nonlinearity: str,
) -> list[np.ndarray]:
    kernels = _kernels()
    num_steps, batch, hidden = projections[0].shape
    inside = _lengths(lengths, num_steps, batch)
    relu = nonlinearity == "relu"
    dots = uses_row_dots(batch, weights_hh)
    arguments = []
    for states, bias, weight_hh, h0 in zip(projections, biases, weights_hh, h0s, strict=True):
        # The projections are the caller's to reuse; a view (never here in practice) would be copied, not written.
        states = states if states.flags.c_contiguous and states.flags.writeable else np.array(states, order="C")
        bias = np.zeros(hidden, dtype=states.dtype) if bias is None else np.ascontiguousarray(bias)
        weight = np.ascontiguousarray(weight_hh) if dots else _transposes.transposed(weight_hh)
        arguments.append((states, bias, weight, np.ascontiguousarray(h0)))
    fast_tanh = projections[0].dtype == np.float32
    parts = _row_parts(len(projections), num_steps, hidden) if dots else 1
    if parts > 1:
        projection, bias, weight, h0 = arguments[0]
        states = _aligned.empty(projection.shape, projection.dtype)  # part bounds on 16s: no cache line shared
        bounds = np.array([hidden * p // parts // 16 * 16 for p in range(parts)] + [hidden], dtype=np.int64)
        done = np.zeros(16 * parts, dtype=np.int64)
        _run([
            partial(kernels.forward_rows_shared, projection, states, bias, weight, h0, inside, relu, fast_tanh,
                    bounds, done, p, PATIENCE_CYCLES)
            for p in range(parts)
        ])
        return [states]
    _run([
        partial(kernels.forward_direction, *arguments[d], inside, relu, d == 1, fast_tanh, first, stop, dots)
        for d, first, stop in _units(len(projections), num_steps, batch, hidden)
    ])
    return [states for states, *_ in arguments]


def backward_layer(
    xp: Any,
    grad_states: list[np.ndarray],
    states: list[np.ndarray],
    weights_hh: list[np.ndarray],
    grad_h_ns: list[np.ndarray | None],
    lengths: np.ndarray | None,
    nonlinearity: str,
    truncate: int | None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    kernels = _kernels()
    num_steps, batch, hidden = states[0].shape
    inside = _lengths(lengths, num_steps, batch)
    relu = nonlinearity == "relu"
    arguments = []
    for grad_state, state, weight_hh, grad_h_n in zip(grad_states, states, weights_hh, grad_h_ns, strict=True):
        carry = np.zeros_like(state[0]) if grad_h_n is None else np.array(grad_h_n, order="C")
        arguments.append((
            np.empty_like(state), np.ascontiguousarray(grad_state), np.ascontiguousarray(state),
            _aligned.contiguous(weight_hh), carry,
        ))
    one = states[0].dtype.type(1)
    _run([
        partial(kernels.backward_direction, *arguments[d], inside, relu, d == 1, one, first, stop)
        for d, first, stop in _units(len(states), num_steps, batch, hidden)
    ])
    return [a[0] for a in arguments], [a[4] for a in arguments]
