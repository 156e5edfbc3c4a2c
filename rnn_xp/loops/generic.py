"""The generic time loop: written only against the Array API, no in-place writes (so JAX and array-api-strict work).

Interface: :class:`rnn_xp.loops.TimeLoop`. The only loop that truncates BPTT (``truncate = k``): the gradient
arriving at step t flows back through at most k recurrent connections: it reaches the pre-activations of steps
t, t-1, …, t-k and stops at the state before them, which is treated as a constant (so h0 receives it only from
steps t < k). Padded steps are not steps: they neither count nor carry gradient.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device as device_of

from rnn_xp.loops import LayerBackward, LayerForward, step_mask, steps

TRUNCATES = True


def activation(xp: Any, z: Any, nonlinearity: str) -> Any:
    """tanh or relu of ``z``."""
    if nonlinearity == "tanh":
        return xp.tanh(z)
    return xp.where(z <= 0, xp.zeros_like(z), z)  # NaN stays NaN, as in torch.nn.RNN and NumPy


def activation_grad(xp: Any, states: Any, inside: Any | None, nonlinearity: str) -> tuple[Any, Any | None]:
    """(slope, live): d act / d z written through the activation's output, and where the gradient passes at all
    (inside the sequence, and for relu a unit that is on), or None when it passes everywhere. Gradients are
    *selected* by ``live``, never multiplied by 0: an inf or NaN on padding or into a dead unit must not spread."""
    if nonlinearity == "tanh":
        return 1 - states * states, inside
    on = xp.logical_not(states <= 0)  # as torch's threshold_backward: a NaN output passes its gradient on
    live = on if inside is None else xp.logical_and(on, inside)
    return xp.ones_like(states), live


def _through_activation(xp: Any, arrived: Any, slope: Any, live: Any | None) -> Any:
    """The pre-activation gradient of one step: ``arrived * slope`` where live, exactly 0 elsewhere."""
    grad = arrived * slope
    return grad if live is None else xp.where(live, grad, xp.zeros_like(grad))


def forward_layer(xp: Any, layer: LayerForward) -> list[Any]:
    mask = step_mask(xp, layer.lengths, layer.shape[0])
    states = []
    for direction, (projection, bias, weight_hh, state) in enumerate(
        zip(layer.projections, layer.biases, layer.weights_hh, layer.h0s, strict=True)
    ):
        if bias is not None:
            projection = projection + bias
        weight_hh_t = weight_hh.T
        per_step: list[Any] = [None] * projection.shape[0]
        for t in steps(projection.shape[0], direction):
            new_state = activation(xp, projection[t, ...] + state @ weight_hh_t, layer.nonlinearity)
            if mask is not None:
                new_state = xp.where(mask[t, ...], new_state, state)
            per_step[t] = state = new_state
        states.append(xp.stack(per_step))
    return states


def backward_layer(xp: Any, layer: LayerBackward) -> tuple[list[Any], list[Any]]:
    mask = step_mask(xp, layer.lengths, layer.shape[0])
    truncate = layer.truncate
    grad_preacts, grad_h0s = [], []
    for direction, (grad_state, state, weight_hh, grad_h_n) in enumerate(
        zip(layer.grad_states, layer.states, layer.weights_hh, layer.grad_h_ns, strict=True)
    ):
        slope = activation_grad(xp, state, mask, layer.nonlinearity)
        if truncate is None:
            grad_preact, grad_h0 = _backward_full(xp, grad_state, slope, weight_hh, grad_h_n, mask, direction)
        else:
            grad_preact, grad_h0 = _backward_truncated(
                xp, grad_state, slope, weight_hh, grad_h_n, mask, direction, truncate
            )
        grad_preacts.append(grad_preact)
        grad_h0s.append(grad_h0)
    return grad_preacts, grad_h0s


def _backward_full(
    xp: Any,
    grad_state: Any,
    slope: tuple[Any, Any | None],
    weight_hh: Any,
    grad_h_n: Any | None,
    mask: Any | None,
    direction: int,
) -> tuple[Any, Any]:
    num_steps = grad_state.shape[0]
    rate, live = slope
    carry = xp.zeros_like(grad_state[0, ...]) if grad_h_n is None else grad_h_n
    per_step: list[Any] = [None] * num_steps
    for t in reversed(steps(num_steps, direction)):
        grad_preact = _through_activation(
            xp, grad_state[t, ...] + carry, rate[t, ...], None if live is None else live[t, ...]
        )
        through = grad_preact @ weight_hh
        carry = through if mask is None else xp.where(mask[t, ...], through, carry)
        per_step[t] = grad_preact
    return xp.stack(per_step), carry


def _backward_truncated(
    xp: Any,
    grad_state: Any,
    slope: tuple[Any, Any | None],
    weight_hh: Any,
    grad_h_n: Any | None,
    mask: Any | None,
    direction: int,
    truncate: int,
) -> tuple[Any, Any]:
    rate, live = slope
    # by_age[a] is the gradient on the current state that has crossed a recurrent connections so far.
    num_steps, batch, hidden = grad_state.shape
    window = truncate + 1
    zeros = xp.zeros((window, batch, hidden), dtype=grad_state.dtype, device=device_of(grad_state))
    by_age = zeros if grad_h_n is None else xp.concat([grad_h_n[None, ...], zeros[1:, ...]])
    per_step: list[Any] = [None] * num_steps
    for t in reversed(steps(num_steps, direction)):
        arrived = xp.concat([by_age[:1, ...] + grad_state[t, ...], by_age[1:, ...]])
        grad_preact_by_age = _through_activation(xp, arrived, rate[t, ...], None if live is None else live[t, ...])
        per_step[t] = xp.sum(grad_preact_by_age, axis=0)
        aged = xp.concat([zeros[:1, ...], (grad_preact_by_age @ weight_hh)[:-1, ...]])
        by_age = aged if mask is None else xp.where(mask[t, ...], aged, by_age)
    return xp.stack(per_step), xp.sum(by_age, axis=0)
