"""The NumPy time loop: one GEMM per step into a buffer it owns, then the elementwise rest of the step in place.

Interface: :class:`rnn_xp.loops.TimeLoop`. It writes only into arrays it allocated or that the caller handed over
(the projections), never into a user's array. The plan runs it where the step is GEMM-bound (larger batches; the
compiled loop takes small ones); truncated BPTT goes to the generic loop.

With numba installed, the elementwise rest of each step (add, activation, length selection; in the backward the
activation's slope, the product and the selection) is one fused pass of :mod:`rnn_xp.loops.numba_kernels` instead
of two to four NumPy calls, with the vectorised float32 tanh. float64 tanh stays NumPy's (SIMD in NumPy; libm's,
in numba, is scalar). Without numba the plain NumPy calls run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_xp.loops import LayerBackward, LayerForward, host_lengths, numba_available, steps

TRUNCATES = False


def _fused() -> Any | None:
    """The numba kernels, or None without numba."""
    if not numba_available():
        return None
    from rnn_xp.loops import numba_kernels

    return numba_kernels


def forward_layer(xp: Any, layer: LayerForward) -> list[np.ndarray]:
    num_steps, batch, _ = layer.shape
    relu = layer.nonlinearity == "relu"
    fast_tanh = layer.projections[0].dtype == np.float32
    fused = _fused() if relu or fast_tanh else None
    lengths = host_lengths(layer.lengths, num_steps, batch)
    outside = None if layer.lengths is None else ~_inside(lengths, num_steps)
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
            if fused is not None:
                fused.forward_step(current, recurrent, previous, lengths, t, relu, fast_tanh)
            else:
                current += recurrent
                if relu:
                    np.maximum(current, 0, out=current)
                else:
                    np.tanh(current, out=current)
                if outside is not None:
                    np.copyto(current, previous, where=outside[t])
            previous = current
    return layer.projections


def recurrent_operand(weight_hh: np.ndarray) -> np.ndarray:
    """W_hh^T for the step's ``h @ W_hh^T``, made contiguous once a call (H^2 element moves): OpenBLAS multiplies by
    it faster than by the transposed view (bench/results/*-fast-paths.md)."""
    return np.ascontiguousarray(weight_hh.T)


def backward_layer(xp: Any, layer: LayerBackward) -> tuple[list[np.ndarray], list[np.ndarray]]:
    num_steps, batch, _ = layer.shape
    fused = _fused()
    lengths = host_lengths(layer.lengths, num_steps, batch)
    mask = None if layer.lengths is None else _inside(lengths, num_steps)
    relu = layer.nonlinearity == "relu"
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(layer.grad_states, layer.states, layer.weights_hh, layer.grad_h_ns, strict=True)
    ):
        # Where the gradient does not pass (padding; a relu unit that is off) it is set to 0, not multiplied by 0,
        # so an inf or NaN arriving there does not spread.
        grad_state = np.ascontiguousarray(grad_state)  # a direction's slice of the layer's gradient: one layout
        grad_preact = np.empty_like(state)
        slope = dead = None  # for the plain NumPy calls: the activation's slope, and where nothing passes
        if fused is None:
            slope = np.ones_like(state) if relu else 1 - state * state
            dead = (state <= 0 if mask is None else (state <= 0) | ~mask) if relu else (
                None if mask is None else ~mask)
        carry = np.zeros_like(state[0]) if grad_h_n is None else grad_h_n.copy()
        product = np.empty_like(carry)
        one = state.dtype.type(1)
        for t in reversed(steps(num_steps, direction)):
            current = grad_preact[t]
            if fused is not None:
                fused.backward_step(current, grad_state[t], carry, state[t], lengths, t, relu, one)
            else:
                assert slope is not None
                np.add(grad_state[t], carry, out=current)
                current *= slope[t]
                if dead is not None:
                    np.copyto(current, 0, where=dead[t])
            if mask is None:
                np.matmul(current, weight_hh, out=carry)
            else:
                np.matmul(current, weight_hh, out=product)
                np.copyto(carry, product, where=mask[t])
        grad_preacts.append(grad_preact)
        grad_h0s.append(carry)
    return grad_preacts, grad_h0s


def _inside(lengths: np.ndarray, num_steps: int) -> np.ndarray:
    """(T, B, 1) bool, True where step t is inside sample b's length."""
    return (np.arange(num_steps)[:, None] < lengths[None, :])[:, :, None]
