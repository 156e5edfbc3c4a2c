"""pytest-benchmark microbenchmarks of rnn_xp's forward and forward+backward, per (T, B, H) and device.

    make bench-pytest        # = pytest bench/ --benchmark-only --benchmark-json=bench/runs/pytest-benchmark.json

GPU cases synchronise inside the timed function and skip without a GPU. Benchmarks print and save; they never
assert a time.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import rnn_xp

SIZES = [(64, 1, 128), (256, 32, 512), (256, 64, 256), (1024, 8, 128)]
DEVICES = ["cpu", "cuda"]
PARAMS = [
    pytest.param(t, b, h, device, id=f"T{t}-B{b}-H{h}-{device}")
    for (t, b, h), device in itertools.product(SIZES, DEVICES)
]


def _setup(steps: int, batch: int, hidden: int, device: str) -> tuple[rnn_xp.RNN, Any, Any]:
    if device == "cuda":
        cupy = pytest.importorskip("cupy")
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                pytest.skip("no CUDA device")
        except Exception:  # CuPy raises its CUDA error class when no driver is present
            pytest.skip("no CUDA device")
    rnn = rnn_xp.RNN(64, hidden, device=device, seed=0).eval()
    x = rnn.xp.asarray(np.random.default_rng(0).standard_normal((steps, batch, 64)).astype(np.float32))
    grad = rnn.xp.ones((steps, batch, hidden), dtype=x.dtype)
    return rnn, x, grad


def _synchronize(device: str) -> None:
    if device == "cuda":
        import cupy

        cupy.cuda.Device().synchronize()


@pytest.mark.parametrize(("steps", "batch", "hidden", "device"), PARAMS)
def test_forward(benchmark: Any, steps: int, batch: int, hidden: int, device: str) -> None:
    rnn, x, _ = _setup(steps, batch, hidden, device)

    def forward() -> None:
        rnn(x)
        _synchronize(device)

    benchmark.extra_info.update(steps=steps, batch=batch, hidden=hidden, device=device)
    benchmark(forward)


@pytest.mark.parametrize(("steps", "batch", "hidden", "device"), PARAMS)
def test_forward_backward(benchmark: Any, steps: int, batch: int, hidden: int, device: str) -> None:
    rnn, x, grad = _setup(steps, batch, hidden, device)

    def train_step() -> None:
        rnn(x)
        rnn.backward(grad)
        _synchronize(device)

    benchmark.extra_info.update(steps=steps, batch=batch, hidden=hidden, device=device)
    benchmark(train_step)
