"""The compiled CPU time loop: a numba kernel runs a whole direction of a layer in one call (small batches).

Interface: :class:`rnn_xp.loops.TimeLoop`. At small batch a step of the NumPy loop is three or four NumPy calls of
about a microsecond each, far more than its arithmetic; here a step is a few nanoseconds of loop overhead plus the
arithmetic (:mod:`rnn_xp.loops.numba_kernels`). Semantics are the NumPy loop's. Truncated BPTT goes to the generic
loop. Everything runs on the calling thread, directions one after the other.

numba is imported, and the kernels compiled (or loaded from numba's on-disk cache), on the first call, never at
``import rnn_xp``; without numba the plan never picks this loop (:func:`rnn_xp.loops.numba_available`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_xp.loops import LayerBackward, LayerForward, host_lengths

TRUNCATES = False


def _kernels() -> Any:
    from rnn_xp.loops import numba_kernels

    return numba_kernels


def _transposed(weight: np.ndarray) -> np.ndarray:
    """W^T, C-contiguous, for the kernels' sums of rows: made afresh every call (H^2 element moves, a small part of
    the call's T*B*H^2 multiply-adds where the plan picks this loop)."""
    return np.ascontiguousarray(weight.T)


def uses_row_dots(batch: int) -> bool:
    """Whether the forward multiplies by W_hh as dot products with its rows (:func:`numba_kernels.add_row_dots`)
    rather than as sums of rows of W^T: for one sample, where each sample reads all of W_hh anyway and the dot
    products vectorise along the row (bench/results/*-fast-paths.md)."""
    return batch == 1


def forward_layer(xp: Any, layer: LayerForward) -> list[np.ndarray]:
    kernels = _kernels()
    num_steps, batch, hidden = layer.shape
    lengths = host_lengths(layer.lengths, num_steps, batch)
    relu, fast_tanh = layer.nonlinearity == "relu", layer.projections[0].dtype == np.float32
    dots = uses_row_dots(batch)
    results = []
    for direction, (states, bias, weight_hh, h0) in enumerate(
        zip(layer.projections, layer.biases, layer.weights_hh, layer.h0s, strict=True)
    ):
        states = states if states.flags.c_contiguous and states.flags.writeable else np.array(states, order="C")
        bias = np.zeros(hidden, dtype=states.dtype) if bias is None else np.ascontiguousarray(bias)
        weight = np.ascontiguousarray(weight_hh) if dots else _transposed(weight_hh)
        kernels.forward_direction(states, bias, weight, np.ascontiguousarray(h0), lengths, relu, direction == 1,
                                  fast_tanh, dots)
        results.append(states)
    return results


def backward_layer(xp: Any, layer: LayerBackward) -> tuple[list[np.ndarray], list[np.ndarray]]:
    kernels = _kernels()
    num_steps, batch, _ = layer.shape
    lengths = host_lengths(layer.lengths, num_steps, batch)
    relu = layer.nonlinearity == "relu"
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(layer.grad_states, layer.states, layer.weights_hh, layer.grad_h_ns, strict=True)
    ):
        carry = np.zeros_like(state[0]) if grad_h_n is None else np.array(grad_h_n, order="C")
        grad_preact = np.empty_like(state)
        kernels.backward_direction(grad_preact, np.ascontiguousarray(grad_state), np.ascontiguousarray(state),
                                   np.ascontiguousarray(weight_hh), carry, lengths, relu, direction == 1,
                                   state.dtype.type(1))
        grad_preacts.append(grad_preact)
        grad_h0s.append(carry)
    return grad_preacts, grad_h0s
