"""Optimizers with torch's update rules (SGD with momentum/Nesterov, Adam, Adagrad; L2 weight decay), and
clipping by global norm.

Each optimizer maps named parameters and gradients to new parameters (no in-place writes, so any Array-API
namespace works) and keeps its per-parameter state by name, which :meth:`state_arrays` / :meth:`load_state`
expose for checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

# Hyper-parameters and the ranges torch accepts for them.
_AT_LEAST_ZERO = ("lr", "eps", "momentum", "weight_decay", "lr_decay", "initial_accumulator_value")
_IN_ZERO_ONE = ("beta1", "beta2")


def _check_hyper(hyper: dict[str, float | bool]) -> None:
    for name, value in hyper.items():
        if isinstance(value, bool) and name != "nesterov":
            msg = f"{name} must be a number; got {value!r}"
            raise TypeError(msg)
        if name == "nesterov" or name == "dampening":
            continue
        if not isinstance(value, int | float) or not math.isfinite(value):
            msg = f"{name} must be a finite number; got {value!r}"
            raise ValueError(msg) if isinstance(value, int | float) else TypeError(msg)
        if name in _AT_LEAST_ZERO and value < 0:
            msg = f"{name} must be >= 0; got {value!r}"
            raise ValueError(msg)
        if name in _IN_ZERO_ONE and not 0 <= value < 1:
            msg = f"betas must lie in [0, 1); got {name}={value!r}"
            raise ValueError(msg)


class Optimizer:
    kind = "optimizer"

    def __init__(self, **hyper: float | bool) -> None:
        _check_hyper(hyper)
        self.hyper = dict(hyper)
        self.steps = 0
        self.state: dict[str, dict[str, Any]] = {}

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        """New parameters after one update (``params`` and ``grads`` share keys)."""
        missing = sorted(set(params) - set(grads))
        if missing:
            msg = f"grads is missing {missing}; every parameter needs a gradient"
            raise ValueError(msg)
        for name, value in params.items():  # all checked before any state changes
            if tuple(grads[name].shape) != tuple(value.shape):
                expected, got = tuple(value.shape), tuple(grads[name].shape)
                msg = f"grads[{name!r}] must have shape {expected} like the parameter; got {got}"
                raise ValueError(msg)
        self.steps += 1
        return {name: self._update(name, value, grads[name]) for name, value in params.items()}

    def _update(self, name: str, param: Any, grad: Any) -> Any:
        raise NotImplementedError

    def _decayed(self, param: Any, grad: Any) -> Any:
        decay = float(self.hyper.get("weight_decay", 0.0))
        return grad + decay * param if decay else grad

    def state_arrays(self) -> dict[str, Any]:
        """Every state array as ``"{param}.{slot}"`` (for a checkpoint)."""
        return {f"{name}.{slot}": value for name, slots in self.state.items() for slot, value in slots.items()}

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "steps": self.steps, **self.hyper}

    def load_state(self, config: dict[str, Any], arrays: dict[str, Any]) -> None:
        if config.get("kind") != self.kind:
            msg = f"optimizer state is for {config.get('kind')!r}; this optimizer is {self.kind!r}"
            raise ValueError(msg)
        self.steps = int(config["steps"])
        self.state = {}
        for key, value in arrays.items():
            name, slot = key.rsplit(".", 1)
            self.state.setdefault(name, {})[slot] = value


class SGD(Optimizer):
    """torch.optim.SGD: ``g = grad + wd*p``; momentum buffer ``b = m*b + (1-dampening)*g`` (``b = g`` first);
    Nesterov ``g + m*b``; ``p - lr*g``."""

    kind = "sgd"

    def __init__(self, lr: float, momentum: float = 0.0, *, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        if nesterov and (momentum <= 0 or dampening != 0):
            msg = "nesterov needs momentum > 0 and dampening == 0"
            raise ValueError(msg)
        super().__init__(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                         weight_decay=weight_decay)

    def _update(self, name: str, param: Any, grad: Any) -> Any:
        grad = self._decayed(param, grad)
        momentum = float(self.hyper["momentum"])
        if momentum:
            slots = self.state.setdefault(name, {})
            if "momentum" not in slots:
                buffer = grad
            else:
                buffer = momentum * slots["momentum"] + (1.0 - float(self.hyper["dampening"])) * grad
            slots["momentum"] = buffer
            grad = grad + momentum * buffer if self.hyper["nesterov"] else buffer
        return param - float(self.hyper["lr"]) * grad


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient, as torch's Adam; not AdamW)."""

    kind = "adam"

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)

    def _update(self, name: str, param: Any, grad: Any) -> Any:
        xp = array_namespace(param)
        grad = self._decayed(param, grad)
        beta1, beta2 = float(self.hyper["beta1"]), float(self.hyper["beta2"])
        slots = self.state.setdefault(name, {})
        first = slots.get("exp_avg", xp.zeros_like(param))
        second = slots.get("exp_avg_sq", xp.zeros_like(param))
        # torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
        first = first + (grad - first) * (1.0 - beta1)
        second = second * beta2 + (1.0 - beta2) * (grad * grad)
        slots["exp_avg"], slots["exp_avg_sq"] = first, second
        correction1 = 1.0 - beta1**self.steps
        correction2 = 1.0 - beta2**self.steps
        denominator = xp.sqrt(second) / math.sqrt(correction2) + float(self.hyper["eps"])
        return param - (float(self.hyper["lr"]) / correction1) * (first / denominator)


class Adagrad(Optimizer):
    """torch.optim.Adagrad: ``sum += g*g``; ``p - clr * g / (sqrt(sum) + eps)``, ``clr = lr / (1 + (t-1)*lr_decay)``."""

    kind = "adagrad"

    def __init__(self, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0, eps: float = 1e-10,
                 initial_accumulator_value: float = 0.0) -> None:
        super().__init__(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                         initial_accumulator_value=initial_accumulator_value)

    def _update(self, name: str, param: Any, grad: Any) -> Any:
        xp = array_namespace(param)
        grad = self._decayed(param, grad)
        slots = self.state.setdefault(name, {})
        total = slots.get("sum", xp.full_like(param, float(self.hyper["initial_accumulator_value"])))
        total = total + grad * grad
        slots["sum"] = total
        rate = float(self.hyper["lr"]) / (1.0 + (self.steps - 1) * float(self.hyper["lr_decay"]))
        return param - rate * (grad / (xp.sqrt(total) + float(self.hyper["eps"])))


def clip_grad_norm(grads: dict[str, Any], max_norm: float) -> tuple[dict[str, Any], float]:
    """Scale all gradients by ``min(1, max_norm / (total_norm + 1e-6))``, as ``torch.nn.utils.clip_grad_norm_``.

    Parameters
    ----------
    grads : dict of str to array
        Gradients by parameter name, e.g. ``model.grads``.
    max_norm : float
        The largest total L2 norm the gradients may keep.

    Returns
    -------
    clipped : dict of str to array
        The scaled gradients (new arrays; ``grads`` is not changed).
    total_norm : float
        The L2 norm of all gradients together, before scaling.
    """
    if not grads:
        return grads, 0.0
    xp = array_namespace(*grads.values())
    total = math.sqrt(sum(float(xp.sum(g * g)) for g in grads.values()))
    scale = min(1.0, max_norm / (total + 1e-6))
    return {name: g * scale for name, g in grads.items()}, total
