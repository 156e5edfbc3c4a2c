"""The NumPy time loop: one GEMM per step into a buffer it owns, then the elementwise rest of the step in place.

Interface: :class:`rnn_xp.loops.TimeLoop`. NumPy calls only (no numba): per step ``h @ W_hh^T`` into a buffer, the
add, the activation, and on padded steps the previous state selected. It writes only into arrays it allocated or that
the caller handed over (the projections), never into a user's array. The plan runs it where the step is GEMM-bound
(larger batches; the compiled loop takes small ones); truncated BPTT goes to the generic loop.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as compat_numpy  # arange(device=...) on NumPy 1.x too
import numpy as np

from rnn_xp.loops import LayerBackward, LayerForward, step_mask, steps

TRUNCATES = False


def forward_layer(xp: Any, layer: LayerForward) -> list[np.ndarray]:
    num_steps = layer.shape[0]
    inside = step_mask(compat_numpy, layer.lengths, num_steps)
    outside = None if inside is None else ~inside
    for direction, (states, bias, weight_hh, h0) in enumerate(
        zip(layer.projections, layer.biases, layer.weights_hh, layer.h0s, strict=True)
    ):
        if bias is not None:
            states += bias
        weight_hh_t = recurrent_operand(weight_hh)
        recurrent = np.empty_like(h0)
        previous = h0
        for t in steps(num_steps, direction):
            current = states[t]
            np.matmul(previous, weight_hh_t, out=recurrent)
            current += recurrent
            finish_step(current, previous, None if outside is None else outside[t], layer.nonlinearity)
            previous = current
    return layer.projections


def finish_step(current: np.ndarray, previous: np.ndarray, outside: np.ndarray | None, nonlinearity: str) -> None:
    """current (B, H), the step's pre-activation, becomes h_t in place: the activation (relu keeps NaN, as
    ``np.maximum`` does), then the previous state (B, H) selected where ``outside`` (B, 1) marks padding."""
    if nonlinearity == "tanh":
        np.tanh(current, out=current)
    else:
        np.maximum(current, 0, out=current)
    if outside is not None:
        np.copyto(current, previous, where=outside)


def recurrent_operand(weight_hh: np.ndarray) -> np.ndarray:
    """W_hh^T for the step's ``h @ W_hh^T``, made contiguous once a call (H^2 element moves): OpenBLAS multiplies by
    it faster than by the transposed view (bench/results/*-fast-paths.md)."""
    return np.ascontiguousarray(weight_hh.T)


def backward_layer(xp: Any, layer: LayerBackward) -> tuple[list[np.ndarray], list[np.ndarray]]:
    num_steps = layer.shape[0]
    mask = step_mask(compat_numpy, layer.lengths, num_steps)
    relu = layer.nonlinearity == "relu"
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(layer.grad_states, layer.states, layer.weights_hh, layer.grad_h_ns, strict=True)
    ):
        # grad_preact starts as the activation's slope and is overwritten step by step with the gradient. Where the
        # gradient does not pass (padding; a relu unit that is off) it is set to 0, not multiplied by 0, so an inf or
        # NaN arriving there does not spread.
        if relu:
            grad_preact = np.ones_like(state)
            dead = state <= 0 if mask is None else (state <= 0) | ~mask
        else:
            grad_preact = state * state
            np.subtract(1, grad_preact, out=grad_preact)
            dead = None if mask is None else ~mask
        carry = np.zeros_like(state[0]) if grad_h_n is None else grad_h_n.copy()
        arrived = np.empty_like(carry)
        for t in reversed(steps(num_steps, direction)):
            current = grad_preact[t]
            np.add(grad_state[t], carry, out=arrived)
            current *= arrived
            if dead is not None:
                np.copyto(current, 0, where=dead[t])
            if mask is None:
                np.matmul(current, weight_hh, out=carry)
            else:
                np.matmul(current, weight_hh, out=arrived)
                np.copyto(carry, arrived, where=mask[t])
        grad_preacts.append(grad_preact)
        grad_h0s.append(carry)
    return grad_preacts, grad_h0s
