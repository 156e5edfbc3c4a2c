"""Shared fixtures: one ``xp`` fixture over every backend, a torch reference, and ``assert_close``."""

from __future__ import annotations

import enum
import importlib
import importlib.util
import os
import signal
from typing import Any

import pytest
from helpers import HAVE_GPU


class Backend(enum.Enum):
    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    JAX = "jax"
    CUPY = "cupy"


# A tuned plan file of the developer's (rnn-xp tune) must not change what the tests run: every test process uses the
# fixed rule unless a test sets a plan itself (rnn_xp.tuning).
os.environ["RNN_XP_PLAN"] = "none"

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


def pytest_generate_tests(metafunc: Any) -> None:
    """The one backend fixture: every test that takes ``xp`` runs on every backend, or on those its
    ``@pytest.mark.backends("numpy", "cupy", ...)`` names."""
    if "xp" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    wanted = set(marker.args) if marker is not None else {b.value for b in Backend}
    unknown = wanted - {b.value for b in Backend}
    if unknown:
        msg = f"backends marker names unknown backends {sorted(unknown)}; known: {[b.value for b in Backend]}"
        raise ValueError(msg)
    metafunc.parametrize("xp", [p for p in _BACKEND_PARAMS if p.id in wanted], indirect=True)


@pytest.fixture
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


@pytest.fixture
def sigint_raises() -> Any:
    """Ctrl-C raises KeyboardInterrupt in this process (and reaches the commands it starts) during the test, also
    when pytest was started in the background, where a shell leaves SIGINT ignored and Python then does not install
    its handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def dask_client() -> Any:
    """A Dask LocalCluster of two worker processes (one thread each), started once per test module; the tests of
    ``rnn_xp.dask`` skip where dask or distributed is absent."""
    import logging

    pytest.importorskip("dask.array", reason="rnn_xp.dask needs dask[array]: pip install 'dask[array]'")
    distributed = pytest.importorskip("distributed", reason="rnn_xp.dask needs distributed: pip install distributed")
    # memory_limit=0: no spilling or pausing on a small, busy CI machine (the arrays here are tiny); dashboard on a
    # free port: the default 8787 may be taken by another cluster on the machine.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  memory_limit=0, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster, timeout="60s") as client:
        client.wait_for_workers(2, timeout=60)
        yield client


SKIP_REASONS_SHOWN = 8  # reasons listed before "+N more"


def skip_summary(reports: list[Any]) -> list[str]:
    """Skipped tests counted by reason, most first, in a few lines (``pytest -rs`` lists every one)."""
    counts: dict[str, int] = {}
    for report in reports:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        counts[reason] = counts.get(reason, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    lines = [f"{count:5d}  {reason}" for reason, count in ordered[:SKIP_REASONS_SHOWN]]
    rest = ordered[SKIP_REASONS_SHOWN:]
    if rest:
        lines.append(f"{sum(c for _, c in rest):5d}  for {len(rest)} other reasons (pytest -rs lists every skip)")
    return lines


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_sep("-", f"{len(skipped)} skipped, by reason")
        for line in skip_summary(skipped):
            terminalreporter.write_line(line)
