"""Shared fixtures: one ``xp`` fixture over every backend, a torch reference, and ``assert_close``."""

from __future__ import annotations

import enum
import importlib
from typing import Any

import numpy as np
import pytest


class Backend(enum.Enum):
    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    JAX = "jax"
    CUPY = "cupy"


def gpu_available() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:  # no CuPy, no driver or no device: all mean "no GPU here"
        return False


HAVE_GPU = gpu_available()


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU with CuPy; none on this machine")
    for item in items:
        if "gpu" in item.keywords and not HAVE_GPU:
            item.add_marker(skip_gpu)


@pytest.fixture(params=list(Backend), ids=[b.value for b in Backend])
def xp(request: Any) -> Any:
    """An array-api-compat namespace (array_api_strict and jax.numpy as themselves); skips absent backends."""
    backend: Backend = request.param
    if backend is Backend.CUPY:
        if not HAVE_GPU:
            pytest.skip("cupy backend needs an NVIDIA GPU with CuPy; none on this machine")
        request.applymarker(pytest.mark.gpu)
        return importlib.import_module("array_api_compat.cupy")
    if backend is Backend.ARRAY_API_STRICT:
        return pytest.importorskip("array_api_strict")
    if backend is Backend.TORCH:
        pytest.importorskip("torch")
        return importlib.import_module("array_api_compat.torch")
    if backend is Backend.JAX:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)  # the parity tests are float64
        return importlib.import_module("jax.numpy")
    return importlib.import_module("array_api_compat.numpy")


def to_numpy(array: Any) -> np.ndarray:
    from rnn_xp._device import to_numpy as convert

    return np.asarray(convert(array))


def from_numpy(xp: Any, host: np.ndarray) -> Any:
    """``host`` as an array of ``xp`` (on its default device)."""
    return xp.asarray(np.ascontiguousarray(host))


def assert_close(actual: Any, desired: Any, *, xp: Any | None = None, rtol: float | None = None) -> None:
    """Normwise relative closeness, plus same namespace/shape/dtype when ``xp`` is given.

    ``max|a - d| <= rtol * max(1, max|d|)``; rtol defaults to 100 eps of the dtype.
    """
    if xp is not None:
        from array_api_compat import array_namespace

        assert array_namespace(actual) is array_namespace(xp.asarray(0.0)), type(actual)
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
