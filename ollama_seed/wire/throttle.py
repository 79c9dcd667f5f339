"""A token bucket shared by every connection of a pull (``max_rate``). Pure core + async wait."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


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
