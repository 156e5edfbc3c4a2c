"""Shared fixtures: one ``xp`` fixture over every backend, a torch reference, and ``assert_close``."""

from __future__ import annotations

import enum
import importlib
import importlib.util
import os
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
# Set on a GPU machine (tools/gpu_session.sh): a GPU test that would skip fails instead, so a run in which CuPy,
# the device or torch with CUDA is missing cannot pass by skipping everything.
REQUIRE_GPU = os.environ.get("RNN_XP_REQUIRE_GPU", "") == "1"


def pytest_sessionstart(session: Any) -> None:
    if not REQUIRE_GPU:
        return
    problems = [] if HAVE_GPU else ["CuPy sees no CUDA device"]
    try:
        import torch

        if not torch.cuda.is_available():
            problems.append("torch has no CUDA device")
    except ImportError:
        problems.append("torch is not installed")
    if importlib.util.find_spec("array_api_compat") is None:
        problems.append("array-api-compat is not installed")
    if problems:
        msg = f"RNN_XP_REQUIRE_GPU=1 but {'; '.join(problems)}"
        raise pytest.UsageError(msg)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU with CuPy; none on this machine")
    for item in items:
        if "gpu" in item.keywords and not HAVE_GPU:
            item.add_marker(skip_gpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    """Under RNN_XP_REQUIRE_GPU=1 a skipped GPU test is a failure (it would hide a missing dependency)."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_GPU and report.skipped and item.get_closest_marker("gpu") is not None:
        report.outcome = "failed"
        report.longrepr = f"GPU test skipped under RNN_XP_REQUIRE_GPU=1: {report.longrepr}"


# The cupy parameter carries the gpu marker from collection on, so `pytest -m gpu` selects it.
_BACKEND_PARAMS = [
    pytest.param(b, id=b.value, marks=pytest.mark.gpu) if b is Backend.CUPY else pytest.param(b, id=b.value)
    for b in Backend
]


@pytest.fixture(params=_BACKEND_PARAMS)
def xp(request: Any) -> Any:
    """An array-api-compat namespace (array_api_strict and jax.numpy as themselves); skips absent backends."""
    backend: Backend = request.param
    if backend is Backend.CUPY:
        if not HAVE_GPU:
            pytest.skip("cupy backend needs an NVIDIA GPU with CuPy; none on this machine")
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
