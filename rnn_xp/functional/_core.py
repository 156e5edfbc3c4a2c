"""Forward and backward through a stack of layers and directions, on already-validated arrays.

Shapes here are always time-major and batched: x (T, B, I), h0 (L*D, B, H), out (T, B, D*H). The input
projection of a layer is one matmul over all T*B rows; the time loop is the one the plan picked at the public entry
(:func:`rnn_xp._plan.choose_loop`, kept in the cache; the entry passes the backward's in); the weight gradients are
matmuls over all T*B rows after the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import device as device_of

from rnn_xp._arrays import private_copy
from rnn_xp._layout import CallerLayout
from rnn_xp.loops import LayerBackward, LayerForward, TimeLoop, inside_lengths
from rnn_xp.params import ParamLayout, key


@dataclass
class ForwardCache:
    """What backward needs from one forward pass (time-major, batched)."""

    xp: Any
    loop: TimeLoop
    layout: ParamLayout
    params: dict[str, Any]
    nonlinearity: str
    layer_inputs: list[Any]
    states: list[list[Any]]
    h0: Any | None
    lengths: Any | None
    dropout_masks: list[Any]
    caller: CallerLayout  # how the caller lays out x/out and h0/h_n; backward maps its gradients through it
    out_shape: tuple[int, ...]  # caller layout
    h_n_shape: tuple[int, ...]  # caller layout


def forward(
    xp: Any,
    loop: TimeLoop,
    x: Any,
    params: dict[str, Any],
    layout: ParamLayout,
    h0: Any | None,
    lengths: Any | None,
    nonlinearity: str,
    dropout_masks: list[Any],
    caller: CallerLayout,
) -> tuple[Any, Any, ForwardCache]:
    """Run every layer; returns out (T, B, D*H), h_n (L*D, B, H) and the cache for :func:`backward`.

    ``caller`` is only recorded (with the caller-layout shapes of out and h_n) for the backward's checks."""
    num_steps, batch = x.shape[0], x.shape[1]
    hidden, directions = layout.hidden_size, layout.num_directions
    # Outputs past a sequence's end are zero: (T, B, 1), True where step t is inside sample b's length.
    inside = None if lengths is None else inside_lengths(xp, lengths, num_steps)[:, :, None]
    # The backward differentiates the forward as it ran, so the cache owns its x and h0: an in-place edit of the
    # caller's arrays after the call (x *= 2, h0 += 1) cannot reach it. With lengths, x's padding is also zeroed
    # (selected, so an inf or NaN there reaches neither the projection nor the weight gradients); every later layer's
    # input is a masked output, zero on padding too. Cost: a pass over x, and one over out where it is copied
    # (0-15% of a float32 forward at the CPU benchmark sizes, most at large batch).
    layer_input = private_copy(xp, x) if inside is None else xp.where(inside, x, xp.zeros_like(x))
    h0 = None if h0 is None else private_copy(xp, h0)
    layer_inputs: list[Any] = []
    all_states: list[list[Any]] = []
    h_n: list[Any] = []
    for layer in range(layout.num_layers):
        flat_input = xp.reshape(layer_input, (num_steps * batch, layer_input.shape[2]))
        states = loop.forward_layer(xp, LayerForward(
            projections=[_project(xp, flat_input, params[key("weight_ih", layer, d)], (num_steps, batch, hidden))
                         for d in range(directions)],
            biases=[_summed_bias(params, layout, layer, d) for d in range(directions)],
            weights_hh=[params[key("weight_hh", layer, d)] for d in range(directions)],
            h0s=[_initial_state(xp, h0, layer * directions + d, batch, hidden, x) for d in range(directions)],
            lengths=lengths,
            nonlinearity=nonlinearity,
        ))
        outputs = states if inside is None else [xp.where(inside, s, xp.zeros_like(s)) for s in states]
        h_n.extend(s[num_steps - 1 if d == 0 else 0, ...] for d, s in enumerate(states))
        layer_inputs.append(layer_input)
        all_states.append(states)
        layer_output = outputs[0] if directions == 1 else xp.concat(outputs, axis=-1)
        if layer < layout.num_layers - 1 and dropout_masks:
            layer_output = layer_output * dropout_masks[layer]
        layer_input = layer_output
    if layer_input is all_states[-1][0]:
        # One direction, no lengths: the output is the state buffer the backward reads; the caller gets a copy, so that
        # editing it in place (out *= 2) cannot change the backward.
        layer_input = private_copy(xp, layer_input)
    cache = ForwardCache(
        xp=xp,
        loop=loop,
        layout=layout,
        params=params,
        nonlinearity=nonlinearity,
        layer_inputs=layer_inputs,
        states=all_states,
        h0=h0,
        lengths=lengths,
        dropout_masks=dropout_masks,
        caller=caller,
        out_shape=caller.sequence_shape(num_steps, batch, directions * hidden),
        h_n_shape=caller.state_shape(layout.num_layers * directions, batch, hidden),
    )
    return layer_input, xp.stack(h_n), cache


