"""The functional RNN: plain arrays of any Array-API namespace in, the same namespace and device out.

This is the entry for array-API codebases (NumPy, CuPy, PyTorch, JAX, array-api-strict). It never mutates its
inputs; the namespace is inferred with array-api-compat. Being array operations only, it runs inside other
frameworks' automatic differentiation: torch autograd, and JAX's ``grad``, ``jit`` and ``vmap`` and their
compositions (JAX arrays run one ``lax.scan`` per direction, :mod:`rnn_xp.loops.jax_scan`, whose example shows
``jit(grad)`` with traced ``lengths``).

What the cache holds: copies of ``x`` and ``h0`` (and ``out`` is never the array the cache reads), so editing them in
place after the forward does not change its backward; ``params`` by reference, so an in-place edit of a parameter
between a forward and its backward makes the backward differentiate the edited weights (update parameters after the
backward, as optimizers do).

Examples
--------
>>> import numpy as np
>>> from rnn_xp.functional import rnn_forward, rnn_backward
>>> rng = np.random.default_rng(0)
>>> params = {"weight_ih_l0": rng.standard_normal((4, 3)), "weight_hh_l0": rng.standard_normal((4, 4))}
>>> out, h_n, cache = rnn_forward(rng.standard_normal((5, 2, 3)), params)
>>> out.shape, h_n.shape
((5, 2, 4), (1, 2, 4))
>>> grad_x, grad_h0, grads = rnn_backward(cache, np.ones_like(out))
>>> sorted(grads)
['weight_hh_l0', 'weight_ih_l0']
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from array_api_compat import device as device_of

from rnn_xp._arrays import namespace_of
from rnn_xp._checks import (
    check_bool,
    check_call,
    check_dropout,
    check_grad,
    check_length_values,
    check_loop,
    check_nonlinearity,
    check_plain_array,
    check_seed,
    check_truncate,
)
from rnn_xp._plan import backward_loop, choose_loop
from rnn_xp.functional import _core
from rnn_xp.functional._core import ForwardCache
from rnn_xp.functional._dropout import dropout_masks
from rnn_xp.params import ParamLayout, layout_from_params

__all__ = ["ForwardCache", "rnn_backward", "rnn_forward"]


def rnn_forward(
    x: Any,
    params: Mapping[str, Any],
    h0: Any | None = None,
    *,
    lengths: Any | None = None,
    nonlinearity: str = "tanh",
    batch_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    seed: int | None = None,
    loop: str = "auto",
) -> tuple[Any, Any, ForwardCache]:
    """Run a stacked (bi)directional Elman RNN, exactly as ``torch.nn.RNN`` does.

    Parameters
    ----------
    x : array, shape (T, B, I), or (B, T, I) with ``batch_first``, or (T, I) unbatched
    params : mapping of torch-named arrays
        ``weight_ih_l{k}`` (H, in_k), ``weight_hh_l{k}`` (H, H), optional ``bias_ih_l{k}``/``bias_hh_l{k}``
        (H,), and ``*_reverse`` for a bidirectional RNN. Layers, directions, bias and sizes are read from it.
    h0 : array, shape (L*D, B, H) (or (L*D, H) unbatched), optional
        Initial states; zeros when omitted. Never batch-first.
    lengths : sequence of int, or integer array of any namespace and device, shape (B,), optional
        Each sequence's length in [1, T], as ``pack_padded_sequence`` takes them: outputs past a sequence's end
        are zero, h_n holds each sequence's state at its own last step, and the reverse direction starts there.
        The values are checked on the host, except in two cases that cannot be read there: with JAX arrays,
        lengths traced under ``jax.jit``/``vmap`` are clipped to [0, T] instead (0: an empty sequence;
        :mod:`rnn_xp.loops.jax_scan`); a CuPy array on the CUDA kernels is not read back (that would wait for the
        GPU), and a length outside [1, T] makes that sequence's outputs, h_n and gradients NaN instead of raising.
    nonlinearity : {"tanh", "relu"}
    batch_first : bool
        x and the output are (B, T, ·); h0 and h_n are not affected.
    dropout : float in [0, 1)
        Dropout on the output of every layer but the last, applied only when ``training``.
    training : bool
    seed : int, optional
        Seed of the dropout masks (a fresh one is drawn when omitted).
    loop : {"auto", "generic", "numpy", "numpy_transposed", "compiled"}
        The time loop: "auto" the plan's choice for the arrays' namespace (on NumPy the compiled loop or the NumPy
        loop, by a fixed rule of dtype, batch, hidden size and directions, or by the tuned plan file when there is
        one: :mod:`rnn_xp.tuning`; CuPy's kernels; JAX's ``lax.scan`` loop); "generic" the Array-API loop
        everywhere (benchmarks, debugging); "numpy" / "numpy_transposed" / "compiled" force one of the CPU loops
        (NumPy arrays only; the last needs numba).
        The backward uses the forward's.

    Returns
    -------
    out : array, shape (T, B, D*H) (or (B, T, D*H), or (T, D*H)), forward direction first
    h_n : array, shape (L*D, B, H) (or (L*D, H)), ``h_n[layer*D + direction]``
    cache : ForwardCache, for :func:`rnn_backward`

    Raises
    ------
    TypeError
        Mixed namespaces, non-floating or mismatched dtypes, wrong argument types.
    ValueError
        Shapes that do not match the parameters, lengths outside [1, T], T == 0, bad options, ``loop="numpy"`` or
        ``"compiled"`` on arrays that are not NumPy's, ``loop="compiled"`` without numba.
    """
    check_plain_array(x, "x")
    if h0 is not None:
        check_plain_array(h0, "h0")
    layout = layout_from_params(params)
    parameters = dict(params)
    xp = namespace_of(x, h0, *parameters.values(), argname="x, h0 and params")
    nonlinearity = check_nonlinearity(nonlinearity)
    batch_first = check_bool(batch_first, "batch_first")
    training = check_bool(training, "training")
    dropout = check_dropout(dropout)
    seed = check_seed(seed)
    loop = check_loop(loop)
    first = parameters[layout.names()[0]]
    call = check_call(
        xp, x, h0, lengths, layout, batch_first=batch_first, dtype=first.dtype, device=device_of(first)
    )
    return run_forward(xp, call, parameters, layout, nonlinearity, dropout if training else 0.0, seed, loop)


def run_forward(
    xp: Any,
    call: Any,
    params: dict[str, Any],
    layout: ParamLayout,
    nonlinearity: str,
    dropout: float,
    seed: int | None,
    loop: str = "auto",
) -> tuple[Any, Any, ForwardCache]:
    """Forward on inputs already validated by :func:`rnn_xp._checks.check_call` (the layer's entry)."""
    masks: list[Any] = []
    if dropout > 0.0 and layout.num_layers > 1:
        masks = dropout_masks(
            xp,
            dropout,
            seed,
            num_masks=layout.num_layers - 1,
            shape=(call.num_steps, call.batch, layout.num_directions * layout.hidden_size),
            dtype=call.x.dtype,
            device=device_of(call.x),
        )
    caller = call.layout
    x = caller.sequence_in(xp, call.x)
    h0 = None if call.h0 is None else caller.state_in(call.h0)
    time_loop = choose_loop(xp, loop=loop, dtype=_dtype_name(id(type(call.x.dtype)), call.x.dtype), batch=call.batch,
                            hidden=layout.hidden_size, directions=layout.num_directions)
    if not call.lengths_checked and not getattr(time_loop, "CHECKS_LENGTHS", False):
        check_length_values(call.lengths, call.num_steps)
    out, h_n, cache = _core.forward(xp, time_loop, x, params, layout, h0, call.lengths, nonlinearity, masks, caller)
    return caller.sequence_out(xp, out), caller.state_out(h_n), cache


def rnn_backward(
    cache: ForwardCache,
    grad_out: Any | None,
    grad_h_n: Any | None = None,
    *,
    bptt_truncate: int | None = None,
    input_grad: bool = True,
) -> tuple[Any, Any, dict[str, Any]]:
    """Back-propagation through time for the forward that made ``cache``.

    Parameters
    ----------
    cache : ForwardCache
        The third result of :func:`rnn_forward`.
    grad_out : array shaped like ``out``, or None (zeros)
    grad_h_n : array shaped like ``h_n``, or None (zeros)
    bptt_truncate : int >= 0, optional
        Truncated BPTT: the gradient arriving at step t flows back through at most ``bptt_truncate`` recurrent
        connections (steps t … t-k), as in the classic NumPy tutorials; applied within each layer.
    input_grad : bool
        False: grad_x is not computed (None is returned), which saves the first layer's (T*B, H) @ (H, I) product
        per direction when x is data that needs no gradient (autograd frameworks skip it likewise).

    Returns
    -------
    grad_x : array shaped like x, or None when ``input_grad`` is False
    grad_h0 : array shaped like h0 (L*D, B, H) (or (L*D, H) unbatched), also when h0 was omitted
    grads : dict of torch-named gradients, shaped like the parameters

    Raises
    ------
    TypeError
        ``cache`` is not a ForwardCache; gradients of the wrong namespace or dtype.
    ValueError
        Both gradients None; gradient shapes that do not match the forward.
    """
    if not isinstance(cache, ForwardCache):
        msg = f"cache must be the ForwardCache returned by rnn_forward; got {type(cache).__name__}"
        raise TypeError(msg)
    truncate = check_truncate(bptt_truncate)
    input_grad = check_bool(input_grad, "input_grad")
    xp = cache.xp
    like = cache.layer_inputs[0]
    if grad_out is None and grad_h_n is None:
        msg = "rnn_backward needs grad_out or grad_h_n (got None for both)"
        raise ValueError(msg)
    for name, grad, shape in (("grad_out", grad_out, cache.out_shape), ("grad_h_n", grad_h_n, cache.h_n_shape)):
        if grad is not None:
            check_grad(xp, grad, name, shape, dtype=like.dtype, device=device_of(like))
    return run_backward(cache, grad_out, grad_h_n, truncate, input_grad)


def run_backward(
    cache: ForwardCache, grad_out: Any | None, grad_h_n: Any | None, truncate: int | None, input_grad: bool = True
) -> tuple[Any, Any, dict[str, Any]]:
    """Backward on gradients already validated (the layer's entry)."""
    xp, caller = cache.xp, cache.caller
    grad_out = None if grad_out is None else caller.sequence_in(xp, grad_out)
    grad_h_n = None if grad_h_n is None else caller.state_in(grad_h_n)
    if truncate is not None and truncate >= cache.layer_inputs[0].shape[0]:
        truncate = None  # a window of T or more steps is the whole sequence: full BPTT
    loop = backward_loop(cache.loop, truncate)
    grad_x, grad_h0, grads = _core.backward(cache, loop, grad_out, grad_h_n, truncate, input_grad)
    return None if grad_x is None else caller.sequence_out(xp, grad_x), caller.state_out(grad_h0), grads


@functools.cache
def _dtype_name(kind: int, dtype: Any) -> str:
    """``str(dtype)``, remembered (NumPy builds the string anew each time). Keyed by the identity of the dtype's type
    too, so that dtypes of different libraries are never compared (array-api-strict warns)."""
    return str(dtype)
