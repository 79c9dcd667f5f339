"""Hashing alongside I/O: while sha256 runs on one buffer in a helper thread, the caller fills the next.

:meth:`BufferRing.read_blob` is how ``export`` and ``image build`` read a store blob: opened with
:func:`open_blob`, read a buffer at a time, checked against its name on the way.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.digest import Digest
from ..core.errors import IntegrityError, StoreError
from ..store import oscalls
from ..store.fsutil import open_nofollow, raise_os_error
from .sources.streams import CHUNK

__all__ = ["BufferRing", "Cancelled", "open_blob"]


class Cancelled(Exception):
    """The caller cancelled the export, import or build; raised inside the worker thread."""


def open_blob(path: Path, size: int) -> tuple[int, float]:
    """A read-only descriptor of the store blob at *path* and its mtime, with read-ahead advised.

    Raises:
        StoreError: it cannot be opened, or it is not a regular file of *size* bytes.
    """
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}; run 'ollama-seed verify'") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            raise StoreError(f"{path} is not a {size}-byte file; run 'ollama-seed verify' and pull it again")
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):
        oscalls.host.fadvise_sequential(fd)
    return fd, st.st_mtime


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

    def read_blob(
        self,
        fd: int,
        path: Path,
        digest: Digest,
        size: int,
        *,
        verify: bool,
        cancel: threading.Event | None,
        remedy: str,
    ) -> Iterator[memoryview]:
        """The *size* bytes of the blob *digest* open at *fd* (from :func:`open_blob`), a buffer at a
        time; a view is valid until the next one is asked for. With *verify*, they are hashed
        alongside and checked once the last view is taken.

        Raises:
            Cancelled: *cancel* was set. StoreError: a read failed, or the file shrank.
            IntegrityError: the bytes do not hash to *digest*; *remedy* says what to do.
        """
        hasher = hashlib.sha256() if verify else None
        left = size
        while left:
            if cancel is not None and cancel.is_set():
                raise Cancelled
            slot, view = self.take()
            try:
                n = oscalls.host.readinto(fd, view[:left] if left < len(view) else view)
            except OSError as exc:
                raise_os_error(exc, f"reading {path}")
                raise
            if not n:
                raise StoreError(f"{path} shrank while it was read; is something rewriting the store?")
            chunk = view[:n]
            if hasher is not None:
                self.update(slot, hasher, chunk)
            left -= n
            yield chunk
        self.wait()
        if hasher is not None and hasher.hexdigest() != digest.hex:
            raise IntegrityError(
                f"blob {digest} at {path} is corrupt (its sha256 is {hasher.hexdigest()}); {remedy}",
                expected=str(digest),
                actual=f"sha256:{hasher.hexdigest()}",
            )
