"""What a worker does for one shard of a batch: the loss and parameter gradients of its rows, weighted so that
summing the shards gives the whole batch's; and the node of the tree that sums them.

Weighting. The losses are means over what counts in the whole batch (cross-entropy: the unmasked rows; MSE: every
element). A shard returns its loss and gradients multiplied by its own count; the tree sums them with the counts,
and the sum divided by the total count is the whole batch's mean loss and its gradient, whatever the sizes of the
shards and however the padding falls among them. (The mean of the shards' means would weight a shard of 3
sequences like one of 5.)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

from rnn_xp.training.losses import mse, mse_backward, softmax_cross_entropy, softmax_cross_entropy_backward

LOSSES = ("cross_entropy", "mse")


@dataclass
class Contribution:
    """A shard's (or a subtree's) weighted sums: ``loss_sum = loss * count``, ``grads[name] = grad * count``."""

    loss_sum: float
    count: float
    grads: dict[str, Any]


def shard_step(
    model_blob: bytes,
    params: dict[str, Any],
    inputs: Any,
    targets: Any,
    lengths: Any | None,
    state: Any | None,
    reset: Any | None,
    loss: str,
) -> tuple[Contribution, Any]:
    """Forward and backward of one shard on a fresh replica of the model with ``params``.

    Parameters
    ----------
    model_blob : the model pickled (cloudpickle) once by the client; each call loads its own replica
    params : the model's parameters for this step, names as ``model.parameters()``
    inputs, targets, lengths : the shard's rows (batch axis as the model lays it out)
    state : the shard's carried state (L*D, B_s, H) from its previous chunk, or None (zeros)
    reset : (B_s,) bool, streams whose carried state is zeroed (a new document), or None
    loss : "cross_entropy" or "mse"

    Returns
    -------
    contribution : the weighted loss and gradients of the shard
    h_n : the shard's final state (the state to carry), or None for a model that returns none
    """
    model = pickle.loads(model_blob)
    model.set_parameters(params)
    xp = model.xp
    h0 = state
    if state is not None and reset is not None:
        keep = xp.asarray(~reset, device=_device_of(state))
        h0 = xp.where(keep[None, :, None], state, xp.zeros_like(state))
    result = model(inputs, h0, lengths)
    outputs, h_n = result if isinstance(result, tuple) else (result, None)
    batch_first = bool(model.rnn.batch_first)
    if loss == "cross_entropy":
        classes = outputs.shape[-1]
        rows = 1
        for n in outputs.shape[:-1]:
            rows *= int(n)
        mask = None
        if lengths is not None and outputs.ndim == 3:  # a label per step: padded steps count for nothing
            steps = outputs.shape[1] if batch_first else outputs.shape[0]
            time = xp.arange(steps, device=_device_of(outputs))
            length_row = xp.asarray(lengths, device=_device_of(outputs))
            inside = time[None, :] < length_row[:, None] if batch_first else time[:, None] < length_row[None, :]
            mask = xp.reshape(inside, (rows,))
        value, cache = softmax_cross_entropy(
            xp.reshape(outputs, (rows, classes)), xp.reshape(targets, (rows,)), mask
        )
        grad_outputs = xp.reshape(softmax_cross_entropy_backward(cache), outputs.shape)
        count = float(rows if mask is None else xp.sum(xp.astype(mask, xp.int64)))
    else:
        value, cache = mse(outputs, targets)
        grad_outputs = mse_backward(cache)
        count = 1.0
        for n in outputs.shape:
            count *= int(n)
    model.backward(grad_outputs)
    grads = {name: grad * count for name, grad in model.grads.items()}
    return Contribution(float(value) * count, count, grads), h_n


def contribution(result: tuple[Contribution, Any]) -> Contribution:
    return result[0]


def carried_state(result: tuple[Contribution, Any]) -> Any:
    return result[1]


def add(first: Contribution, second: Contribution) -> Contribution:
    """A node of the reduction tree."""
    grads = {name: first.grads[name] + second.grads[name] for name in first.grads}
    return Contribution(first.loss_sum + second.loss_sum, first.count + second.count, grads)


def _device_of(array: Any) -> Any:
    from array_api_compat import device

    return device(array)
