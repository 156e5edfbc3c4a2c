"""The compiled CPU time loop: numba kernels that run a whole direction of a layer in one call (small batches).

Interface: :class:`rnn_xp.loops.TimeLoop`. At small batch a step of the NumPy loop is three or four NumPy calls of
about a microsecond each, far more than its arithmetic; here a step is a few nanoseconds of loop overhead plus the
arithmetic (see :mod:`rnn_xp.loops._kernels`). Semantics are the NumPy loop's: padded steps select the previous
state, relu keeps NaN, gradients into padding and dead relu units are set to 0. Truncated BPTT goes to the generic
loop.

numba is imported, and the kernels compiled (or loaded from numba's on-disk cache), on the first call, never at
``import rnn_xp``. :func:`available` says whether numba is installed; without it selection runs the NumPy loop.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from typing import Any

import numpy as np

TRUNCATES = False


@cache
def available() -> bool:
    """Whether numba is installed (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def _kernels() -> Any:
    from rnn_xp.loops import _kernels

    return _kernels


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
    outputs = []
    for direction, (states, bias, weight_hh, h0) in enumerate(zip(projections, biases, weights_hh, h0s, strict=True)):
        # The projections are the caller's to reuse; a view (never here in practice) would be copied, not written.
        states = states if states.flags.c_contiguous and states.flags.writeable else np.array(states, order="C")
        dtype = states.dtype
        kernels.forward_direction(
            states,
            np.zeros(hidden, dtype=dtype) if bias is None else np.ascontiguousarray(bias),
            np.ascontiguousarray(weight_hh.T),
            np.ascontiguousarray(h0),
            inside,
            nonlinearity == "relu",
            direction == 1,
            dtype == np.float32,
        )
        outputs.append(states)
    return outputs


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
    num_steps, batch, _ = states[0].shape
    inside = _lengths(lengths, num_steps, batch)
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(grad_states, states, weights_hh, grad_h_ns, strict=True)
    ):
        carry = np.zeros_like(state[0]) if grad_h_n is None else np.array(grad_h_n, order="C")
        grad_preacts.append(
            kernels.backward_direction(
                np.ascontiguousarray(grad_state),
                np.ascontiguousarray(state),
                np.ascontiguousarray(weight_hh),
                carry,
                inside,
                nonlinearity == "relu",
                direction == 1,
                state.dtype.type(1),
            )
        )
        grad_h0s.append(carry)
    return grad_preacts, grad_h0s
