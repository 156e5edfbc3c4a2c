"""What CPU this process runs on and how many of its cores it may use (affinity and cgroup quota)."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), or what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """How many CPUs this process can keep busy: the CPUs its affinity allows (``os.sched_getaffinity``), capped by
    its cgroup's CPU quota rounded up (a container given ``--cpus 1.5`` on a 64-core host: 2)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return max(1, min(allowed, math.ceil(quota))) if quota is not None else max(1, allowed)


def cgroup_cpu_quota(cgroup_root: Path, proc_cgroup: Path) -> float | None:
    """CPUs' worth of time the process's cgroup may use (quota / period), the smallest along its path to the root;
    None when no quota is set or none can be read. cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us``)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        relative = path.strip().lstrip("/")
        if controllers == "":  # v2: one unified hierarchy
            for directory in _up_to(cgroup_root, relative):
                quotas += _v2_quota(directory / "cpu.max")
        elif "cpu" in controllers.split(","):
            for mount in (cgroup_root / controllers, cgroup_root / "cpu,cpuacct", cgroup_root / "cpu"):
                if mount.is_dir():
                    for directory in _up_to(mount, relative):
                        quotas += _v1_quota(directory)
                    break
    return min(quotas) if quotas else None


def _up_to(root: Path, relative: str) -> list[Path]:
    """``root/relative`` and each of its parents up to ``root``."""
    parts = [p for p in relative.split("/") if p]
    return [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _v2_quota(path: Path) -> list[float]:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return []
    return [] if quota == "max" or float(period) <= 0 else [float(quota) / float(period)]


def _v1_quota(directory: Path) -> list[float]:
    try:
        quota = float((directory / "cpu.cfs_quota_us").read_text())
        period = float((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return []
    return [] if quota <= 0 or period <= 0 else [quota / period]
