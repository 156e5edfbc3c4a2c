"""A device's GEMM peak, the ceiling rows are compared with: the best of several short measurements over the sweep.

One measurement is not enough on a shared machine: a sweep that measured its peak once, while another process held
the cores, got 95 GFLOP/s where five later measurements gave 200-206, and its rows then reached "143% of peak".
:class:`GemmPeak` takes a few samples at the start and one more between the sweep's cases, so the samples span the
same stretch of time as the rows; the peak is the best of them (interference only ever slows a GEMM down).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from rnn_xp.benchmark.timing import measure


class GemmPeak:
    """GFLOP/s of a large square matmul ``a @ a`` on ``device`` (n = 2048 on the CPU, 8192 on a GPU).

    Parameters
    ----------
    device : str
        "cpu" or "cuda".
    dtype : str
        "float32" or "float64".
    size : int, optional
        n; the default keeps one call near 0.1 s on a 2-core CPU and 20 ms on an H100.
    """

    def __init__(self, device: str, dtype: str, *, size: int | None = None) -> None:
        self.device = device
        self.size = size or (2048 if device == "cpu" else 8192)
        self.samples: list[float] = []
        self._call, self._synchronize, self._timer = _gemm(device, dtype, self.size)
        self._call()  # the first call pays for page faults, BLAS thread start-up, cuBLAS handles
        self._synchronize()

    def sample(self, calls: int = 1) -> float:
        """Time ``calls`` matmuls, recording each one's rate (GFLOP/s) as a sample; returns the best of them."""
        rates = []
        for _ in range(calls):
            timing = measure(self._call, synchronize=self._synchronize, timer=self._timer, warmup=0,
                             min_repeats=1, max_repeats=1, max_seconds=0.0)
            rates.append(2.0 * self.size**3 / timing.median / 1e9)
        self.samples += rates
        return max(rates)

    @property
    def best(self) -> float:
        """The peak: the fastest sample so far (GFLOP/s)."""
        if not self.samples:
            msg = "GemmPeak.best needs at least one sample(); got none"
            raise ValueError(msg)
        return max(self.samples)

    def summary(self) -> dict[str, Any]:
        """The samples and what was made of them, for the result file."""
        return {"best_gflops": self.best, "median_gflops": statistics.median(self.samples),
                "lowest_gflops": min(self.samples), "samples": len(self.samples), "size": self.size}


def _gemm(device: str, dtype: str, size: int) -> tuple[Callable[[], object], Callable[[], None], Any]:
    """(one matmul call, a synchronize, a per-call timer or None) for ``device``."""
    if device == "cpu":
        a = np.random.default_rng(0).standard_normal((size, size)).astype(dtype)
        out = np.empty_like(a)
        return (lambda: np.matmul(a, a, out=out)), (lambda: None), None
    import cupy

    from rnn_xp.benchmark.peers import cuda_event_timer

    b = cupy.random.default_rng(0).standard_normal((size, size)).astype(dtype)
    result = cupy.empty_like(b)
    return (lambda: cupy.matmul(b, b, out=result)), (lambda: cupy.cuda.Device().synchronize()), cuda_event_timer
