"""The time loops: the recurrence of one layer over time, all directions at once, behind one interface.

- :mod:`rnn_xp.loops.numpy_inplace`: NumPy; one GEMM per step into a buffer it owns, add and activation in place
  (fused into one numba call when numba is installed);
- :mod:`rnn_xp.loops.compiled`: NumPy arrays, numba kernels that run a whole direction in one call (small batches);
- :mod:`rnn_xp.loops.generic`: any Array-API namespace, no in-place writes (works on JAX); the only loop that
  truncates BPTT;
- :class:`rnn_xp.loops.cuda.CudaLoop`: CuPy; the fused kernels of :mod:`rnn_xp.cuda`.

Which one runs is decided once per call by :func:`rnn_xp._selection.select_loop`; the forward's cache keeps it for
the backward.
"""

from __future__ import annotations

from typing import Any, Protocol


class TimeLoop(Protocol):
    """The interface every loop implements (direction 1 runs from t = T-1 down to 0).

    ``forward_layer(xp, projections, biases, weights_hh, h0s, lengths, nonlinearity) -> states``
        projections[d] : (T, B, H), ``x_t W_ih^T`` for every step, a fresh array the caller owns (a loop may
        reuse it); biases[d] : (H,) = b_ih + b_hh, or None; weights_hh[d] : (H, H); h0s[d] : (B, H);
        lengths : (B,) int32 on the arrays' device, every value in [1, T], or None; step t is inside sample b when
        t < lengths[b]. Returns states[d] : (T, B, H), the hidden state after step t, held unchanged through a
        sample's padding.

    ``backward_layer(xp, grad_states, states, weights_hh, grad_h_ns, lengths, nonlinearity, truncate)
    -> (grad_preacts, grad_h0s)``
        grad_states[d] : (T, B, H), the gradient arriving at each step's output; grad_h_ns[d] : (B, H) or None.
        Returns grad_preacts[d] : (T, B, H), the gradient of the loss with respect to each step's pre-activation
        (zero on padding), and grad_h0s[d] : (B, H). ``truncate`` is None unless ``TRUNCATES``.

    ``TRUNCATES``: whether ``backward_layer`` accepts ``truncate = k`` (see :mod:`rnn_xp.loops.generic`).

    Optional: ``project(xp, flat_input, weight_ih, (T, B, H)) -> (T, B, H)``, the layer's input projection
    flat_input (T*B, I) @ W_ih^T, when a loop makes it differently from one ``@`` (:mod:`rnn_xp.loops.compiled`).
    """

    TRUNCATES: bool

    def forward_layer(
        self,
        xp: Any,
        projections: list[Any],
        biases: list[Any | None],
        weights_hh: list[Any],
        h0s: list[Any],
        lengths: Any | None,
        nonlinearity: str,
    ) -> list[Any]: ...

    def backward_layer(
        self,
        xp: Any,
        grad_states: list[Any],
        states: list[Any],
        weights_hh: list[Any],
        grad_h_ns: list[Any | None],
        lengths: Any | None,
        nonlinearity: str,
        truncate: int | None,
    ) -> tuple[list[Any], list[Any]]: ...


def inside_lengths(xp: Any, lengths: Any, num_steps: int) -> Any:
    """(T, B) bool: True where step t lies inside sample b's length (t < lengths[b])."""
    from array_api_compat import device

    return xp.arange(num_steps, dtype=lengths.dtype, device=device(lengths))[:, None] < lengths[None, :]


def steps(num_steps: int, direction: int) -> range:
    """Time indices in the order direction ``direction`` visits them."""
    return range(num_steps) if direction == 0 else range(num_steps - 1, -1, -1)
