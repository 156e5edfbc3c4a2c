"""Shared test helpers: array conversion, ``assert_close``, random parameters, and the torch-parity case grid.

Test modules import from here (and ``references.py``), never from each other; ``conftest.py`` holds only fixtures and
hooks.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from references import torch_rnn

from rnn_xp.functional import rnn_backward, rnn_forward


def gpu_available() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:  # no CuPy, no driver or no device: all mean "no GPU here"
        return False


HAVE_GPU = gpu_available()


def to_numpy(array: Any) -> np.ndarray:
    from rnn_xp._arrays import to_numpy as convert

    return np.asarray(convert(array))


def from_numpy(xp: Any, host: np.ndarray) -> Any:
    """``host`` as an array of ``xp`` (on its default device)."""
    return xp.asarray(np.ascontiguousarray(host))


def assert_close(
    actual: Any, desired: Any, *, xp: Any | None = None, rtol: float | None = None, dtype: Any | None = None
) -> None:
    """``actual`` is close to ``desired`` (normwise relative) with the same shape; with ``xp``, ``actual`` is also an
    array of that namespace on its default device; with ``dtype``, ``actual`` has that dtype (references are often
    float64 while the result is float32, so the dtype is checked only when asked for).

    ``max|a - d| <= rtol * max(1, max|d|)``; rtol defaults to 100 eps of ``actual``'s dtype.
    """
    from array_api_compat import array_namespace, device

    if xp is not None:
        assert array_namespace(actual) is array_namespace(xp.asarray(0.0)), type(actual)
        assert str(device(actual)) == str(device(xp.asarray(0.0))), (device(actual), device(xp.asarray(0.0)))
    if dtype is not None:
        assert actual.dtype == dtype, (actual.dtype, dtype)
    a, d = to_numpy(actual), to_numpy(desired)
    assert a.shape == d.shape, (a.shape, d.shape)
    if rtol is None:
        rtol = 100 * float(np.finfo(a.dtype).eps)
    scale = max(1.0, float(np.max(np.abs(d)))) if d.size else 1.0
    error = float(np.max(np.abs(a - d))) if d.size else 0.0
    assert error <= rtol * scale, f"max abs error {error:.3e} > {rtol:.1e} * {scale:.3g}"


def random_params(
    rng: np.random.Generator,
    *,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
    bias: bool = True,
    dtype: str = "float64",
) -> dict[str, np.ndarray]:
    from rnn_xp.params import ParamLayout, init_params

    layout = ParamLayout(input_size, hidden_size, num_layers, 2 if bidirectional else 1, bias)
    return init_params(layout, seed=int(rng.integers(2**31)), dtype=dtype)


PARITY_RTOL = 1e-10

GRID = [
    dict(
        num_layers=layers,
        bidirectional=bidirectional,
        nonlinearity=nonlinearity,
        bias=bias,
        batch_first=batch_first,
        with_h0=with_h0,
        with_lengths=with_lengths,
        unbatched=unbatched,
    )
    for layers, bidirectional, nonlinearity, bias, batch_first, with_h0, with_lengths, unbatched in itertools.product(
        (1, 2, 3), (False, True), ("tanh", "relu"), (True, False), (False, True), (False, True), (False, True),
        (False, True),
    )
    if not (unbatched and (with_lengths or batch_first))
]


def case_id(case: dict[str, Any]) -> str:
    parts = [f"L{case['num_layers']}", "bi" if case["bidirectional"] else "uni", case["nonlinearity"]]
    parts += [name for name in ("bias", "batch_first", "with_h0", "with_lengths", "unbatched") if case[name]]
    return "-".join(parts)


def make_case(case: dict[str, Any], seed: int = 0, *, steps: int = 6, batch: int = 4) -> dict[str, Any]:
    """Random float64 inputs for one grid case, in torch's layout for that case."""
    rng = np.random.default_rng(seed)
    input_size, hidden = 5, 7
    directions = 2 if case["bidirectional"] else 1
    params = random_params(
        rng, input_size=input_size, hidden_size=hidden, num_layers=case["num_layers"],
        bidirectional=case["bidirectional"], bias=case["bias"],
    )
    stacked = case["num_layers"] * directions
    if case["unbatched"]:
        x = rng.standard_normal((steps, input_size))
        h0 = rng.standard_normal((stacked, hidden)) if case["with_h0"] else None
        grad_out = rng.standard_normal((steps, directions * hidden))
        grad_h_n = rng.standard_normal((stacked, hidden))
    else:
        x = rng.standard_normal((batch, steps, input_size) if case["batch_first"] else (steps, batch, input_size))
        h0 = rng.standard_normal((stacked, batch, hidden)) if case["with_h0"] else None
        out_shape = (batch, steps, directions * hidden) if case["batch_first"] else (steps, batch, directions * hidden)
        grad_out = rng.standard_normal(out_shape)
        grad_h_n = rng.standard_normal((stacked, batch, hidden))
    lengths = np.array([steps, 1, 3, steps - 1][:batch]) if case["with_lengths"] else None
    return dict(params=params, x=x, h0=h0, lengths=lengths, grad_out=grad_out, grad_h_n=grad_h_n)


