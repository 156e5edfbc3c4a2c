"""Losses with their gradients: softmax cross-entropy (with a mask for padded positions) and mean squared error."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace
from array_api_compat import device as device_of


def softmax_cross_entropy(logits: Any, targets: Any, mask: Any | None = None) -> tuple[Any, Any]:
    """Mean over unmasked rows of -log softmax(logits)[target].

    Parameters
    ----------
    logits : (N, C) float
    targets : (N,) int in [0, C)
    mask : (N,) bool, optional — False rows (padding) count for nothing

    Returns
    -------
    loss : 0-d array (nats)
    cache : for :func:`softmax_cross_entropy_backward`
    """
    xp = array_namespace(logits)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    log_normaliser = xp.log(xp.sum(xp.exp(shifted), axis=1))
    classes = xp.arange(logits.shape[1], dtype=targets.dtype, device=device_of(targets))
    one_hot = xp.astype(targets[:, None] == classes[None, :], logits.dtype)
    per_row = log_normaliser - xp.sum(shifted * one_hot, axis=1)
    weights = xp.ones_like(per_row) if mask is None else xp.astype(mask, logits.dtype)
    count = xp.maximum(xp.sum(weights), xp.ones_like(xp.sum(weights)))
    loss = xp.sum(per_row * weights) / count
    return loss, (shifted, log_normaliser, one_hot, weights, count)


def softmax_cross_entropy_backward(cache: Any) -> Any:
    """d loss / d logits, (N, C)."""
    shifted, log_normaliser, one_hot, weights, count = cache
    xp = array_namespace(shifted)
    probabilities = xp.exp(shifted - log_normaliser[:, None])
    return (probabilities - one_hot) * (weights / count)[:, None]


def mse(prediction: Any, target: Any) -> tuple[Any, Any]:
    """Mean of (prediction - target)^2 over every element; returns (loss, cache)."""
    xp = array_namespace(prediction)
    difference = prediction - target
    return xp.mean(difference * difference), difference


def mse_backward(cache: Any) -> Any:
    """d loss / d prediction."""
    difference = cache
    size = 1
    for n in difference.shape:
        size *= int(n)
    return difference * (2.0 / size)
