"""How many of a blob's connections stay open: all of them only where the link needs them.

Sixteen ranged connections are what it takes to fill a link that caps each connection (as CDNs
do), but on a link that does not (a site mirror on the LAN, loopback) or on a machine whose CPU is
the limit (a Kubernetes init container under ``limits.cpu: 500m``), the extra twelve only cost
CPU: on the project's 2-core machine a 512 MiB pull over loopback took 1.8 CPU-seconds with 16
connections and 1.5 with 4, and under a 500m quota 3.7 s instead of 3.1 s.

So every blob starts with all its connections, but beyond the first :data:`BASE` each one
fetches a single piece first (a probe) and then asks :meth:`Ramp.keep`: it stays if that piece came
slowly (under :data:`FAST_CONNECTION` from the response head to the last byte: a capped link,
where it is needed), and leaves if it came fast or if the process is already using the CPU it may
use (:func:`store.cpulimit.cpu_limit`, which reads a container's quota). Nothing waits for the
decision: on a capped link all connections carry data from the first moment, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..store.cpulimit import cpu_limit

__all__ = ["BASE", "CPU_BOUND", "FAST_CONNECTION", "Ramp"]

BASE = 4  # connections that always fetch whole runs
FAST_CONNECTION = 32e6  # bytes/s: a connection this fast means the link does not cap connections
CPU_BOUND = 0.85  # of the CPUs we may use: more connections cannot make the pull faster


class Ramp:
    """The keep-or-leave decision of a blob's probing connections (see the module docstring)."""

    def __init__(
        self,
        connections: int,
        *,
        base: int = BASE,
        cpus: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.base = max(1, min(connections, base))
        self.probes = max(0, connections - self.base)
        self.cpus = cpu_limit() if cpus is None else cpus
        self._clock, self._cpu_clock = clock, cpu_clock
        self._t0, self._c0 = clock(), cpu_clock()
        self.left = 0

    def keep(self, body_rate: float | None) -> tuple[bool, str]:
        """Whether a probe that fetched its piece at *body_rate* bytes/s (None: no piece arrived
        whole) stays for the rest of the blob, and why (for the debug log)."""
        wall, cpu = self._clock() - self._t0, self._cpu_clock() - self._c0
        if wall > 0.05 and cpu >= CPU_BOUND * self.cpus * wall:
            self.left += 1
            return False, f"the CPU is the limit ({cpu / wall:.2f} of {self.cpus:g} CPUs in use)"
        if body_rate is not None and body_rate >= FAST_CONNECTION:
            self.left += 1
            return False, f"one connection moved {body_rate / 1e6:.0f} MB/s"
        return True, "a slow connection" if body_rate is not None else "no rate measured"
