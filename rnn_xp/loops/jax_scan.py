"""The JAX time loop: each direction's recurrence is one ``jax.lax.scan``.

Interface: :class:`rnn_xp.loops.TimeLoop`. The generic loop's Python ``for`` over time is unrolled by ``jax.jit``
into T copies of the step, so tracing and compile time grow with T; here a direction is one ``scan`` (``reverse=True``
for the second direction), traced once whatever T is. ``jax.grad`` differentiates through the forward scan;
:func:`backward_layer` (for :func:`rnn_xp.functional.rnn_backward` on JAX arrays) is the BPTT as a reverse scan.
Semantics are the generic loop's: relu keeps NaN; padded steps *select* the previous state (and, backwards, the
gradient arriving there), and the gradient into padding or into a relu unit that is off is set to 0, never multiplied
by 0, so an inf or NaN there does not spread. Truncated BPTT goes to the generic loop.

``lengths`` may be traced (an argument of a jitted or vmapped function): their values are then not checked on the
host but clipped to [0, T] (:func:`rnn_xp._checks.check_lengths`); a length of 0 or less is an empty sequence (its
outputs are zero, its h_n is its h0, its x receives no gradient), a length above T is T.

Dropout masks are drawn on the host from ``seed`` (:mod:`rnn_xp.functional._dropout`), so under ``jax.jit`` they
are constants of the traced function: the same masks at every call of it (a seed left None is drawn once, when it
is traced); a new mask needs a new trace.

The plan (:func:`rnn_xp._plan.choose_loop`) runs this loop for JAX arrays; ``loop="generic"`` forces the generic
one. jax is imported only here, and this module only when JAX arrays arrive.

Examples
--------
``jax.jit`` of ``jax.grad`` of a loss, with the lengths a traced argument:

>>> import jax
>>> import jax.numpy as jnp
>>> import numpy as np
>>> from rnn_xp.functional import rnn_forward
>>> rng = np.random.default_rng(0)
>>> shapes = {"weight_ih_l0": (4, 3), "weight_hh_l0": (4, 4), "bias_ih_l0": (4,), "bias_hh_l0": (4,)}
>>> params = {k: jnp.asarray(rng.uniform(-0.5, 0.5, s), dtype=jnp.float32) for k, s in shapes.items()}
>>> x = jnp.asarray(rng.standard_normal((6, 2, 3)), dtype=jnp.float32)  # (T, B, I)
>>> def loss(params, x, lengths):
...     out, h_n, _ = rnn_forward(x, params, lengths=lengths)
...     return jnp.sum(out**2) + jnp.sum(h_n**2)
>>> grad = jax.jit(jax.grad(loss))
>>> grads = grad(params, x, jnp.asarray([6, 2]))
>>> grads["weight_hh_l0"].shape
(4, 4)
>>> eager = jax.grad(loss)(params, x, [6, 2])  # concrete lengths: checked on the host
>>> all(bool(jnp.allclose(grads[k], eager[k], rtol=1e-5, atol=1e-6)) for k in params)
True
>>> later = grad(params, x, jnp.asarray([3, 9]))  # no recompilation; 9 > T is taken as T = 6
>>> bool(jnp.allclose(later["weight_hh_l0"], grad(params, x, jnp.asarray([3, 6]))["weight_hh_l0"]))
True
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from rnn_xp.loops import LayerBackward, LayerForward, step_mask

TRUNCATES = False


def _activation(z: Any, relu: bool) -> Any:
    """tanh or relu of ``z``; relu keeps NaN (as torch.nn.RNN), and its gradient at 0 is 0 (selected, as torch's)."""
    return jnp.where(z <= 0, jnp.zeros_like(z), z) if relu else jnp.tanh(z)


def forward_layer(xp: Any, layer: LayerForward) -> list[Any]:
    inside = step_mask(xp, layer.lengths, layer.shape[0])
    relu = layer.nonlinearity == "relu"
    return [
        _forward_direction(projection, bias, weight_hh, h0, inside, relu=relu, reverse=direction == 1)
        for direction, (projection, bias, weight_hh, h0) in enumerate(
            zip(layer.projections, layer.biases, layer.weights_hh, layer.h0s, strict=True)
        )
    ]


def backward_layer(xp: Any, layer: LayerBackward) -> tuple[list[Any], list[Any]]:
    inside = step_mask(xp, layer.lengths, layer.shape[0])
    relu = layer.nonlinearity == "relu"
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(layer.grad_states, layer.states, layer.weights_hh, layer.grad_h_ns, strict=True)
    ):
        grad_h_n = jnp.zeros_like(state[0, ...]) if grad_h_n is None else grad_h_n
        # The backward visits the steps in the opposite order to the forward's.
        grad_preact, grad_h0 = _backward_direction(grad_state, state, weight_hh, grad_h_n, inside, relu=relu,
                                                   reverse=direction == 0)
        grad_preacts.append(grad_preact)
        grad_h0s.append(grad_h0)
    return grad_preacts, grad_h0s


