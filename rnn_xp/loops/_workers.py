"""The compiled loop's worker threads: one per allowed CPU, each pinned to its CPU (Linux), so that pieces of a layer
run at the same time and stay where they started.

Why pinned, and why the calling thread only waits: measured on a 2-CPU machine (T=100, B=32, H=128, two halves of
the batch), a thread pool whose worker the scheduler is free to place ran the halves one after the other about half
of the time (1.1-1.2 ms instead of 0.6 ms) whenever the call followed a NumPy GEMM (OpenBLAS's own threads keep
spinning for a while after one) or any NumPy work: the woken worker was put on the CPU of the thread that woke it.
With every piece on a worker pinned to a distinct CPU and the calling thread asleep until they finish, the same
call took 0.60-0.66 ms in every case; a dispatch costs about 40 us (two wake-ups), which is why
:data:`rnn_xp.loops.compiled.MIN_PARALLEL_WORK` keeps small layers on the calling thread.

Where CPU affinity cannot be set (not Linux) the workers are not pinned. ``RNN_XP_PIN_THREADS=0`` turns pinning off.
The workers are daemon threads, started on first use and again in a child after ``fork``. Parallel sections from
different calling threads do not interleave: one runs at a time (:func:`run` holds a lock), another caller's
pieces wait for it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

_lock = threading.Lock()
_pools: list[ThreadPoolExecutor] = []
_cpus: list[int] = []


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of ``os.cpu_count()`` where affinity is unknown), as found on first use
    (and again in a child after ``fork``): the workers are pinned to these. Asking the kernel costs 10-20 us, a
    tenth of a small layer's call."""
    if not _cpus:
        if hasattr(os, "sched_getaffinity"):
            _cpus.extend(sorted(os.sched_getaffinity(0)))
        else:
            _cpus.extend(range(os.cpu_count() or 1))
    return _cpus


def count() -> int:
    """How many pieces can run at once: the allowed CPUs."""
    return len(allowed_cpus())


def _pinning() -> bool:
    return hasattr(os, "sched_setaffinity") and os.environ.get("RNN_XP_PIN_THREADS", "1") != "0"


def pinned() -> bool:
    """Whether each worker is pinned to a CPU of its own (so that pieces spinning for each other never share one)."""
    return _pinning()


def _pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})  # 0: the calling thread (Linux)
    except OSError:  # the CPU went away from the allowed set; stay unpinned
        pass


def _workers() -> list[ThreadPoolExecutor]:
    if not _pools:
        pin = _pinning()
        for cpu in allowed_cpus():
            initializer = partial(_pin, cpu) if pin else None
            _pools.append(ThreadPoolExecutor(1, thread_name_prefix=f"rnn_xp-cpu{cpu}", initializer=initializer))
    return _pools


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads; its pools would queue work that never runs.
    global _lock
    _pools.clear()
    _cpus.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def run(calls: Sequence[Callable[[], None]]) -> None:
    """Run the calls (kernels that release the GIL) at once, each on a worker of its own, and wait for all of them;
    the first exception is raised. One call runs on the calling thread. More calls than workers: the extra ones
    queue behind the first calls."""
    if len(calls) == 1:
        calls[0]()
        return
    with _lock:
        workers = _workers()
        futures: list[Future[None]] = [workers[i % len(workers)].submit(call) for i, call in enumerate(calls)]
        for future in futures:
            future.result()
