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
    _check_targets(xp, logits, targets, mask)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    log_normaliser = xp.log(xp.sum(xp.exp(shifted), axis=1))
    classes = xp.arange(logits.shape[1], dtype=targets.dtype, device=device_of(targets))
    one_hot = xp.astype(targets[:, None] == classes[None, :], logits.dtype)
    per_row = log_normaliser - xp.sum(shifted * one_hot, axis=1)
    weights = xp.ones_like(per_row) if mask is None else xp.astype(mask, logits.dtype)
    count = xp.maximum(xp.sum(weights), xp.ones_like(xp.sum(weights)))
    loss = xp.sum(per_row * weights) / count
    return loss, (shifted, log_normaliser, one_hot, weights, count)


def _check_targets(xp: Any, logits: Any, targets: Any, mask: Any | None) -> None:
    if len(logits.shape) != 2:
        msg = f"logits must be 2-D (N, C); got shape {tuple(logits.shape)}"
        raise ValueError(msg)
    rows, classes = int(logits.shape[0]), int(logits.shape[1])
    if not xp.isdtype(targets.dtype, "integral"):
        msg = f"targets must hold integer class indices; got dtype {targets.dtype}"
        raise TypeError(msg)
    if tuple(targets.shape) != (rows,):
        msg = f"targets must have shape ({rows},) like logits' rows; got {tuple(targets.shape)}"
        raise ValueError(msg)
    if mask is not None and tuple(mask.shape) != (rows,):
        msg = f"mask must have shape ({rows},); got {tuple(mask.shape)}"
        raise ValueError(msg)
    low, high = (int(xp.min(targets)), int(xp.max(targets))) if rows else (0, 0)
    if low < 0 or high >= classes:
        msg = f"targets must lie in [0, {classes}) (the classes); got values from {low} to {high}"
        raise ValueError(msg)


def softmax_cross_entropy_backward(cache: Any) -> Any:
    """d loss / d logits, (N, C)."""
    shifted, log_normaliser, one_hot, weights, count = cache
    xp = array_namespace(shifted)
    probabilities = xp.exp(shifted - log_normaliser[:, None])
    return (probabilities - one_hot) * (weights / count)[:, None]


def mse(prediction: Any, target: Any) -> tuple[Any, Any]:
    """Mean of (prediction - target)^2 over every element; returns (loss, cache)."""
    xp = array_namespace(prediction)
    if tuple(prediction.shape) != tuple(target.shape):
        expected, got = tuple(prediction.shape), tuple(target.shape)
        msg = f"target must have the prediction's shape {expected} (no broadcasting); got {got}"
        raise ValueError(msg)
    difference = prediction - target
    return xp.mean(difference * difference), difference


def mse_backward(cache: Any) -> Any:
    """d loss / d prediction."""
    difference = cache
    size = 1
    for n in difference.shape:
        size *= int(n)
    return difference * (2.0 / size)
