"""Staging files of an import: created safely, removed when not installed, moved into ``blobs/`` when verified.

A staging file is ``.ollama-seed/staging/sha256-<hex>.import-<pid>-<random>``, created with
O_EXCL and O_NOFOLLOW and pre-allocated to the blob's size (a blob that does not fit fails
before a byte is written). While it exists we try to hold the blob's lock, which keeps
``ollama-seed prune`` away from it; correctness does not depend on the lock.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import filelock

from ..core.digest import Digest
from ..core.manifest import Layer
from ..store import oscalls, verified
from ..store.fsutil import open_nofollow, raise_os_error
from ..store.store import ModelStore

__all__ = ["StagedBlob", "discard", "install_staged", "open_staging"]


@dataclass
class StagedBlob:
    """A blob seen in the bundle: verified data in staging, or already in the store."""

    size: int
    staged: Path | None = None
    fd: int = -1
    lock: filelock.BaseFileLock | None = None
    in_store: bool = False
    small: bytes | None = None  # kept when it may be an OCI manifest whose index.json is still to come


def open_staging(store: ModelStore, digest: Digest, blob: StagedBlob) -> int:
    """Create *blob*'s staging file (pre-allocated to its size); its descriptor.

    Raises:
        InsufficientSpace, StoreError: the file cannot be created or does not fit.
    """
    layout = store.layout
    blob.staged = layout.staging_dir / f"{digest.filename}.import-{os.getpid()}-{secrets.token_hex(4)}"
    with contextlib.suppress(OSError, filelock.Timeout):
        lock = filelock.FileLock(str(layout.lock(digest)), thread_local=False)
        lock.acquire(timeout=0)
        blob.lock = lock
    try:
        blob.fd = open_nofollow(blob.staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        oscalls.host.preallocate(blob.fd, blob.size, blob.staged.parent)
    except OSError as exc:
        raise_os_error(exc, f"staging {digest} ({blob.size} bytes)")
    return blob.fd


def install_staged(store: ModelStore, blob: StagedBlob, layer: Layer) -> None:
    """fsync the verified staging file and move it into ``blobs/`` (or drop it if another process got there first).

    Raises:
        StoreError, InsufficientSpace: the store refused it.
    """
    assert blob.staged is not None
    try:
        store.seal(blob.fd, blob.staged)
        os.close(blob.fd)
    except OSError as exc:
        raise_os_error(exc, f"writing {layer.digest}")
    blob.fd = -1
    if store.has_blob(layer) and not verified.is_damaged(store.layout, layer.digest):  # another process did it
        oscalls.host.remove(blob.staged)
    else:
        store.install_blob(blob.staged, layer)
    blob.staged, blob.in_store = None, True
    if blob.lock is not None:
        blob.lock.release()
        blob.lock = None


def discard(blob: StagedBlob) -> None:
    """Close and remove a staging file that was not installed; release its lock."""
    if blob.fd >= 0:
        with contextlib.suppress(OSError):
            os.close(blob.fd)
        blob.fd = -1
    if blob.staged is not None:
        oscalls.host.remove(blob.staged)
        blob.staged = None
    if blob.lock is not None:
        with contextlib.suppress(Exception):
            blob.lock.release()
        blob.lock = None
