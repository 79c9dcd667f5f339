"""The cyclic garbage collector off while a command imports its modules, on again after.

A pull imports ~400 modules (httpx, anyio, asyncio, ...); the collections that those imports
trigger cost about 70 ms of CPU on the project's 2-core machine, 15 % of a no-op pull, and every
CPU-millisecond is two of wall time under a Kubernetes ``limits.cpu: 500m``. :func:`pause` runs
first thing in the console script; a command calls :func:`resume` once its imports are done, which
also freezes what is loaded by then (those objects are never traversed again). Commands that
never call it are short (list, show, rm) and end with the process. Only the CLI does this: a
library user's collector is never touched.
"""

from __future__ import annotations

import gc

__all__ = ["pause", "resume"]

_paused = False


def pause() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Freeze the objects alive now and turn the collector back on (if :func:`pause` turned it off)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
