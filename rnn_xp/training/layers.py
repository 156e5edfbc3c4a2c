"""The output head (``Linear``, the V of the tutorials) and ``Embedding`` for token inputs, with torch's init."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import device as device_of

from rnn_xp._arrays import from_numpy
from rnn_xp._device import namespace_for, parse_device
from rnn_xp._threads import PerThread, PerThreadState
from rnn_xp.params import draw_standard_normal, draw_uniform


class Linear(PerThreadState):
    """``y = x W^T + b`` over the last axis; W (out_features, in_features) and b init U(-1/sqrt(in), 1/sqrt(in)).

    forward: x (..., in_features) -> (..., out_features); backward: grad_y -> grad_x, filling ``grads``.
    """

    grads: dict[str, Any] = PerThread(dict)  # type: ignore[assignment]  # per thread (rnn_xp._threads)
    _input: Any = PerThread(lambda: None)

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, device: str = "cpu",
                 dtype: str = "float32", seed: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(in_features)
        target = parse_device(device)
        self.xp = namespace_for(target)
        weight = draw_uniform(rng, (out_features, in_features), -bound, bound, dtype)
        self.params: dict[str, Any] = {"weight": from_numpy(weight, target, owned=True)}
        if bias:
            bias_values = draw_uniform(rng, (out_features,), -bound, bound, dtype)
            self.params["bias"] = from_numpy(bias_values, target, owned=True)

    def __call__(self, x: Any) -> Any:
        self._input = x
        y = x @ self.params["weight"].T
        return y + self.params["bias"] if "bias" in self.params else y

    def backward(self, grad_y: Any) -> Any:
        xp, x = self.xp, self._input
        rows = 1
        for n in x.shape[:-1]:
            rows *= int(n)
        flat_x = xp.reshape(x, (rows, x.shape[-1]))
        flat_grad = xp.reshape(grad_y, (rows, grad_y.shape[-1]))
        self.grads = {"weight": flat_grad.T @ flat_x}
        if "bias" in self.params:
            self.grads["bias"] = xp.sum(flat_grad, axis=0)
        return grad_y @ self.params["weight"]


class Embedding(PerThreadState):
    """Rows of a (num_embeddings, dim) table, init N(0, 1) as torch; tokens (...) int -> (..., dim).

    backward accumulates the gradient of repeated tokens with a one-hot matmul (the Array API has no scatter-add).
    """

    grads: dict[str, Any] = PerThread(dict)  # type: ignore[assignment]  # per thread (rnn_xp._threads)
    _tokens: Any = PerThread(lambda: None)

    def __init__(self, num_embeddings: int, dim: int, *, device: str = "cpu", dtype: str = "float32",
                 seed: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        target = parse_device(device)
        self.xp = namespace_for(target)
        self.params: dict[str, Any] = {
            "weight": from_numpy(draw_standard_normal(rng, (num_embeddings, dim), dtype), target, owned=True)
        }

    def __call__(self, tokens: Any) -> Any:
        xp = self.xp
        rows = int(self.params["weight"].shape[0])
        if not xp.isdtype(tokens.dtype, "integral"):
            msg = f"tokens must hold integer indices; got dtype {tokens.dtype}"
            raise TypeError(msg)
        low, high = (int(xp.min(tokens)), int(xp.max(tokens))) if tokens.size else (0, 0)
        if low < 0 or high >= rows:
            msg = f"tokens must lie in [0, {rows}) (num_embeddings); got values from {low} to {high}"
            raise ValueError(msg)
        self._tokens = tokens
        flat = xp.reshape(tokens, (-1,))
        rows = xp.take(self.params["weight"], flat, axis=0)
        return xp.reshape(rows, (*tokens.shape, self.params["weight"].shape[1]))

    def backward(self, grad: Any) -> None:
        xp = self.xp
        weight = self.params["weight"]
        flat = xp.reshape(self._tokens, (-1,))
        vocabulary = xp.arange(weight.shape[0], dtype=flat.dtype, device=device_of(flat))
        one_hot = xp.astype(flat[:, None] == vocabulary[None, :], weight.dtype)
        self.grads = {"weight": one_hot.T @ xp.reshape(grad, (flat.shape[0], weight.shape[1]))}
