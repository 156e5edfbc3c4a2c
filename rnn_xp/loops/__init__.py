"""The time loops: the recurrence of one layer over time, all directions at once, behind one interface.

- :mod:`rnn_xp.loops.numpy_inplace`: NumPy; one GEMM per step into a buffer it owns, then the elementwise rest of the
  step (one fused numba pass when numba is installed, else NumPy calls);
- :mod:`rnn_xp.loops.compiled`: NumPy arrays, a numba kernel that runs a whole direction in one call (small
  batches);
- :mod:`rnn_xp.loops.generic`: any Array-API namespace, no in-place writes (works on JAX); the only loop that
  truncates BPTT;
- :mod:`rnn_xp.loops.jax_scan`: JAX; one ``jax.lax.scan`` per direction (tracing and compiling do not grow with T);
- :class:`rnn_xp.loops.cuda.CudaLoop`: CuPy; the fused kernels of :mod:`rnn_xp.cuda`.

Which one runs is decided once per call by :func:`rnn_xp._plan.choose_loop`; the forward's cache keeps it for
the backward. A loop receives one argument object per layer call (:class:`LayerForward`, :class:`LayerBackward`)
and imports nothing from another loop.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class LayerForward:
    """One layer's forward recurrence, all its directions (direction 1 runs from t = T-1 down to 0).

    projections[d] : (T, B, H), ``x_t W_ih^T`` for every step, a fresh array the caller hands over (a loop may
    write its states into it); biases[d] : (H,) = b_ih + b_hh, or None; weights_hh[d] : (H, H); h0s[d] : (B, H);
    lengths : (B,) int32 on the arrays' device, every value in [1, T] (in [0, T] when traced under JAX), or None;
    step t is inside sample b when t < lengths[b].
    """

    projections: list[Any]
    biases: list[Any | None]
    weights_hh: list[Any]
    h0s: list[Any]
    lengths: Any | None
    nonlinearity: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, B, H)."""
        num_steps, batch, hidden = self.projections[0].shape
        return int(num_steps), int(batch), int(hidden)


@dataclass(frozen=True)
class LayerBackward:
    """One layer's backward recurrence, all its directions.

    grad_states[d] : (T, B, H), the gradient arriving at each step's output; states[d] : (T, B, H), the forward's
    hidden states; weights_hh[d] : (H, H); grad_h_ns[d] : (B, H) or None; lengths as in :class:`LayerForward`;
    truncate : None, or k for truncated BPTT (only where the loop's ``TRUNCATES``).
    """

    grad_states: list[Any]
    states: list[Any]
    weights_hh: list[Any]
    grad_h_ns: list[Any | None]
    lengths: Any | None
    nonlinearity: str
    truncate: int | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, B, H)."""
        num_steps, batch, hidden = self.states[0].shape
        return int(num_steps), int(batch), int(hidden)


class TimeLoop(Protocol):
    """The interface every loop implements.

    ``forward_layer(xp, layer) -> states``: states[d] (T, B, H), the hidden state after step t, held unchanged
    through a sample's padding.

    ``backward_layer(xp, layer) -> (grad_preacts, grad_h0s)``: grad_preacts[d] (T, B, H), the gradient of the loss
    with respect to each step's pre-activation (zero on padding), and grad_h0s[d] (B, H).

    ``TRUNCATES``: whether ``backward_layer`` accepts ``truncate = k`` (see :mod:`rnn_xp.loops.generic`).
    """

    TRUNCATES: bool

    def forward_layer(self, xp: Any, layer: LayerForward) -> list[Any]: ...

    def backward_layer(self, xp: Any, layer: LayerBackward) -> tuple[list[Any], list[Any]]: ...


def steps(num_steps: int, direction: int) -> range:
    """Time indices in the order direction ``direction`` visits them."""
    return range(num_steps) if direction == 0 else range(num_steps - 1, -1, -1)


def inside_lengths(xp: Any, lengths: Any, num_steps: int) -> Any:
    """(T, B) bool: True where step t lies inside sample b's length (t < lengths[b])."""
    from array_api_compat import device

    return xp.arange(num_steps, dtype=lengths.dtype, device=device(lengths))[:, None] < lengths[None, :]


def host_lengths(lengths: Any | None, num_steps: int, batch: int) -> np.ndarray:
    """(B,) int32 NumPy lengths for the numba kernels: ``lengths`` itself, or T for every sample."""
    if lengths is None:
        return np.full(batch, num_steps, dtype=np.int32)
    return np.ascontiguousarray(lengths, dtype=np.int32)


@cache
def numba_available() -> bool:
    """Whether numba is installed (checked without importing it): the compiled loop and the NumPy loop's fused
    steps need it."""
    return importlib.util.find_spec("numba") is not None
