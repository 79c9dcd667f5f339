"""Which blobs this store has hashed, unchanged since: the proof a pull needs to reuse a blob.

Ollama reuses any blob file of the right size and never hashes it again, so one flipped byte stays
there for good. ollama-seed reuses a blob without reading it only when it hashed that very file
itself (when installing it, in ``verify``, or in an earlier pull) and the file has not changed
since: the same device, inode, size, modification and change times, recorded in
``.ollama-seed/verified/sha256-<hex>``. Any write to a blob moves its times, so a pull re-hashes a
changed blob and fetches it again if it is corrupt; a blob nobody here hashed (written by Ollama,
copied in by hand) is hashed once. Damage that changes no time (bit rot) is what ``verify`` finds;
it marks the blob damaged, so the next pull, or an import of a bundle that carries it, repairs it
(an import otherwise keeps Ollama's rule and skips a blob of the right size).

A stamp is a cache: losing one costs a re-hash, and a torn or stale one never matches a file, so
stamps are written without fsync.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from ..core.digest import Digest
from ..core.layout import ModelsLayout
from . import oscalls
from .fsutil import PRIVATE_DIR_MODE, ensure_dir, open_nofollow

__all__ = ["is_damaged", "is_stamped", "mark_damaged", "stamp", "unstamp"]

_VERSION = "v1"
_DAMAGED = "damaged\n"


def _path(layout: ModelsLayout, digest: Digest) -> Path:
    return layout.state_dir / "verified" / digest.filename


def _identity(st: os.stat_result) -> str:
    return f"{_VERSION} {st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}\n"


def _blob_stat(layout: ModelsLayout, digest: Digest) -> os.stat_result | None:
    try:
        st = os.lstat(layout.blob(digest))
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def is_stamped(layout: ModelsLayout, digest: Digest) -> bool:
    """True if the blob file is the one this store hashed and found intact, unchanged since."""
    st = _blob_stat(layout, digest)
    if st is None:
        return False
    try:
        with open(_path(layout, digest), encoding="ascii") as f:
            return f.read(200) == _identity(st)
    except (OSError, ValueError):
        return False


def is_damaged(layout: ModelsLayout, digest: Digest) -> bool:
    """True if the blob was found damaged (by ``verify`` or a pull) and has not been replaced since."""
    try:
        with open(_path(layout, digest), encoding="ascii") as f:
            return f.read(20) == _DAMAGED
    except (OSError, ValueError):
        return False


def stamp(layout: ModelsLayout, digest: Digest) -> None:
    """Record that the blob file as it is now hashed to *digest* (call right after checking it)."""
    st = _blob_stat(layout, digest)
    if st is not None:
        _write(layout, digest, _identity(st))


def mark_damaged(layout: ModelsLayout, digest: Digest) -> None:
    """Record that the blob file does not hash to *digest*: a pull or an import replaces it."""
    _write(layout, digest, _DAMAGED)


def _write(layout: ModelsLayout, digest: Digest, text: str) -> None:
    target = _path(layout, digest)
    tmp = target.with_name(f"{target.name}.{os.urandom(4).hex()}.tmp")  # as secrets.token_hex(4)
    try:
        ensure_dir(target.parent, PRIVATE_DIR_MODE, sync_parent=False)  # a cache, as the stamps (no fsync)
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            oscalls.host.write_all(fd, text.encode("ascii"))
        finally:
            os.close(fd)
        oscalls.host.replace(tmp, target)
    except Exception:  # a stamp is a cache: without it the blob is only hashed again
        with contextlib.suppress(OSError):
            oscalls.host.remove(tmp)


def unstamp(layout: ModelsLayout, digest: Digest) -> None:
    """Forget what is known about the blob (it was removed)."""
    with contextlib.suppress(OSError):
        oscalls.host.remove(_path(layout, digest))
