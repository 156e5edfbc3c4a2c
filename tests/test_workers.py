"""The compiled loop's pinned worker threads (rnn_xp.loops._workers): every call runs, errors come back, each
worker sits on one CPU of its own, a forked child gets workers of its own."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from rnn_xp.loops import _workers


def test_every_call_runs_once_and_on_worker_threads() -> None:
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def call(index: int) -> None:
        with lock:
            seen.append((index, threading.current_thread().name))

    _workers.run([lambda i=i: call(i) for i in range(5)])  # more calls than workers: they queue
    assert sorted(i for i, _ in seen) == [0, 1, 2, 3, 4]
    assert all(name.startswith("rnn_xp-cpu") for _, name in seen)


def test_a_single_call_runs_on_the_calling_thread() -> None:
    names: list[str] = []
    _workers.run([lambda: names.append(threading.current_thread().name)])
    assert names == [threading.current_thread().name]


def test_the_first_error_comes_back() -> None:
    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _workers.run([lambda: None, fail])
    _workers.run([lambda: None, lambda: None])  # and the workers still work


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_each_worker_is_pinned_to_a_cpu_of_its_own() -> None:
    if os.environ.get("RNN_XP_PIN_THREADS", "1") == "0":
        pytest.skip("pinning turned off by RNN_XP_PIN_THREADS=0")
    cpus: dict[str, set[int]] = {}
    barrier = threading.Barrier(_workers.count())

    def record() -> None:
        cpus[threading.current_thread().name] = os.sched_getaffinity(0)
        barrier.wait(timeout=10)  # all at once: each call is on a different worker

    _workers.run([record for _ in range(_workers.count())])
    assert len(cpus) == _workers.count()
    assert all(len(mask) == 1 for mask in cpus.values())
    assert set().union(*cpus.values()) == set(_workers.allowed_cpus())
    assert os.sched_getaffinity(0) == set(_workers.allowed_cpus())  # the calling thread is never pinned


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX, when loaded, warns of any fork
def test_a_forked_child_runs_parallel_sections() -> None:
    _workers.run([lambda: None, lambda: None])  # the parent's workers exist before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: without fresh workers this would wait forever for threads it does not have
        ran: list[int] = []
        try:
            _workers.run([lambda: ran.append(1), lambda: ran.append(2)])
            os.write(write, b"ok" if sorted(ran) == [1, 2] else b"no")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's parallel section never finished")
        time.sleep(0.01)
    assert os.read(read, 2) == b"ok"
