"""How much CPU other processes used while a sweep ran: the machine's busy CPU time (Linux ``/proc/stat``) less this
process's own (``os.times``), between a snapshot at the sweep's start and one at its end.

The load average would not do: it decays over minutes, so it still counts a test run that ended before the sweep
started, and it counts the sweep's own threads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC_STAT = Path("/proc/stat")
# Other processes' average use of the machine from which the verdict calls it busy: a quarter of a core, or a tenth of
# the cores on a larger machine.
BUSY_CORES = 0.25
BUSY_FRACTION = 0.1


@dataclass(frozen=True)
class Snapshot:
    """Seconds since some fixed point: wall clock, every CPU's busy time (None where the OS does not tell), and this
    process's CPU time (its threads and the children it waited for)."""

    wall_s: float
    machine_busy_s: float | None
    own_s: float


def machine_busy_seconds(stat: Path = PROC_STAT) -> float | None:
    """All CPUs' time spent on anything but idling and waiting for I/O, from the ``cpu`` line of ``/proc/stat``
    (user, nice, system, irq, softirq and steal: in a virtual machine, steal is time other guests took)."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu" or len(first) < 9:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def snapshot(stat: Path = PROC_STAT) -> Snapshot:
    """The counters now."""
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    return Snapshot(time.perf_counter(), machine_busy_seconds(stat), own)


def others(start: Snapshot, end: Snapshot) -> dict[str, Any] | None:
    """What other processes used between two snapshots: ``{"wall_s", "own_cpu_s", "other_cpu_s", "other_cores"}``
    (``other_cores``: their CPU seconds per wall second, i.e. cores kept busy on average); None where the machine's
    busy time is unknown."""
    if start.machine_busy_s is None or end.machine_busy_s is None:
        return None
    wall = max(end.wall_s - start.wall_s, 1e-9)
    own = end.own_s - start.own_s
    # Both counters tick at the clock rate (10 ms): a quiet machine can read a tick below zero.
    other = max(0.0, end.machine_busy_s - start.machine_busy_s - own)
    return {"wall_s": wall, "own_cpu_s": own, "other_cpu_s": other, "other_cores": other / wall}


def is_busy(load: dict[str, Any], cores: int) -> bool:
    """Whether other processes kept more than :data:`BUSY_CORES` cores, or :data:`BUSY_FRACTION` of ``cores``,
    busy on average."""
    return bool(load["other_cores"] > max(BUSY_CORES, BUSY_FRACTION * cores))
