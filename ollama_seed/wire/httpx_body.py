"""Response bodies through httpx, on the event loop: the path for links the direct path does not
take (a proxy, an injected transport, ``--max-rate``, ``OLLAMA_SEED_DIRECT=0``).

A body that brings no byte for ``stall_timeout`` seconds is cancelled by one watchdog per blob,
which is cheaper than a timeout scope around every chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from ..core.plan import Run, Scheduler
from ..store.fsutil import pwrite_all
from .direct import LowSpeed
from .throttle import TokenBucket

if TYPE_CHECKING:
    import httpx

__all__ = ["Watch", "stream_watched", "watchdog"]


@dataclass(eq=False)
class Watch:
    """One response body being read: the watchdog cancels *scope* after a stall."""

    scope: anyio.CancelScope
    last: float


async def watchdog(watches: set[Watch], stall_timeout: float, done: anyio.Event) -> None:
    """Until *done*: cancel each body in *watches* that got no byte for *stall_timeout* seconds."""
    while not done.is_set():
        with anyio.move_on_after(min(1.0, stall_timeout / 4)):
            await done.wait()
        now = time.monotonic()
        for watch in list(watches):
            if now - watch.last > stall_timeout:
                watch.scope.cancel()


async def stream_watched(
    watches: set[Watch],
    fd: int,
    sched: Scheduler,
    run: Run,
    resp: httpx.Response,
    bucket: TokenBucket | None,
    slow: LowSpeed | None = None,
) -> bool:
    """Write *resp*'s body into *fd* for *run*, under the watchdog; True if it stalled."""
    watch = Watch(anyio.CancelScope(), time.monotonic())
    watches.add(watch)
    try:
        with watch.scope:
            await _stream(fd, sched, run, resp, bucket, watch, slow)
    finally:
        watches.discard(watch)
    return watch.scope.cancelled_caught


async def _stream(
    fd: int,
    sched: Scheduler,
    run: Run,
    resp: httpx.Response,
    bucket: TokenBucket | None,
    watch: Watch,
    slow: LowSpeed | None,
) -> None:
    plan = sched.plan
    async for chunk in resp.aiter_raw():
        watch.last = time.monotonic()
        if slow is not None:
            slow.add(len(chunk))  # a trickle: TimeoutError
        room = run.limit(plan) - run.pos  # re-read: a steal may have shortened the run meanwhile
        if room <= 0:
            return
        if len(chunk) > room:
            chunk = chunk[:room]
        pwrite_all(fd, chunk, run.pos)
        sched.record(run, len(chunk))
        if bucket is not None:
            await bucket.consume(len(chunk))
        # At the run's end, go round once more rather than return: the response then ends
        # normally (h11 sees its end) and httpcore keeps the connection for the next run.
        # Leaving early made it close the connection: a new TCP (and TLS) handshake per run.
