"""Keras ``SimpleRNN`` weights and initialisers in torch's parameter names.

Keras computes ``h_t = act(x_t K + h_{t-1} R + b)`` with ``get_weights() == [K (I, H), R (H, H), b (H,)]``; torch
(and rnn_xp) compute ``act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``. So ``W_ih = K^T``, ``W_hh = R^T``,
``b_ih = b``, ``b_hh = 0`` on the way in, and ``b = b_ih + b_hh`` on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnn_xp._arrays import to_numpy

KERAS_NAMES = ("kernel", "recurrent_kernel", "bias")


def keras_init(input_dim: int, units: int, *, seed: int | None, dtype: str) -> dict[str, np.ndarray]:
    """Keras's default initialisers as torch-named host arrays: glorot-uniform kernel (U(-l, l),
    l = sqrt(6 / (input_dim + units))), orthogonal recurrent kernel (gain 1) and zero biases.

    Returns
    -------
    dict with ``weight_ih_l0`` (units, input_dim), ``weight_hh_l0`` (units, units), ``bias_ih_l0`` and
    ``bias_hh_l0`` (units,), all of ``dtype``.
    """
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6.0 / (input_dim + units))
    kernel = rng.uniform(-limit, limit, (input_dim, units))
    q, r = np.linalg.qr(rng.standard_normal((units, units)))
    recurrent = q * np.sign(np.diag(r))  # the sign fix makes Q uniformly (Haar) distributed
    zeros = np.zeros(units)
    return {name: np.ascontiguousarray(value.astype(dtype)) for name, value in (
        ("weight_ih_l0", kernel.T), ("weight_hh_l0", recurrent.T), ("bias_ih_l0", zeros), ("bias_hh_l0", zeros)
    )}


def from_keras(weights: Sequence[Any], input_dim: int, units: int, *, dtype: str) -> dict[str, np.ndarray]:
    """``keras.layers.SimpleRNN.get_weights()`` ([kernel (I, H), recurrent_kernel (H, H), bias (H,)]) as torch-named
    host arrays.

    Raises
    ------
    TypeError
        Not a list/tuple of arrays, or arrays whose dtype is not ``dtype`` (nothing is cast silently).
    ValueError
        Not three arrays (a layer built with ``use_bias=False`` has two: append ``np.zeros(units)``), or a
        mis-shaped one.
    """
    if not isinstance(weights, list | tuple):
        msg = (
            "weights must be a list [kernel, recurrent_kernel, bias] as get_weights() returns; "
            f"got {type(weights).__name__}"
        )
        raise TypeError(msg)
    if len(weights) != 3:
        msg = (
            f"weights must hold 3 arrays [kernel ({input_dim}, {units}), recurrent_kernel ({units}, {units}), "
            f"bias ({units},)]; got {len(weights)} (for use_bias=False, append np.zeros({units}))"
        )
        raise ValueError(msg)
    expected = ((input_dim, units), (units, units), (units,))
    host = []
    for index, (name, value, shape) in enumerate(zip(KERAS_NAMES, weights, expected, strict=True)):
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            msg = f"weights[{index}] ({name}) must be an array; got {type(value).__name__}"
            raise TypeError(msg)
        array = to_numpy(value)
        if tuple(array.shape) != shape:
            msg = f"weights[{index}] ({name}) must have shape {shape}; got {tuple(array.shape)}"
            raise ValueError(msg)
        if array.dtype.name != dtype:
            msg = (
                f"weights[{index}] ({name}) must have dtype {dtype} (the layer's dtype); got {array.dtype}. "
                "Nothing is cast silently: convert it, or build the layer with the matching dtype"
            )
            raise TypeError(msg)
        host.append(array)
    kernel, recurrent, bias = host
    return {
        "weight_ih_l0": np.ascontiguousarray(kernel.T),
        "weight_hh_l0": np.ascontiguousarray(recurrent.T),
        "bias_ih_l0": np.array(bias, copy=True),
        "bias_hh_l0": np.zeros_like(bias),
    }


def to_keras(params: dict[str, Any]) -> list[np.ndarray]:
    """Torch-named parameters of a one-layer RNN as ``[kernel (I, H), recurrent_kernel (H, H), bias (H,)]`` host
    arrays, for ``keras.layers.SimpleRNN.set_weights``; the two biases are summed into Keras's one."""
    weight_ih, weight_hh = to_numpy(params["weight_ih_l0"]), to_numpy(params["weight_hh_l0"])
    if "bias_ih_l0" in params:
        bias = to_numpy(params["bias_ih_l0"]) + to_numpy(params["bias_hh_l0"])
    else:
        bias = np.zeros(weight_hh.shape[0], dtype=weight_hh.dtype)
    return [np.ascontiguousarray(weight_ih.T), np.ascontiguousarray(weight_hh.T), np.asarray(bias)]
