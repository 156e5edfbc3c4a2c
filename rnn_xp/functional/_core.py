"""Forward and backward through a stack of layers and directions, on already-validated arrays.

Shapes here are always time-major and batched: x (T, B, I), h0 (L*D, B, H), out (T, B, D*H). The input
projection of a layer is one matmul over all T*B rows; the time loop is the one the plan picked at the public entry
(:func:`rnn_xp._plan.choose_loop`, kept in the cache; the entry passes the backward's in); the weight gradients are
matmuls over all T*B rows after the loop.

A loop with the optional hooks of :class:`rnn_xp.loops.TimeLoop` (the CUDA loop) fills the layer's output, h_n and
grad_h0 itself, takes both biases and a missing h0 or gradient as they are, and returns the state before each step,
so that a forward here issues no operation besides the copy of x, the projections and the loop (an out or h_n
assembled from the states, a summed bias, zeros for h0 are each an operation), and the weight gradient of W_hh is
one matmul whether or not there is an h0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import device as device_of

from rnn_xp._arrays import private_copy
from rnn_xp._layout import CallerLayout
from rnn_xp.loops import (
    LayerBackward,
    LayerBackwardInto,
    LayerForward,
    LayerForwardInto,
    TimeLoop,
    step_mask,
)
from rnn_xp.params import ParamLayout, key

# Weight gradients at large T*B, off (None) until a GPU run shows that cuBLAS leaves most of the GPU idle on the tall,
# narrow products over T*B rows (the suspect: at T=1024, B=256, H=128, bench/results/nvidia-h100-80gb-hbm3-cuda.md):
# the rows per chunk of a split-K, each weight gradient then one batched matmul over the chunks and a sum of the
# partial products (rows past the last whole chunk: one more matmul), and the bias gradient summed by a loop with
# the hooks from the values its kernels compute anyway (else as usual). bench/gpu_probe.py sets it in its process.
SPLIT_K_ROWS: int | None = None


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
    # From a loop with forward_layer_into: per layer and direction, the state before each step (T, B, H); h0 is then
    # None (the loop copied it there).
    previous: list[list[Any]] | None = None


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
    inside = step_mask(xp, lengths, num_steps)
    # The backward differentiates the forward as it ran, so the cache owns its x and h0: an in-place edit of the
    # caller's arrays after the call (x *= 2, h0 += 1) cannot reach it. With lengths, x's padding is also zeroed
    # (selected, so an inf or NaN there reaches neither the projection nor the weight gradients); every later layer's
    # input is a masked output, zero on padding too. Cost: a pass over x, and one over out where it is copied
    # (0-15% of a float32 forward at the CPU benchmark sizes, most at large batch).
    layer_input = private_copy(xp, x) if inside is None else xp.where(inside, x, xp.zeros_like(x))
    into = getattr(loop, "forward_layer_into", None)
    if into is None:
        h0 = None if h0 is None else private_copy(xp, h0)
        h_n: list[Any] | Any = []
    else:  # the loop copies h0 into the states it keeps, and fills h_n
        h_n = xp.empty((layout.num_layers * directions, batch, hidden), dtype=x.dtype, device=device_of(x))
    layer_inputs: list[Any] = []
    all_states: list[list[Any]] = []
    all_previous: list[list[Any]] = []
    for layer in range(layout.num_layers):
        flat_input = xp.reshape(layer_input, (num_steps * batch, layer_input.shape[2]))
        projections = [_project(xp, flat_input, params[key("weight_ih", layer, d)], (num_steps, batch, hidden))
                       for d in range(directions)]
        weights_hh = [params[key("weight_hh", layer, d)] for d in range(directions)]
        if into is not None:
            layer_output = xp.empty((num_steps, batch, directions * hidden), dtype=x.dtype, device=device_of(x))
            states, previous = into(xp, LayerForwardInto(
                projections=projections,
                biases_ih=[params.get(key("bias_ih", layer, d)) for d in range(directions)],
                biases_hh=[params.get(key("bias_hh", layer, d)) for d in range(directions)],
                weights_hh=weights_hh,
                h0s=[None if h0 is None else h0[layer * directions + d, ...] for d in range(directions)],
                lengths=lengths,
                nonlinearity=nonlinearity,
                out=layer_output,
                h_n=h_n,
                first=layer * directions,
            ))
            all_previous.append(previous)
        else:
            states = loop.forward_layer(xp, LayerForward(
                projections=projections,
                biases=[_summed_bias(params, layout, layer, d) for d in range(directions)],
                weights_hh=weights_hh,
                h0s=[_initial_state(xp, h0, layer * directions + d, batch, hidden, x) for d in range(directions)],
                lengths=lengths,
                nonlinearity=nonlinearity,
            ))
            outputs = states if inside is None else [xp.where(inside, s, xp.zeros_like(s)) for s in states]
            h_n.extend(s[num_steps - 1 if d == 0 else 0, ...] for d, s in enumerate(states))
            layer_output = outputs[0] if directions == 1 else xp.concat(outputs, axis=-1)
        layer_inputs.append(layer_input)
        all_states.append(states)
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
        previous=all_previous if into is not None else None,
    )
    return layer_input, (h_n if into is not None else xp.stack(h_n)), cache


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
    like = cache.layer_inputs[0]
    split = SPLIT_K_ROWS
    into = getattr(loop, "backward_layer_into", None) if truncate is None else None
    grad_h0: list[Any] | Any = [None] * (layout.num_layers * directions)
    if into is not None:
        grad_h0 = xp.empty((layout.num_layers * directions, batch, hidden), dtype=like.dtype, device=device_of(like))
    grad_output = grad_out
    grad_input = None
    for layer in reversed(range(layout.num_layers)):
        weights_hh = [cache.params[key("weight_hh", layer, d)] for d in range(directions)]
        grad_h_ns = [None if grad_h_n is None else grad_h_n[layer * directions + d, ...] for d in range(directions)]
        grad_bias = None
        if into is not None:
            if split is not None and layout.bias:
                grad_bias = xp.empty((directions, hidden), dtype=like.dtype, device=device_of(like))
            grad_preacts = into(xp, LayerBackwardInto(
                grad_output=grad_output, states=cache.states[layer], weights_hh=weights_hh, grad_h_ns=grad_h_ns,
                lengths=cache.lengths, nonlinearity=cache.nonlinearity, grad_h0=grad_h0, first=layer * directions,
                grad_bias=grad_bias,
            ))
        else:
            if grad_output is None:
                grad_output = xp.zeros((num_steps, batch, directions * hidden), dtype=like.dtype,
                                       device=device_of(like))
            grad_preacts, grad_h0s = loop.backward_layer(xp, LayerBackward(
                grad_states=[grad_output[..., d * hidden : (d + 1) * hidden] for d in range(directions)],
                states=cache.states[layer],
                weights_hh=weights_hh,
                grad_h_ns=grad_h_ns,
                lengths=cache.lengths,
                nonlinearity=cache.nonlinearity,
                truncate=truncate,
            ))
            for d in range(directions):
                grad_h0[layer * directions + d] = grad_h0s[d]
        layer_input = cache.layer_inputs[layer]  # zero on padding (see forward)
        flat_input = xp.reshape(layer_input, (num_steps * batch, layer_input.shape[2]))
        grad_input = None
        for d, grad_preact in enumerate(grad_preacts):
            flat_grad = xp.reshape(grad_preact, (num_steps * batch, hidden))
            grads[key("weight_ih", layer, d)] = _weight_gradient(xp, flat_grad, flat_input, split)
            if cache.previous is not None:
                grads[key("weight_hh", layer, d)] = _weight_gradient(
                    xp, flat_grad, xp.reshape(cache.previous[layer][d], (num_steps * batch, hidden)), split)
            else:
                grads[key("weight_hh", layer, d)] = _recurrent_weight_grad(
                    xp, grad_preact, cache.states[layer][d], cache.h0, layer * directions + d, d, split
                )
            if layout.bias:
                bias = grad_bias[d, ...] if grad_bias is not None else xp.sum(flat_grad, axis=0)
                grads[key("bias_ih", layer, d)] = bias
                grads[key("bias_hh", layer, d)] = private_copy(xp, bias)
            if layer == 0 and not input_grad:
                continue
            contribution = flat_grad @ cache.params[key("weight_ih", layer, d)]
            grad_input = contribution if grad_input is None else grad_input + contribution
        if grad_input is not None:
            grad_input = xp.reshape(grad_input, layer_input.shape)
        if layer > 0:
            grad_output = grad_input * cache.dropout_masks[layer - 1] if cache.dropout_masks else grad_input
    ordered = {name: grads[name] for name in layout.names()}
    return grad_input, (grad_h0 if into is not None else xp.stack(grad_h0)), ordered


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


def _weight_gradient(xp: Any, grad_rows: Any, input_rows: Any, split: int | None) -> Any:
    """grad_rows^T @ input_rows over R rows, (R, H) and (R, K) -> (H, K): one matmul, or with ``split`` (see
    :data:`SPLIT_K_ROWS`) and at least two chunks, a batched matmul over chunks of ``split`` rows and a sum of the
    partial products (and one matmul over the rows past the last whole chunk)."""
    rows = grad_rows.shape[0]
    if split is None or rows < 2 * split:
        return grad_rows.T @ input_rows
    chunks = rows // split
    whole = chunks * split
    grad_chunks = xp.reshape(grad_rows[:whole, ...], (chunks, split, grad_rows.shape[1]))
    input_chunks = xp.reshape(input_rows[:whole, ...], (chunks, split, input_rows.shape[1]))
    total = xp.sum(xp.matmul(xp.permute_dims(grad_chunks, (0, 2, 1)), input_chunks), axis=0)
    if whole < rows:
        total = total + grad_rows[whole:, ...].T @ input_rows[whole:, ...]
    return total


def _recurrent_weight_grad(
    xp: Any, grad_preact: Any, states: Any, h0: Any | None, h0_index: int, direction: int, split: int | None = None
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
    grad = _weight_gradient(xp, xp.reshape(later, (rows, hidden)), xp.reshape(earlier, (rows, hidden)), split)
    if h0 is not None:
        grad = grad + first.T @ h0[h0_index, ...]
    return grad
