"""The sha256 of a blob being downloaded, computed while it downloads.

SHA-256 is sequential, the download is not: 16 ranges arrive at once. :class:`PrefixHash` hashes
the contiguous prefix of the staging file in order, from two places:

* **inline**, from a reader thread's own buffer, when the bytes it just wrote start exactly where
  the hash stands (:meth:`PrefixHash.inline`): those bytes are hashed while still in the CPU's
  cache and never read again. On a fast link the connection at the front of the blob keeps the
  hash moving this way;
* **catching up**, from the page cache, for what other connections wrote ahead of it
  (:meth:`PrefixHash.catch_up`, called by the follower task and once at the end). The file is
  mapped read-only, one ``WINDOW`` at a time, and hashed in place: no copy into a buffer
  (``preadv`` of pages written a moment earlier cost about a sixth of a pull's CPU on the
  project's 2-core machine). Only the window is mapped, so the process's resident size grows by
  at most ``WINDOW``, not by the blob (mapped file pages count in RSS).

One lock orders the two; an inline attempt never waits for it (a reader thread has a socket to
drain), it leaves its bytes to the next catch-up instead. Where memory maps are unavailable or
the file cannot be mapped, catch-up reads into one reused buffer as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import threading

from ..core.errors import IntegrityError
from ..store import oscalls

__all__ = ["HASH_STEP", "PrefixHash"]

HASH_STEP = 1024 * 1024  # bytes per update while catching up (GIL released inside hashlib)
WINDOW = 8 * 1024 * 1024  # bytes mapped at once (a multiple of every mmap.ALLOCATIONGRANULARITY)


class PrefixHash:
    """sha256 of bytes ``[0, hashed)`` of the file *fd* (*size* bytes, already that long)."""

    def __init__(self, fd: int, size: int, label: str) -> None:
        self.fd, self.size, self.label = fd, size, label
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.inline_bytes = 0  # how many were hashed from a reader's buffer (for the debug log)
        self._lock = threading.Lock()
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._window = 0  # file offset of the mapped window
        self._buffer: memoryview | None = None
        self._unmappable = size == 0  # mmap cannot map an empty file, and nothing needs hashing

    def hexdigest(self) -> str:
        with self._lock:
            return self.hasher.hexdigest()

    def inline(self, pos: int, data: memoryview) -> None:
        """A reader thread wrote (and recorded) *data* at *pos*: hash it now if the hash stands
        exactly there and nobody else is hashing; otherwise a later catch-up reads it back."""
        if pos != self.hashed or not self._lock.acquire(blocking=False):
            return
        try:
            if pos == self.hashed:
                self.hasher.update(data)
                self.hashed += len(data)
                self.inline_bytes += len(data)
        finally:
            self._lock.release()

    def catch_up(self, frontier: int) -> None:
        """Hash up to *frontier* (the contiguous prefix on disk). A frontier behind the hash means
        the data was restarted from zero (a server that ignored Range): start over."""
        with self._lock:
            if frontier < self.hashed:
                self.hasher, self.hashed = hashlib.sha256(), 0
            while self.hashed < frontier:
                step = min(HASH_STEP, frontier - self.hashed)
                view = self._mapped(self.hashed)
                if view is not None:
                    at = self.hashed - self._window
                    chunk = view[at : at + min(step, len(view) - at)]
                else:
                    buf = self._buffer if self._buffer is not None else memoryview(bytearray(HASH_STEP))
                    self._buffer = buf
                    n = oscalls.host.preadinto(self.fd, buf[:step], self.hashed)
                    if not n:
                        raise IntegrityError(f"staging file of {self.label} is shorter than expected")
                    chunk = buf[:n]
                self.hasher.update(chunk)
                self.hashed += len(chunk)
                if view is not None:
                    chunk.release()

    def _mapped(self, pos: int) -> memoryview | None:
        """A read-only view of the window holding offset *pos* (None: read into a buffer instead)."""
        if self._view is not None and self._window <= pos < self._window + len(self._view):
            return self._view
        self._unmap()
        if self._unmappable:
            return None
        start = pos - pos % WINDOW
        try:
            if os.fstat(self.fd).st_size < self.size:  # mapped pages past the end would raise SIGBUS
                raise ValueError("staging file shorter than the blob")
            self._map = mmap.mmap(self.fd, min(WINDOW, self.size - start), access=mmap.ACCESS_READ, offset=start)
        except (OSError, ValueError, OverflowError):
            self._unmappable = True  # read into the buffer from now on
            return None
        self._window, self._view = start, memoryview(self._map)
        return self._view

    def _unmap(self) -> None:
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._map is not None:
            with contextlib.suppress(BufferError, ValueError):
                self._map.close()
            self._map = None

    def close(self) -> None:
        """Unmap the file (before it is closed, renamed or removed: Windows refuses while mapped)."""
        with self._lock:
            self._unmap()