# A direction is a jitted function of its arrays, so that a call outside jax.jit (eager, or under jax.grad or
# jax.vmap alone) reuses the scan compiled for the same shapes instead of compiling it anew; inside jax.jit it is
# inlined into the caller's computation.
@partial(jax.jit, static_argnames=("relu", "reverse"))
def _forward_direction(
    projection: Any, bias: Any | None, weight_hh: Any, h0: Any, inside: Any | None, *, relu: bool, reverse: bool
) -> Any:
    """states (T, B, H) of one direction: projection (T, B, H), bias (H,) or None, weight_hh (H, H), h0 (B, H),
    inside (T, B, 1) bool or None; ``reverse`` runs from t = T-1 down to 0."""
    if bias is not None:
        projection = projection + bias
    weight_hh_t = weight_hh.T

    def step(state: Any, inputs: tuple[Any, Any | None]) -> tuple[Any, Any]:
        projection_t, inside_t = inputs
        new_state = _activation(projection_t + state @ weight_hh_t, relu)
        if inside_t is not None:
            new_state = jnp.where(inside_t, new_state, state)
        return new_state, new_state

    _, states = lax.scan(step, h0, (projection, inside), reverse=reverse)
    return states


@partial(jax.jit, static_argnames=("relu", "reverse"))
def _backward_direction(
    grad_state: Any, state: Any, weight_hh: Any, grad_h_n: Any, inside: Any | None, *, relu: bool, reverse: bool
) -> tuple[Any, Any]:
    """(grad_preact (T, B, H), grad_h0 (B, H)) of one direction, from the gradient arriving at each step's output
    (T, B, H), the forward's states (T, B, H), weight_hh (H, H), the gradient at h_n (B, H) and inside as in
    :func:`_forward_direction`; ``reverse`` visits t = T-1 down to 0."""

    def step(carry: Any, inputs: tuple[Any, Any, Any | None]) -> tuple[Any, Any]:
        grad_state_t, state_t, inside_t = inputs
        arrived = grad_state_t + carry
        if relu:
            # torch's threshold_backward: a unit that is off (output <= 0) passes nothing, a NaN output passes on
            live = jnp.logical_not(state_t <= 0)
            live = live if inside_t is None else jnp.logical_and(live, inside_t)
            grad_preact = jnp.where(live, arrived, jnp.zeros_like(arrived))
        else:
            grad_preact = arrived * (1 - state_t * state_t)
            if inside_t is not None:
                grad_preact = jnp.where(inside_t, grad_preact, jnp.zeros_like(grad_preact))
        through = grad_preact @ weight_hh
        carry = through if inside_t is None else jnp.where(inside_t, through, carry)
        return carry, grad_preact

    grad_h0, grad_preact = lax.scan(step, grad_h_n, (grad_state, state, inside), reverse=reverse)
    return grad_preact, grad_h0
