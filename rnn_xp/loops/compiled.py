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


def _run(calls: list[Callable[[], None]]) -> None:
    """Run the calls (numba kernels that release the GIL) at once on the pinned workers."""
    _workers.run(calls)


def _lengths(lengths: np.ndarray | None, num_steps: int, batch: int) -> np.ndarray:
    if lengths is None:
        return np.full(batch, num_steps, dtype=np.int32)
    return np.ascontiguousarray(lengths, dtype=np.int32)


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
