"""Repeated timings with warm-up, a per-case time cap and medians; GPU work is synchronised around each call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds per call over the timed repeats."""

    median: float
    low: float  # 25th percentile
    high: float  # 75th percentile
    repeats: int

    def as_dict(self) -> dict[str, float | int]:
        return {"median_s": self.median, "p25_s": self.low, "p75_s": self.high, "repeats": self.repeats}


# A timing whose 75th percentile is more than this many times its 25th is flagged: its samples came from two
# different regimes (one torch row had median 7.97 ms and 25th percentile 0.10 ms), so its median says little.
# Across a quiet quick sweep the widest spread was 2.1.
UNSTABLE_QUARTILE_RATIO = 3.0


def is_unstable(timing: Timing | dict[str, float]) -> bool:
    """Whether the quartiles of a timing (a :class:`Timing` or its :meth:`Timing.as_dict`) disagree wildly."""
    low, high = (timing.low, timing.high) if isinstance(timing, Timing) else (timing["p25_s"], timing["p75_s"])
    return high > UNSTABLE_QUARTILE_RATIO * low


def measure(
    call: Callable[[], object],
    *,
    synchronize: Callable[[], None] = lambda: None,
    timer: Callable[[Callable[[], object], Callable[[], None]], float] | None = None,
    warmup: int = 1,
    min_repeats: int = 5,
    max_repeats: int = 200,
    max_seconds: float = 2.0,
) -> Timing:
    """Time ``call``: ``warmup`` untimed calls, then repeats until ``min_repeats`` and ``max_seconds`` are met.

    ``timer(call, synchronize)`` returns the seconds of one call; the default is a host clock with
    ``synchronize()`` before and after (GPU peers pass a CUDA-event timer instead).
    """
    one = timer or _host_clock
    for _ in range(warmup):
        call()
    synchronize()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_repeats:
        samples.append(one(call, synchronize))
        if len(samples) >= min_repeats and time.perf_counter() - started >= max_seconds:
            break
        if len(samples) >= 2 and time.perf_counter() - started >= 4 * max_seconds:
            break
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return Timing(statistics.median(samples), quartiles[0], quartiles[2], len(samples))


def _host_clock(call: Callable[[], object], synchronize: Callable[[], None]) -> float:
    synchronize()
    start = time.perf_counter()
    call()
    synchronize()
    return time.perf_counter() - start


def measure_alternating(
    calls: dict[str, Callable[[], object]],
    *,
    synchronize: dict[str, Callable[[], None]] | None = None,
    timers: dict[str, Callable[[Callable[[], object], Callable[[], None]], float] | None] | None = None,
    rounds: int = 4,
    pause: float = 0.25,
    min_per_block: int = 2,
    max_seconds: float = 2.0,
) -> dict[str, Timing]:
    """Time several implementations in alternating blocks and pool each one's samples.

    Each round runs every implementation once as a block: a pause (so the previous library's worker threads stop
    spinning and give the cores back), one untimed warm-up call, then timed calls for ``max_seconds / rounds``
    (at least ``min_per_block``). On a small shared CPU, speed drifts by tens of percent over seconds; rotating
    blocks exposes every implementation to the same drift, while each block still runs under its own library's
    steady state (alternating single calls would instead charge every call a thread-pool wake-up).
    """
    synchronize = synchronize or {}
    timers = timers or {}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    block_seconds = max_seconds / rounds
    for _ in range(rounds):
        for name, call in calls.items():
            sync = synchronize.get(name, lambda: None)
            one = timers.get(name) or _host_clock
            time.sleep(pause)
            call()
            sync()
            started = time.perf_counter()
            count = 0
            while count < min_per_block or time.perf_counter() - started < block_seconds:
                samples[name].append(one(call, sync))
                count += 1
    result = {}
    for name, values in samples.items():
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        result[name] = Timing(statistics.median(values), quartiles[0], quartiles[2], len(values))
    return result