def torch_reference(case: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return torch_rnn(
        data["params"], data["x"], data["h0"], data["lengths"], data["grad_out"], data["grad_h_n"],
        num_layers=case["num_layers"], bidirectional=case["bidirectional"], nonlinearity=case["nonlinearity"],
        bias=case["bias"], batch_first=case["batch_first"] and not case["unbatched"],
    )


def run_rnn_xp(xp: Any, case: dict[str, Any], data: dict[str, Any], *, loop: str = "auto") -> dict[str, Any]:
    params = {k: from_numpy(xp, v) for k, v in data["params"].items()}
    h0 = None if data["h0"] is None else from_numpy(xp, data["h0"])
    out, h_n, cache = rnn_forward(
        from_numpy(xp, data["x"]), params, h0, lengths=data["lengths"], nonlinearity=case["nonlinearity"],
        batch_first=case["batch_first"], loop=loop,
    )
    grad_x, grad_h0, grads = rnn_backward(cache, from_numpy(xp, data["grad_out"]), from_numpy(xp, data["grad_h_n"]))
    return dict(out=out, h_n=h_n, grad_x=grad_x, grad_h0=grad_h0, grads=grads)


def assert_matches(ours: dict[str, Any], reference: dict[str, Any], *, xp: Any, rtol: float) -> None:
    """rnn_xp's results (namespace ``xp``, one dtype throughout) against a reference's."""
    dtype = ours["out"].dtype
    for name in ("out", "h_n", "grad_x"):
        assert_close(ours[name], reference[name], xp=xp, rtol=rtol, dtype=dtype)
    if reference["grad_h0"] is not None:
        assert_close(ours["grad_h0"], reference["grad_h0"], xp=xp, rtol=rtol)
    assert list(ours["grads"]) == list(reference["grads"])
    for name, grad in reference["grads"].items():
        assert_close(ours["grads"][name], grad, xp=xp, rtol=rtol)


def lengths_of_kind(kind: str, values: list[int]) -> Any:
    """``values`` as a sequence or an integer array of another library (skips when that library is absent)."""
    if kind in ("list", "tuple"):
        return list(values) if kind == "list" else tuple(values)
    if kind == "range":
        return range(values[0], values[0] + len(values))
    if kind.startswith("numpy"):
        return np.asarray(values, dtype=kind.split("-")[1])
    if kind == "torch":
        return pytest.importorskip("torch").tensor(values)
    if kind == "jax":
        return pytest.importorskip("jax.numpy").asarray(values)
    return pytest.importorskip("array_api_strict").asarray(values)
