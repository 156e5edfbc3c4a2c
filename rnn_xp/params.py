"""Parameter names, layout and initialisation, exactly as ``torch.nn.RNN`` has them.

Names: ``weight_ih_l{k}`` (H, in_k), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (H,),
with the suffix ``_reverse`` for the second direction; ``in_0 = input_size`` and ``in_k = D*H`` for k > 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnn_xp._arrays import aligned_empty, namespace_of

_NAME = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")


@dataclass(frozen=True)
class ParamLayout:
    """Sizes of a stacked RNN, as read from (or used to build) its parameters."""

    input_size: int
    hidden_size: int
    num_layers: int
    num_directions: int
    bias: bool

    def names(self) -> list[str]:
        """Parameter names in torch's order (layer, direction, then w_ih, w_hh, b_ih, b_hh)."""
        kinds = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.bias else [])
        return [
            f"{kind}_l{layer}{suffix}"
            for layer in range(self.num_layers)
            for suffix in ("", "_reverse")[: self.num_directions]
            for kind in kinds
        ]

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.hidden_size

    def shape(self, name: str) -> tuple[int, ...]:
        match = _NAME.match(name)
        if match is None:
            msg = f"unknown parameter name {name!r}"
            raise ValueError(msg)
        kind, layer = match.group(1), int(match.group(2))
        hidden = self.hidden_size
        if kind == "weight_ih":
            return (hidden, self.layer_input_size(layer))
        if kind == "weight_hh":
            return (hidden, hidden)
        return (hidden,)


def key(kind: str, layer: int, direction: int) -> str:
    """The torch name of one parameter, e.g. ``key("weight_hh", 1, 1) == "weight_hh_l1_reverse"``."""
    return f"{kind}_l{layer}{'_reverse' if direction else ''}"


def layout_from_params(params: Any, *, argname: str = "params") -> ParamLayout:
    """Read and validate the layout of a torch-named parameter mapping.

    Parameters
    ----------
    params : Mapping[str, array]
        ``weight_ih_l0`` … as ``torch.nn.RNN.state_dict()`` names them; all arrays of one namespace, device and
        real floating dtype.

    Returns
    -------
    ParamLayout

    Raises
    ------
    TypeError
        Not a mapping, arrays of mixed namespaces/devices/dtypes, or a non-floating dtype.
    ValueError
        A missing, extra or mis-shaped entry, or a gap in the layers.
    """
    if not isinstance(params, Mapping):
        msg = f"{argname} must be a mapping of torch-named arrays; got {type(params).__name__}"
        raise TypeError(msg)
    for required in ("weight_ih_l0", "weight_hh_l0"):
        if required not in params:
            msg = f"{argname} is missing {required!r}; got keys {sorted(params)}"
            raise ValueError(msg)
    layers = sorted({int(m.group(2)) for name in params if (m := _NAME.match(str(name)))})
    num_layers = len(layers)
    num_directions = 2 if "weight_ih_l0_reverse" in params else 1
    hidden_shape = _shape_of(params["weight_hh_l0"], f"{argname}['weight_hh_l0']")
    if len(hidden_shape) != 2:
        msg = f"{argname}['weight_hh_l0'] must be 2-D (hidden_size, hidden_size); got shape {hidden_shape}"
        raise ValueError(msg)
    hidden_size = hidden_shape[0]
    input_shape = _shape_of(params["weight_ih_l0"], f"{argname}['weight_ih_l0']")
    if len(input_shape) != 2:
        msg = f"{argname}['weight_ih_l0'] must be 2-D (hidden_size, input_size); got shape {input_shape}"
        raise ValueError(msg)
    layout = ParamLayout(
        input_size=input_shape[1],
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_directions=num_directions,
        bias="bias_ih_l0" in params,
    )
    check_param_set(params, layout, argname=argname)
    return layout


def check_param_set(params: Mapping[str, Any], layout: ParamLayout, *, argname: str = "params") -> None:
    """Check that ``params`` holds exactly ``layout.names()`` with the right shapes, one dtype, one device."""
    expected = layout.names()
    missing = [name for name in expected if name not in params]
    extra = sorted(str(name) for name in params if name not in set(expected))
    if missing:
        msg = f"{argname} is missing {missing} for {_describe(layout)}"
        raise ValueError(msg)
    if extra:
        msg = f"{argname} has unexpected entries {extra} for {_describe(layout)}"
        raise ValueError(msg)
    first = params[expected[0]]
    xp = namespace_of(*[params[name] for name in expected], argname=argname)
    dtype = first.dtype
    if not xp.isdtype(dtype, "real floating"):
        msg = f"{argname}[{expected[0]!r}] must have a real floating dtype (float32 or float64); got {dtype}"
        raise TypeError(msg)
    from array_api_compat import device as device_of

    first_device = device_of(first)
    for name in expected:
        value = params[name]
        shape = _shape_of(value, f"{argname}[{name!r}]")
        if shape != layout.shape(name):
            msg = f"{argname}[{name!r}] must have shape {layout.shape(name)}; got {shape}"
            raise ValueError(msg)
        if value.dtype != dtype:
            msg = f"{argname}[{name!r}] must have dtype {dtype} like {expected[0]!r}; got {value.dtype}"
            raise TypeError(msg)
        if device_of(value) != first_device:
            msg = f"{argname}[{name!r}] is on device {device_of(value)}; expected {first_device}"
            raise ValueError(msg)


def init_params(layout: ParamLayout, *, seed: int | None, dtype: str) -> dict[str, np.ndarray]:
    """torch's init: every parameter U(-1/sqrt(H), 1/sqrt(H)), drawn in torch's order from ``seed``.

    Returns NumPy arrays of ``dtype``. The numbers are float64 draws rounded to ``dtype`` (so CPU and GPU layers,
    float32 and float64, built from one seed start from the same numbers), made in chunks straight into the result:
    the peak memory is the parameters' own bytes plus one chunk, not a float64 copy of each.
    """
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(layout.hidden_size)
    return {name: draw_uniform(rng, layout.shape(name), -bound, bound, dtype) for name in layout.names()}


_CHUNK = 1 << 16  # float64 draws per chunk (512 KiB)


def draw_uniform(rng: np.random.Generator, shape: tuple[int, ...], low: float, high: float, dtype: Any) -> np.ndarray:
    """``rng.uniform(low, high, shape).astype(dtype)``, bit for bit, without the float64 temporary of that size."""
    out = aligned_empty(shape, dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        draws = rng.random(min(_CHUNK, flat.size - start))
        draws *= high - low  # Generator.uniform computes low + (high - low) * u, in this order
        draws += low
        flat[start : start + draws.size] = draws
    return out


def draw_standard_normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``rng.standard_normal(shape).astype(dtype)``, bit for bit, without the float64 temporary of that size."""
    out = aligned_empty(shape, dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        draws = rng.standard_normal(min(_CHUNK, flat.size - start))
        flat[start : start + draws.size] = draws
    return out


def _shape_of(value: Any, argname: str) -> tuple[int, ...]:
    shape = getattr(value, "shape", None)
    if shape is None:
        msg = f"{argname} must be an array; got {type(value).__name__}"
        raise TypeError(msg)
    return tuple(int(n) for n in shape)


def _describe(layout: ParamLayout) -> str:
    return (
        f"num_layers={layout.num_layers}, bidirectional={layout.num_directions == 2}, bias={layout.bias}"
    )
