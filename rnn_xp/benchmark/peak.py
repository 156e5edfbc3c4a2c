"""A device's GEMM peak, the ceiling rows are compared with: the best of many short measurements over the sweep.

One measurement is not enough on a shared machine: taken while another process holds the cores, it can land at half
the ceiling, and rows then reach more than "100% of peak". :class:`GemmPeak` samples at the start and again between
the sweep's cases, so the samples span the same stretch of time as the rows; the peak is the best of them
(interference only ever slows a GEMM down).

The matrices are small enough for one call to last milliseconds: on a CPU the scheduler hands cores out in slices
of a few milliseconds, so on a busy machine a 0.1 s call is almost never undisturbed while a 1 ms call often is.
Several sizes are sampled and the best of all counts.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from rnn_xp.benchmark.timing import measure

CPU_SIZES = (512, 768, 1024)
GPU_SIZES = (8192,)


class GemmPeak:
    """GFLOP/s of square matmuls ``a @ a`` (n x n) on ``device``: the best over sizes and samples.

    Parameters
    ----------
    device : str
        "cpu" or "cuda".
    dtype : str
        "float32" or "float64".
    sizes : sequence of int, optional
        The n to sample, each once per round; default :data:`CPU_SIZES` or :data:`GPU_SIZES`.
    """

    def __init__(self, device: str, dtype: str, *, sizes: tuple[int, ...] | None = None) -> None:
        self.device = device
        self.sizes = tuple(sizes or (CPU_SIZES if device == "cpu" else GPU_SIZES))
        self.samples: dict[int, list[float]] = {size: [] for size in self.sizes}
        self._gemms = {size: _gemm(device, dtype, size) for size in self.sizes}
        for call, synchronize, _ in self._gemms.values():
            call()  # the first call pays for page faults, BLAS thread start-up, cuBLAS handles
            synchronize()

    def sample(self, rounds: int = 1) -> float:
        """Time one matmul of each size ``rounds`` times, recording each rate (GFLOP/s); returns the best so far."""
        for _ in range(rounds):
            for size, (call, synchronize, timer) in self._gemms.items():
                timing = measure(call, synchronize=synchronize, timer=timer, warmup=0, min_repeats=1,
                                 max_repeats=1, max_seconds=0.0)
                self.samples[size].append(2.0 * size**3 / timing.median / 1e9)
        return self.best

    @property
    def count(self) -> int:
        """Samples taken, all sizes together."""
        return sum(len(rates) for rates in self.samples.values())

    @property
    def best(self) -> float:
        """The peak: the fastest sample so far (GFLOP/s)."""
        if not self.count:
            msg = "GemmPeak.best needs at least one sample(); got none"
            raise ValueError(msg)
        return max(max(rates) for rates in self.samples.values() if rates)

    def summary(self) -> dict[str, Any]:
        """The best, and the spread of the samples of the size that gave it, for the result file."""
        size = max((s for s in self.sizes if self.samples[s]), key=lambda s: max(self.samples[s]))
        rates = self.samples[size]
        return {"best_gflops": self.best, "size": size, "median_gflops": statistics.median(rates),
                "lowest_gflops": min(rates), "samples": len(rates), "sizes": list(self.sizes)}


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
