"""Small, careful file-system helpers: atomic writes, directory fsync, no symlink following."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from pathlib import Path

from ..core.errors import InsufficientSpace, StoreError
from . import oscalls

__all__ = [
    "atomic_write",
    "ensure_dir",
    "foreign_owner",
    "fsync_dir",
    "open_nofollow",
    "open_regular",
    "pwrite_all",
    "raise_os_error",
    "remove_tree",
    "sha256_file",
]

FILE_MODE = 0o644
DIR_MODE = 0o755
PRIVATE_DIR_MODE = 0o700
HASH_CHUNK = 4 * 1024 * 1024


def raise_os_error(exc: OSError, what: str) -> None:
    """Re-raise *exc* as the matching :class:`SeedError` with a message that says what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise InsufficientSpace(f"no space left on the device while {what}; free some space and run again") from exc
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise StoreError(
            f"permission denied while {what} ({exc}); run as the owner of the models directory or fix its permissions"
        ) from exc
    raise StoreError(f"{what} failed: {exc}") from exc


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside *path* durable (not possible on Windows: skipped there).

    Raises:
        StoreError: the disk failed to write it (EIO): what was renamed there may not be on disk.
    """
    try:
        oscalls.host.fsync_dir(path)
    except OSError as exc:
        raise_os_error(exc, f"syncing the directory {path}")


def ensure_dir(path: Path, mode: int = DIR_MODE, *, sync_parent: bool = True) -> bool:
    """Create *path* (and parents); refuse if it, or anything on the way, is a symlink we did not expect.
    True when this call created *path*.

    The models root itself may be a symlink (users move stores to other disks); every
    directory we create below it must be a real directory. A directory created here is made
    durable in its parent at once (a power cut could otherwise take it, and everything later
    written and synced in it, away); with *sync_parent* False the caller does that (one sync of
    a parent for several directories it creates there).
    """
    try:  # one look: another process may create the directory at any moment (is_dir then exists raced)
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise_os_error(exc, f"looking at {path}")
        raise
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(
                f"{path} is a symbolic link; ollama-seed does not write through links there. "
                "Remove it or point OLLAMA_MODELS at the real directory"
            )
        if stat.S_ISDIR(st.st_mode):
            return False
        raise StoreError(f"{path} exists and is not a directory; move it away, or choose another models directory")
    if not path.parent.exists():
        ensure_dir(path.parent, DIR_MODE)
    try:
        oscalls.host.mkdir(path, mode)
    except FileExistsError:
        if not path.is_dir() or path.is_symlink():
            raise StoreError(f"{path} appeared as something other than a directory") from None
        return False
    except OSError as exc:
        raise_os_error(exc, f"creating {path}")
    if sync_parent:
        fsync_dir(path.parent)
    return True


def remove_tree(path: Path) -> None:
    """Remove *path* and everything below it, best effort (links are removed, never followed)."""
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        here = Path(dirpath)
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            with contextlib.suppress(OSError):
                oscalls.host.remove(here / name)
        with contextlib.suppress(OSError):
            oscalls.host.rmdir(here)


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` (binary mode) that never follows a symlink at the last component."""
    return oscalls.host.open_nofollow(path, flags, mode)


def open_regular(path: Path) -> int | None:
    """A read-only descriptor of *path* if it is a regular file; None for a FIFO, a device or a
    directory, which is never opened (a FIFO would make the open wait for a writer forever).
    Never through a symbolic link at the last component.

    Raises:
        OSError: it cannot be opened: absent, a symbolic link (ELOOP), no permission.
    """
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, "refusing to open a symbolic link", str(path))
    if not stat.S_ISREG(st.st_mode):
        return None
    fd = open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # swapped for a FIFO meanwhile: no wait
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def foreign_owner(root: Path) -> tuple[int, int] | None:
    """``(uid, gid)`` of the models directory when we run as root and it belongs to someone else."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        st = os.stat(root)
    except OSError:
        return None
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def pwrite_all(fd: int, data: bytes | memoryview, pos: int) -> None:
    """Write all of *data* at offset *pos* of *fd* (``os.pwrite`` may write less than asked)."""
    oscalls.host.pwrite_all(fd, data, pos)


def atomic_write(
    path: Path, data: bytes, tmp_dir: Path, mode: int = FILE_MODE, owner: tuple[int, int] | None = None
) -> None:
    """Write *data* to *path* atomically: temp file in *tmp_dir* (same file system), fsync, rename."""
    # os.urandom(8).hex() is secrets.token_hex(8), without the import (this module is on ensure's cheap path)
    tmp = tmp_dir / f"{path.name}.{os.urandom(8).hex()}.tmp"
    try:
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            oscalls.host.write_all(fd, data)
            oscalls.host.set_mode(fd, mode, tmp)
            if owner is not None:
                oscalls.host.set_owner(fd, owner)
            oscalls.host.full_sync(fd)
        finally:
            os.close(fd)
        oscalls.host.replace(tmp, path)
    except OSError as exc:
        oscalls.host.remove(tmp)
        raise_os_error(exc, f"writing {path}")
    fsync_dir(path.parent)