def backward(
    cache: ForwardCache, loop: TimeLoop, grad_out: Any | None, grad_h_n: Any | None, truncate: int | None,
    input_grad: bool = True,
) -> tuple[Any, Any, dict[str, Any]]:
    """Back-propagate through time with ``loop`` (the forward's, or one that truncates); returns grad_x (T, B, I), or
    None when not ``input_grad``, grad_h0 (L*D, B, H) and parameter gradients. ``truncate`` is None or smaller than
    T."""
    xp, layout = cache.xp, cache.layout
    hidden, directions = layout.hidden_size, layout.num_directions
    num_steps, batch = cache.layer_inputs[0].shape[0], cache.layer_inputs[0].shape[1]
    grads: dict[str, Any] = {}
    grad_h0: list[Any] = [None] * (layout.num_layers * directions)
    grad_output = grad_out
    grad_input = None
    for layer in reversed(range(layout.num_layers)):
        if grad_output is None:
            grad_output = xp.zeros(
                (num_steps, batch, directions * hidden),
                dtype=cache.layer_inputs[0].dtype,
                device=device_of(cache.layer_inputs[0]),
            )
        grad_preacts, grad_h0s = loop.backward_layer(xp, LayerBackward(
            grad_states=[grad_output[..., d * hidden : (d + 1) * hidden] for d in range(directions)],
            states=cache.states[layer],
            weights_hh=[cache.params[key("weight_hh", layer, d)] for d in range(directions)],
            grad_h_ns=[None if grad_h_n is None else grad_h_n[layer * directions + d, ...] for d in range(directions)],
            lengths=cache.lengths,
            nonlinearity=cache.nonlinearity,
            truncate=truncate,
        ))
        layer_input = cache.layer_inputs[layer]  # zero on padding (see forward)
        flat_input = xp.reshape(layer_input, (num_steps * batch, layer_input.shape[2]))
        grad_input = None
        for d, grad_preact in enumerate(grad_preacts):
            grad_h0[layer * directions + d] = grad_h0s[d]
            flat_grad = xp.reshape(grad_preact, (num_steps * batch, hidden))
            grads[key("weight_ih", layer, d)] = flat_grad.T @ flat_input
            grads[key("weight_hh", layer, d)] = _recurrent_weight_grad(
                xp, grad_preact, cache.states[layer][d], cache.h0, layer * directions + d, d
            )
            if layout.bias:
                grad_bias = xp.sum(flat_grad, axis=0)
                grads[key("bias_ih", layer, d)] = grad_bias
                grads[key("bias_hh", layer, d)] = private_copy(xp, grad_bias)
            if layer == 0 and not input_grad:
                continue
            contribution = flat_grad @ cache.params[key("weight_ih", layer, d)]
            grad_input = contribution if grad_input is None else grad_input + contribution
        if grad_input is not None:
            grad_input = xp.reshape(grad_input, layer_input.shape)
        if layer > 0:
            grad_output = grad_input * cache.dropout_masks[layer - 1] if cache.dropout_masks else grad_input
    ordered = {name: grads[name] for name in layout.names()}
    return grad_input, xp.stack(grad_h0), ordered


def _project(xp: Any, flat_input: Any, weight_ih: Any, shape: tuple[int, int, int]) -> Any:
    """The input projection: flat_input (T*B, I) @ W_ih^T -> (T, B, H), one GEMM."""
    return xp.reshape(flat_input @ weight_ih.T, shape)


def _summed_bias(params: dict[str, Any], layout: ParamLayout, layer: int, direction: int) -> Any | None:
    if not layout.bias:
        return None
    return params[key("bias_ih", layer, direction)] + params[key("bias_hh", layer, direction)]


def _initial_state(xp: Any, h0: Any | None, index: int, batch: int, hidden: int, like: Any) -> Any:
    if h0 is not None:
        return h0[index, ...]
    return xp.zeros((batch, hidden), dtype=like.dtype, device=device_of(like))


def _recurrent_weight_grad(
    xp: Any, grad_preact: Any, states: Any, h0: Any | None, h0_index: int, direction: int
) -> Any:
    """sum_t grad_preact[t]^T @ (state before step t), as two matmuls over the T*B rows.

    The state before step t is states[t-1] (forward) or states[t+1] (reverse), and h0 at the first step.
    """
    num_steps, batch, hidden = grad_preact.shape
    if direction == 0:
        later, earlier, first = grad_preact[1:, ...], states[:-1, ...], grad_preact[0, ...]
    else:
        later, earlier, first = grad_preact[:-1, ...], states[1:, ...], grad_preact[num_steps - 1, ...]
    rows = (num_steps - 1) * batch
    grad = xp.reshape(later, (rows, hidden)).T @ xp.reshape(earlier, (rows, hidden))
    if h0 is not None:
        grad = grad + first.T @ h0[h0_index, ...]
    return grad
