"""How many CPUs this process may use: its affinity, and a container's CPU quota.

Kubernetes turns ``resources.limits.cpu: 500m`` into a CFS bandwidth limit on the container's
cgroup (v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; v2: ``cpu.max``), which neither
``os.cpu_count()`` nor the affinity mask shows: a process there sees every core of the node and
gets half of one. The transfer engine asks, to know when more connections cannot help (see
:mod:`wire.ramp`). Off Linux, or where nothing can be read, the answer is the CPU count.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["cpu_limit", "parse_cfs", "parse_cpu_max"]

_ROOT = Path("/sys/fs/cgroup")
_V1_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"50000 100000"`` -> 0.5; ``"max 100000"`` -> None)."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit() or int(parts[1]) == 0:
        return None
    return int(parts[0]) / int(parts[1])


def parse_cfs(quota: str, period: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (quota -1: none)."""
    q, p = quota.strip(), period.strip()
    if not q.isdigit() or not p.isdigit() or int(p) == 0:
        return None  # "-1" (no limit) is not all digits
    return int(q) / int(p)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _ancestors(mount: Path, rel: str) -> list[Path]:
    """The cgroup directory of *rel* under *mount* and every parent up to the mount (a quota on any
    of them applies). In a container with its own cgroup namespace *rel* is ``/`` or does not
    exist under the mount: then the mount itself is the container's cgroup."""
    own = mount / rel.strip("/")
    if not own.is_dir():
        return [mount]
    out = [own]
    while own != mount and own.parent != own:
        own = own.parent
        out.append(own)
    return out


def _quota_cpus(proc_cgroup: str, root: Path = _ROOT) -> float | None:
    limits: list[float] = []
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2
            for d in _ancestors(root, rel):
                value = parse_cpu_max(_read(d / "cpu.max") or "")
                if value is not None:
                    limits.append(value)
        elif "cpu" in controllers.split(","):  # cgroup v1
            for name in _V1_MOUNTS:
                mount = root / name
                if mount.is_dir():
                    for d in _ancestors(mount, rel):
                        value = parse_cfs(_read(d / "cpu.cfs_quota_us") or "", _read(d / "cpu.cfs_period_us") or "")
                        if value is not None:
                            limits.append(value)
                    break
    return min(limits) if limits else None


@functools.lru_cache(maxsize=1)
def cpu_limit() -> float:
    """CPUs this process may keep busy: the affinity mask (or CPU count), lowered by a cgroup quota."""
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = float(len(affinity(0)) if affinity is not None else (os.cpu_count() or 1))
    proc = _read(Path("/proc/self/cgroup"))
    if proc:
        quota = _quota_cpus(proc)
        if quota is not None:
            cpus = min(cpus, quota)
    return max(cpus, 0.01)
