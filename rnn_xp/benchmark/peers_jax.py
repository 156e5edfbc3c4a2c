"""JAX as a CPU peer: ``jax.jit`` of a ``lax.scan`` over time for the forward, ``jax.jit(jax.grad)`` for training.

The step is torch's: ``h = tanh(x_t W_ih^T + b_ih + h W_hh^T + b_hh)``, with the input projection of a layer done as
one matmul over all steps before the scan (as rnn_xp, torch and ONNX Runtime do). With lengths, a padded step keeps
the previous state (``where``) and its output is zero; the reverse direction scans from T-1 down, so each sample's
reverse pass starts at its own end. ``train_step`` differentiates ``sum(out * grad_out)`` with respect to the input
and every parameter (the same work as ``out.backward(grad_out)`` in torch).

Threads: XLA's CPU backend uses every core by default, like the other peers; nothing is pinned.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from rnn_xp.benchmark.cases import Case
from rnn_xp.benchmark.peers import Peer


class Jax(Peer):
    """A jitted ``lax.scan`` RNN on JAX's CPU backend."""

    name = "jax"

    def unavailable(self, case: Case) -> str | None:
        if importlib.util.find_spec("jax") is None:
            return "jax is not installed (pip install jax)"
        return None

    def setup(self, case: Case, weights: dict[str, np.ndarray], x: np.ndarray, grad_out: np.ndarray) -> None:
        import jax

        if x.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)
        cpu = jax.devices("cpu")[0]
        self.params = {k: jax.device_put(np.ascontiguousarray(v), cpu) for k, v in weights.items()}
        self.x = jax.device_put(x, cpu)
        self.grad_out = jax.device_put(grad_out, cpu)
        lengths = case.lengths()
        self.lengths = None if lengths is None else jax.device_put(np.asarray(lengths, dtype=np.int32), cpu)
        layers, directions = case.num_layers, case.directions

        def run(params: dict[str, Any], x: Any) -> Any:
            return forward(params, x, self.lengths, layers, directions)

        def loss(params: dict[str, Any], x: Any) -> Any:
            return (run(params, x) * self.grad_out).sum()

        self._forward = jax.jit(run)
        self._grad = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def forward(self) -> None:
        self._out = self._forward(self.params, self.x).block_until_ready()

    def train_step(self) -> None:
        import jax

        self.grads = jax.block_until_ready(self._grad(self.params, self.x))

    def output(self) -> np.ndarray:
        self.forward()
        return np.asarray(self._out)


def forward(params: dict[str, Any], x: Any, lengths: Any | None, layers: int, directions: int) -> Any:
    """out (T, B, D*H) of a stack of tanh layers (h0 = 0)."""
    import jax.numpy as jnp
    from jax import lax

    num_steps, batch = x.shape[0], x.shape[1]
    inside = None if lengths is None else (jnp.arange(num_steps)[:, None] < lengths[None, :])[:, :, None]
    layer_input = x
    for layer in range(layers):
        outputs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            weight_hh = params["weight_hh" + suffix]
            projected = layer_input @ params["weight_ih" + suffix].T + (
                params["bias_ih" + suffix] + params["bias_hh" + suffix]
            )
            h0 = jnp.zeros((batch, weight_hh.shape[0]), dtype=x.dtype)

            def step(h: Any, inputs: Any, weight_hh: Any = weight_hh) -> tuple[Any, Any]:
                if inside is None:
                    h = jnp.tanh(inputs + h @ weight_hh.T)
                    return h, h
                projection, keep = inputs
                h = jnp.where(keep, jnp.tanh(projection + h @ weight_hh.T), h)
                return h, jnp.where(keep, h, 0)

            xs = projected if inside is None else (projected, inside)
            _, states = lax.scan(step, h0, xs, reverse=direction == 1)
            outputs.append(states)
        layer_input = outputs[0] if directions == 1 else jnp.concatenate(outputs, axis=-1)
    return layer_input
