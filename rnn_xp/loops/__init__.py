"""The time loops: the recurrence of one layer over time, all directions at once, behind one interface.

- :mod:`rnn_xp.loops.numpy_inplace`: NumPy; one GEMM per step into a buffer it owns, then the elementwise rest of the
  step in in-place NumPy calls (:mod:`rnn_xp.loops.numpy_transposed`: the same with the step's product transposed);
- :mod:`rnn_xp.loops.compiled`: NumPy arrays, a numba kernel that runs a whole direction in one call (small
  batches);
- :mod:`rnn_xp.loops.generic`: any Array-API namespace, no in-place writes (works on JAX); the only loop that
  truncates BPTT;
- :mod:`rnn_xp.loops.jax_scan`: JAX; one ``jax.lax.scan`` per direction (tracing and compiling do not grow with T);
- :class:`rnn_xp.loops.cuda.CudaLoop`: CuPy; the fused kernels of :mod:`rnn_xp.cuda`.

Which one runs is decided once per call by :func:`rnn_xp._plan.choose_loop`; the forward's cache keeps it for
the backward. A loop receives one argument object per layer call (:class:`LayerForward`, :class:`LayerBackward`)
and imports nothing from another loop.

A loop may also offer the optional hooks ``forward_layer_into`` and ``backward_layer_into`` (see :class:`TimeLoop`):
the functional core then hands it destinations to fill instead of assembling the layer's output, h_n and grad_h0
itself, which on a GPU saves the launches and allocations of those copies (the CUDA loop has them).
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


@dataclass(frozen=True)
class LayerForwardInto:
    """The argument of the optional hook ``forward_layer_into``: one layer's forward with its destinations.

    As :class:`LayerForward`, except: biases_ih[d] and biases_hh[d] : (H,) or None, kept apart (the loop adds both);
    h0s[d] : (B, H), or None for zeros; out : (T, B, D*H), to fill with the layer's output (direction d in columns
    [d*H, (d+1)*H), zero past each sample's length); h_n : (L*D, B, H), whose row ``first + d`` to fill with
    direction d's last state (each sample's state at its own last step).
    """

    projections: list[Any]
    biases_ih: list[Any | None]
    biases_hh: list[Any | None]
    weights_hh: list[Any]
    h0s: list[Any | None]
    lengths: Any | None
    nonlinearity: str
    out: Any
    h_n: Any
    first: int


@dataclass(frozen=True)
class LayerBackwardInto:
    """The argument of the optional hook ``backward_layer_into``: one layer's backward with its destination.

    As :class:`LayerBackward` (never truncated), except: grad_output : (T, B, D*H) or None (zeros), direction d's
    gradient in columns [d*H, (d+1)*H); grad_h_ns[d] : (B, H) or None (zeros); grad_h0 : (L*D, B, H), whose row
    ``first + d`` to fill with direction d's gradient with respect to its initial state; grad_bias : (D, H) or None,
    whose row d to fill, where given, with the sum of grad_preacts[d] over steps and samples (the bias gradient).
    """

    grad_output: Any | None
    states: list[Any]
    weights_hh: list[Any]
    grad_h_ns: list[Any | None]
    lengths: Any | None
    nonlinearity: str
    grad_h0: Any
    first: int
    grad_bias: Any | None = None


class TimeLoop(Protocol):
    """The interface every loop implements.

    ``forward_layer(xp, layer) -> states``: states[d] (T, B, H), the hidden state after step t, held unchanged
    through a sample's padding.

    ``backward_layer(xp, layer) -> (grad_preacts, grad_h0s)``: grad_preacts[d] (T, B, H), the gradient of the loss
    with respect to each step's pre-activation (zero on padding), and grad_h0s[d] (B, H).

    ``TRUNCATES``: whether ``backward_layer`` accepts ``truncate = k`` (see :mod:`rnn_xp.loops.generic`).

    Optional hooks (a loop without them is driven through the two methods above):

    ``forward_layer_into(xp, layer: LayerForwardInto) -> (states, previous)``: as ``forward_layer``, and also fills
    ``layer.out`` and ``layer.h_n``; previous[d] (T, B, H) is the state before each step (h0, or zeros, at the
    first visited step), so that the weight gradient of W_hh is one matmul.

    ``backward_layer_into(xp, layer: LayerBackwardInto) -> grad_preacts``: as ``backward_layer`` (untruncated), and
    fills ``layer.grad_h0`` instead of returning grad_h0s.
    """

    TRUNCATES: bool

    def forward_layer(self, xp: Any, layer: LayerForward) -> list[Any]: ...

    def backward_layer(self, xp: Any, layer: LayerBackward) -> tuple[list[Any], list[Any]]: ...


def steps(num_steps: int, direction: int) -> range:
    """Time indices in the order direction ``direction`` visits them."""
    return range(num_steps) if direction == 0 else range(num_steps - 1, -1, -1)


def step_mask(xp: Any, lengths: Any | None, num_steps: int) -> Any | None:
    """(T, B, 1) bool, True where step t lies inside sample b's length (t < lengths[b]); None without lengths.

    ``lengths`` (B,) int32 as in :class:`LayerForward`; ``xp`` its array-API namespace (``array_api_compat``'s for
    NumPy, whose ``arange`` takes ``device`` on NumPy 1.x too).
    """
    from array_api_compat import device

    if lengths is None:
        return None
    return (xp.arange(num_steps, dtype=lengths.dtype, device=device(lengths))[:, None] < lengths[None, :])[:, :, None]


def host_lengths(lengths: Any | None, num_steps: int, batch: int) -> np.ndarray:
    """(B,) int32 NumPy lengths for the numba kernels: ``lengths`` itself, or T for every sample."""
    if lengths is None:
        return np.full(batch, num_steps, dtype=np.int32)
    return np.ascontiguousarray(lengths, dtype=np.int32)


@cache
def numba_available() -> bool:
    """Whether numba is installed (checked without importing it): the compiled loop needs it."""
    return importlib.util.find_spec("numba") is not None
