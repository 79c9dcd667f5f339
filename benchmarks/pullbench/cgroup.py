"""A CPU quota for the process under measurement, as Kubernetes sets one for ``limits.cpu``.

``resources.limits.cpu: 500m`` becomes a CFS bandwidth limit of 50 ms of CPU per 100 ms period for
the container's cgroup: all its threads together, kernel work done on their behalf included (the
copies of ``recv`` and ``write``), may run 0.5 s per second. :class:`CpuQuota` makes such a cgroup
(v1 ``cpu`` controller: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; or v2 ``cpu.max``), puts a
child into it before it execs (:meth:`CpuQuota.enter`, as a ``preexec_fn``), and removes it at the
end. It needs root and a mounted cpu controller; :func:`available` says why not otherwise.

Only the tool under test runs in the cgroup: the registry, the proxy and the harness do not.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

PERIOD_US = 100_000
_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


def _root() -> tuple[Path, int] | None:
    if (_V1 / "cpu.cfs_quota_us").is_file():
        return _V1, 1
    controllers = _V2 / "cgroup.controllers"
    if controllers.is_file() and "cpu" in controllers.read_text().split():
        return _V2, 2
    return None


def available() -> str | None:
    """None if a quota can be set here, else why not (one line)."""
    found = _root()
    if found is None:
        return "no cgroup cpu controller is mounted (/sys/fs/cgroup/cpu or cgroup v2 with cpu)"
    if not os.access(found[0], os.W_OK):
        return f"cannot create a cgroup under {found[0]} (run as root)"
    return None


class CpuQuota:
    """One cgroup limited to *cpus* CPUs (0.5 = ``500m``), removed by :meth:`close`."""

    def __init__(self, cpus: float) -> None:
        why, found = available(), _root()
        if why is not None or found is None:
            raise RuntimeError(why or "no cgroup cpu controller")
        base, self.version = found
        self.cpus = cpus
        self.path = base / f"pullbench-{os.getpid()}-{time.monotonic_ns()}"
        self.path.mkdir()
        quota = int(cpus * PERIOD_US)
        try:
            if self.version == 1:
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        except OSError:
            self.close()
            raise
        self._procs = os.fsencode(self.path / "cgroup.procs")

    def enter(self) -> None:
        """Move the calling process into the cgroup (a ``preexec_fn``: runs in the child, before exec)."""
        fd = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")  # "0": the writing process itself
        finally:
            os.close(fd)

    def throttled(self) -> dict[str, int]:
        """The kernel's counters: periods, throttled periods, throttled time (ns)."""
        name = "cpu.stat"
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in (self.path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    out[key] = int(value)
        return out

    def close(self) -> None:
        """Remove the cgroup (its processes have exited by now; retried briefly while the kernel lets go)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)

    def describe(self) -> str:
        knob = "cpu.cfs_quota_us" if self.version == 1 else "cpu.max"
        return (
            f"cgroup v{self.version} CPU quota {int(self.cpus * PERIOD_US)} us per {PERIOD_US} us period "
            f"({knob}; = Kubernetes limits.cpu {self.cpus * 1000:g}m)"
        )


@contextlib.contextmanager
def cpu_quota(cpus: float) -> Iterator[CpuQuota]:
    q = CpuQuota(cpus)
    try:
        yield q
    finally:
        q.close()
