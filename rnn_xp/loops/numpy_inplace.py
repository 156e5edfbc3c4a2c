"""The NumPy time loop: one GEMM per step into a buffer it owns, then add and activation in place.

Interface: :class:`rnn_xp.loops.TimeLoop`. It writes only into arrays it
allocated or that the caller handed over as owned (the projections), never into a user's array. Used for NumPy
arrays where the step is GEMM-bound (larger batches; the compiled loop takes small ones); truncated BPTT goes to
the generic loop.

With numba installed, the elementwise rest of each step (add, activation, length selection; in the backward the
activation's slope, the product and the selection) is one fused call of :mod:`rnn_xp.loops._kernels` instead of
two to four NumPy calls and passes, with the vectorised float32 tanh (NumPy's float32 tanh is scalar in some builds,
about 3 ns an element; in this one it is SIMD, 0.2 ns, and the fused pass is as fast). float64 tanh stays NumPy's.
Without numba the plain NumPy calls run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rnn_xp.loops import steps

TRUNCATES = False

# From this many rows (T*B) a call makes a kept W_hh^T for a weight that has none (a transpose is ~H^2 element
# moves, a call T*B*H^2 multiply-adds).
KEEP_FROM_ROWS = 64


def _fused() -> Any | None:
    """The numba kernels, or None without numba."""
    from rnn_xp.loops import compiled

    if not compiled.available():
        return None
    from rnn_xp.loops import _kernels

    return _kernels


def forward_layer(
    xp: Any,
    projections: list[np.ndarray],
    biases: list[np.ndarray | None],
    weights_hh: list[np.ndarray],
    h0s: list[np.ndarray],
    lengths: np.ndarray | None,
    nonlinearity: str,
) -> list[np.ndarray]:
    fused = _fused()
    num_steps, batch = projections[0].shape[:2]
    outside = None if lengths is None else ~_inside(lengths, num_steps)
    inside = None
    if fused is not None:  # the fused steps take lengths as (B,) int32, T for every sample without lengths
        inside = np.full(batch, num_steps, dtype=np.int32) if lengths is None else np.asarray(lengths, np.int32)
    for direction, (states, bias, weight_hh, h0) in enumerate(
        zip(projections, biases, weights_hh, h0s, strict=True)
    ):
        if bias is not None:
            states += bias
        weight_hh_t = _recurrent_right_operand(weight_hh, fused is not None, num_steps * batch)
        recurrent = np.empty_like(h0)
        previous = h0
        relu, fast_tanh = nonlinearity == "relu", states.dtype == np.float32
        # float64 tanh stays NumPy's (SIMD in NumPy builds for AVX-512/AVX2; libm's, in numba, is scalar).
        fuse = fused is not None and (relu or fast_tanh)
        for t in steps(num_steps, direction):
            current = states[t]
            np.matmul(previous, weight_hh_t, out=recurrent)
            if fuse and fused is not None:
                fused.forward_step(current, recurrent, previous, inside, t, relu, fast_tanh)
                previous = current
                continue
            current += recurrent
            if nonlinearity == "tanh":
                np.tanh(current, out=current)
            else:
                np.maximum(current, 0, out=current)
            if outside is not None:
                np.copyto(current, previous, where=outside[t])
            previous = current
    return projections


def _recurrent_right_operand(weight_hh: np.ndarray, kept_transposes: bool, rows: int) -> np.ndarray:
    """W_hh^T for the step's ``h @ W_hh^T``: the contiguous copy the compiled loop keeps
    (:mod:`rnn_xp.loops._transposes`, needs numba) when the weight is expected unchanged since its last call and
    either a transpose is already kept for it or the call is long enough (``rows`` = T*B >= :data:`KEEP_FROM_ROWS`)
    to pay for making one; else the transposed view. OpenBLAS is faster with the contiguous one (float32, one step,
    us: B=4 H=512 38 vs 57, B=64 H=256 35 vs 43, B=512 H=256 144 vs 156; float64 B=8 H=1024 206 vs 260).
    A caller passing a new array each call (a view, ``tensor.numpy()``) would otherwise pay a transpose and a copy
    each call: 9.8 ms against 0.72 at T=4, B=8, H=1024. A weight that changes every call (training) keeps the view."""
    if kept_transposes:
        from rnn_xp.loops import _transposes

        if _transposes.likely_reused(weight_hh) and (rows >= KEEP_FROM_ROWS or _transposes.is_kept(weight_hh)):
            return _transposes.transposed(weight_hh)
    return weight_hh.T


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
    if _fused() is not None:
        return _backward_fused(grad_states, states, weights_hh, grad_h_ns, lengths, nonlinearity)
    mask = None if lengths is None else _inside(lengths, states[0].shape[0])
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(grad_states, states, weights_hh, grad_h_ns, strict=True)
    ):
        # grad_preact starts as the activation's slope and is overwritten step by step with the gradient. Where the
        # gradient does not pass (padding; a relu unit that is off) it is set to 0, not multiplied by 0, so an inf or
        # NaN arriving there does not spread.
        if nonlinearity == "tanh":
            grad_preact = state * state
            np.subtract(1, grad_preact, out=grad_preact)
            dead = None if mask is None else ~mask
        else:
            grad_preact = np.ones_like(state)
            dead = state <= 0 if mask is None else (state <= 0) | ~mask
        carry = np.zeros_like(state[0]) if grad_h_n is None else grad_h_n.copy()
        arrived = np.empty_like(carry)
        for t in reversed(steps(state.shape[0], direction)):
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


def _backward_fused(
    grad_states: list[np.ndarray],
    states: list[np.ndarray],
    weights_hh: list[np.ndarray],
    grad_h_ns: list[np.ndarray | None],
    lengths: np.ndarray | None,
    nonlinearity: str,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The backward with one fused elementwise call and one GEMM a step (same semantics as the NumPy calls)."""
    fused = _fused()
    assert fused is not None
    num_steps, batch = states[0].shape[:2]
    inside = np.full(batch, num_steps, dtype=np.int32) if lengths is None else np.asarray(lengths, np.int32)
    mask = None if lengths is None else _inside(lengths, num_steps)
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(grad_states, states, weights_hh, grad_h_ns, strict=True)
    ):
        grad_preact = np.empty_like(state)
        carry = np.zeros_like(state[0]) if grad_h_n is None else grad_h_n.copy()
        product = np.empty_like(carry)
        one, relu = state.dtype.type(1), nonlinearity == "relu"
        for t in reversed(steps(num_steps, direction)):
            current = grad_preact[t]
            fused.backward_step(current, grad_state[t], carry, state[t], inside, t, relu, one)
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
