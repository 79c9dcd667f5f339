"""A token bucket shared by every connection of a pull (``max_rate``). Pure core + async wait."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

__all__ = ["TokenBucket", "parse_rate"]

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?(b|bit|bps|b/s|bit/s)?\s*", re.IGNORECASE)


def parse_rate(text: str) -> float:
    """Bytes per second from ``50M`` (50 MB/s), ``10MiB``, ``800Mbit`` (100 MB/s), ``1.5G``.

    Raises:
        ValueError: not a rate.
    """
    m = _RATE.fullmatch(text)
    if not m:
        raise ValueError(f"not a rate: {text!r} (examples: 50M, 10MiB, 800Mbit)")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    unit = (m.group(3) or "").lower()
    if unit.startswith("bit") or unit == "bps":
        value /= 8
    if value <= 0:
        raise ValueError(f"a rate must be positive: {text!r}")
    return value


class TokenBucket:
    """Allows *rate* bytes per second on average, in bursts of at most *burst* bytes."""

    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate / 10, 256 * 1024)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def reserve(self, nbytes: int) -> float:
        """Take *nbytes* now; the seconds the caller must wait to stay under the rate."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def consume(self, nbytes: int) -> None:
        delay = self.reserve(nbytes)
        if delay > 0:
            import anyio  # here, so the CLI's parse_rate does not load anyio

            await anyio.sleep(delay)
