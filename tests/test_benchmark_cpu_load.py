"""rnn_xp.benchmark.cpu_load: other processes' CPU time during a sweep, this process's own left out."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rnn_xp.benchmark import cpu_load

TICKS = os.sysconf("SC_CLK_TCK")
linux_only = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")


def _stat(tmp_path: Path, user: int, system: int, idle: int, steal: int = 0) -> Path:
    path = tmp_path / "stat"
    path.write_text(f"cpu  {user} 0 {system} {idle} 7 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n")
    return path


def test_busy_time_counts_everything_but_idle_and_io_wait(tmp_path: Path) -> None:
    assert cpu_load.machine_busy_seconds(_stat(tmp_path, 300, 100, 5000, steal=50)) == pytest.approx(450 / TICKS)


def test_an_unreadable_or_foreign_stat_file_gives_none(tmp_path: Path) -> None:
    assert cpu_load.machine_busy_seconds(tmp_path / "missing") is None
    (tmp_path / "odd").write_text("intr 1 2 3\n")
    assert cpu_load.machine_busy_seconds(tmp_path / "odd") is None
    start = cpu_load.Snapshot(0.0, None, 0.0)
    assert cpu_load.others(start, cpu_load.Snapshot(1.0, 5.0, 0.5)) is None


def test_this_process_s_own_time_is_left_out() -> None:
    start = cpu_load.Snapshot(wall_s=10.0, machine_busy_s=100.0, own_s=1.0)
    end = cpu_load.Snapshot(wall_s=30.0, machine_busy_s=140.0, own_s=37.0)  # the machine: 40 CPU-s, this process 36
    assert cpu_load.others(start, end) == pytest.approx({"wall_s": 20.0, "own_cpu_s": 36.0, "other_cpu_s": 4.0,
                                                         "other_cores": 0.2})
    # A tick of rounding cannot make the others' time negative.
    late = cpu_load.Snapshot(wall_s=30.0, machine_busy_s=135.99, own_s=37.0)
    assert cpu_load.others(start, late)["other_cpu_s"] == 0.0


def test_busy_means_a_quarter_core_or_a_tenth_of_the_cores() -> None:
    def load(cores: float) -> dict[str, float]:
        return {"wall_s": 1.0, "own_cpu_s": 1.0, "other_cpu_s": cores, "other_cores": cores}

    assert not cpu_load.is_busy(load(0.05), 2) and not cpu_load.is_busy(load(0.25), 2)
    assert cpu_load.is_busy(load(0.3), 2) and cpu_load.is_busy(load(1.0), 2)
    assert not cpu_load.is_busy(load(3.0), 64) and cpu_load.is_busy(load(7.0), 64)


@linux_only
def test_a_busy_helper_process_is_counted() -> None:
    helper = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.2)  # the interpreter has started and spins
        start = cpu_load.snapshot()
        time.sleep(1.0)
        load = cpu_load.others(start, cpu_load.snapshot())
    finally:
        helper.wait(timeout=30)
    assert load is not None and load["other_cores"] > 0.5, load
    assert cpu_load.is_busy(load, os.cpu_count() or 1) or (os.cpu_count() or 1) > 5


@linux_only
def test_this_process_s_own_threads_count_as_its_own() -> None:
    """A thread of this process that spins for half a second of its own CPU time shows as this process's time, not as
    the others' (counted on the thread's own clock, so a busy machine only makes it take longer)."""

    def spin() -> None:
        stop = time.thread_time() + 0.5
        while time.thread_time() < stop:
            pass

    start = cpu_load.snapshot()
    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()
    end = cpu_load.snapshot()
    load = cpu_load.others(start, end)
    assert load is not None and load["own_cpu_s"] > 0.45, load
    assert load["other_cpu_s"] <= end.machine_busy_s - start.machine_busy_s - 0.45
