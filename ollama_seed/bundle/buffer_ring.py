"""Hashing alongside I/O: while sha256 runs on one buffer in a helper thread, the caller fills the next."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from .sources.streams import CHUNK

__all__ = ["BufferRing"]


class BufferRing:
    """A few buffers; sha256 runs in a helper thread on one while the caller reads or writes another."""

    def __init__(self, pool: concurrent.futures.Executor | None, count: int = 3, size: int = CHUNK) -> None:
        self.pool = pool
        self.bufs = [bytearray(size) for _ in range(count)]
        self.pending: list[concurrent.futures.Future[None] | None] = [None] * count
        self.i = 0

    def take(self) -> tuple[int, memoryview]:
        """A free buffer (waiting for its previous hash to finish)."""
        i = self.i
        self.i = (i + 1) % len(self.bufs)
        fut = self.pending[i]
        if fut is not None:
            fut.result()
            self.pending[i] = None
        return i, memoryview(self.bufs[i])

    def update(self, slot: int, hasher: Any, view: memoryview) -> None:
        """Hash *view* (a slice of buffer *slot*) in order with earlier updates."""
        if self.pool is None:
            hasher.update(view)
        else:
            self.pending[slot] = self.pool.submit(hasher.update, view)

    def wait(self) -> None:
        """Wait until every submitted update is done."""
        for i, fut in enumerate(self.pending):
            if fut is not None:
                fut.result()
                self.pending[i] = None
