"""What this operating system offers for file I/O, chosen once, with a fallback for every gap.

Linux has every call ollama-seed uses. macOS lacks ``posix_fallocate``, ``fdatasync`` and
``posix_fadvise`` (and ``preadv`` before macOS 11), and its ``fsync`` does not flush the drive's
cache (``F_FULLFSYNC`` does). Windows also lacks ``pread``/``pwrite``, ``O_NOFOLLOW``,
``O_DIRECTORY``, directory fsync and (before Python 3.13) ``fchmod``; it opens files in text mode
unless told ``O_BINARY``; and a file that is open (by us, Ollama, or a virus scanner) cannot be
replaced or deleted for a moment. See docs/reliability.md, "Platforms", for what each fallback
guarantees.

``OLLAMA_SEED_EMULATE=macos`` or ``=windows``, read once at import, hides what that system lacks
so its fallbacks run (and are tested) on Linux. Under ``windows`` it also refuses to replace or
delete a file this process still has open or mapped, as Windows would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import mmap
    import socket
    import threading

__all__ = ["Platform", "detect", "emulate", "host"]

Kind = Literal["linux", "macos", "windows", "posix"]
EMULATE_ENV = "OLLAMA_SEED_EMULATE"
_F_BARRIERFSYNC = 85  # <sys/fcntl.h> on macOS; Python's fcntl module does not export it
_DIR_SYNC_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES)
_FICLONE = 0x40049409  # <linux/fs.h>: _IOW(0x94, 9, int)
_REPLACE_RETRY_S = 1.0  # as pip: a reader or scanner holding the target lets go within a second
_REPLACE_STEP_S = 0.05


class Platform:
    """The calls one operating system offers. Every attribute is a capability, never a guess.

    A plain class, not a dataclass: it is built at import on the cheap ``ensure()`` path.
    """

    def __init__(
        self,
        kind: Kind,
        *,
        emulated: bool = False,
        os_fallocate: Callable[[int, int, int], None] | None = None,
        os_fadvise: Callable[[int, int, int, int], None] | None = None,
        os_pread: Callable[[int, int, int], bytes] | None = None,
        os_pwrite: Callable[[int, bytes | memoryview, int], int] | None = None,
        os_preadv: Callable[[int, list[memoryview], int], int] | None = None,
        os_readv: Callable[[int, list[memoryview]], int] | None = None,
        os_fdatasync: Callable[[int], None] | None = None,
        os_fchmod: Callable[[int, int], None] | None = None,
        o_nofollow: int = 0,
        o_directory: int = 0,
        o_binary: int = 0,
        full_fsync: int | None = None,
        barrier_fsync: int | None = None,
        dir_fsync: bool = True,
        sharing_violations: bool = False,
    ) -> None:
        self.kind = kind
        self.emulated = emulated
        self.os_fallocate = os_fallocate  # os.posix_fallocate
        self.os_fadvise = os_fadvise
        self.os_pread = os_pread
        self.os_pwrite = os_pwrite
        self.os_preadv = os_preadv
        self.os_readv = os_readv
        self.os_fdatasync = os_fdatasync
        self.os_fchmod = os_fchmod
        self.o_nofollow = o_nofollow
        self.o_directory = o_directory
        self.o_binary = o_binary
        self.full_fsync = full_fsync  # fcntl.F_FULLFSYNC on macOS
        self.barrier_fsync = barrier_fsync  # F_BARRIERFSYNC on macOS
        self.dir_fsync = dir_fsync
        self.sharing_violations = sharing_violations  # an open file cannot be replaced or deleted (Windows)
        self._boot: bytes | None = None
        self._warned_unordered = False

    def __repr__(self) -> str:
        missing = [
            n
            for n in (
                "os_fallocate",
                "os_fadvise",
                "os_pread",
                "os_pwrite",
                "os_preadv",
                "os_readv",
                "os_fdatasync",
                "os_fchmod",
                "o_nofollow",
                "o_directory",
            )
            if not getattr(self, n)
        ]
        how = ", emulated" if self.emulated else ""
        return f"Platform({self.kind}{how}, without {', '.join(missing) or 'nothing'})"

    # -- preallocation ---------------------------------------------------------------------------

    def preallocate(self, fd: int, size: int, directory: Path) -> None:
        """Size *fd* to *size* bytes and reserve the space, so a full disk fails now, not midway.

        Linux: ``posix_fallocate``. macOS: ``F_PREALLOCATE``. Elsewhere (and where the file system
        refuses both): ``ftruncate`` plus a check that *directory*'s file system has the space free.
        """
        os.ftruncate(fd, size)
        if size <= 0:
            return
        if self.os_fallocate is not None:
            try:
                self.os_fallocate(fd, 0, size)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
        elif self.kind == "macos" and not self.emulated:  # pragma: no cover
            from .native import mac_preallocate

            if mac_preallocate(fd, size):
                return
        free = _free_bytes(directory)
        if free is not None and free < size:
            raise OSError(errno.ENOSPC, f"{size} bytes needed, {free} free", str(directory))

    def fadvise_sequential(self, fd: int) -> None:
        if self.os_fadvise is not None:
            self.os_fadvise(fd, 0, 0, getattr(os, "POSIX_FADV_SEQUENTIAL", 2))

    # -- positional I/O --------------------------------------------------------------------------

    def pwrite_all(self, fd: int, data: bytes | memoryview, pos: int) -> None:
        """Write all of *data* at offset *pos* (a write may take less than asked)."""
        if self.os_pwrite is None:
            with _fd_lock(fd):
                os.lseek(fd, pos, os.SEEK_SET)
                _write_all(fd, data)
            return
        n = self.os_pwrite(fd, data, pos)
        if n < len(data):
            view = memoryview(data)
            while n < len(view):
                n += self.os_pwrite(fd, view[n:], pos + n)

    def pread(self, fd: int, n: int, pos: int) -> bytes:
        """Up to *n* bytes at offset *pos* (fewer only at the end of the file)."""
        if self.os_pread is not None:
            return self.os_pread(fd, n, pos)
        with _fd_lock(fd):
            os.lseek(fd, pos, os.SEEK_SET)
            return os.read(fd, n)

    def preadinto(self, fd: int, buf: memoryview, pos: int) -> int:
        """Read into *buf* at offset *pos*; the number of bytes read (``preadv`` where there is one)."""
        if self.os_preadv is not None:
            return self.os_preadv(fd, [buf], pos)
        chunk = self.pread(fd, len(buf), pos)
        buf[: len(chunk)] = chunk
        return len(chunk)

    def readinto(self, fd: int, buf: memoryview) -> int:
        """Read into *buf* at *fd*'s position; the number of bytes read, 0 at the end of the file
        (``readv`` where there is one: no copy; Windows has none)."""
        if self.os_readv is not None:
            return self.os_readv(fd, [buf])
        chunk = os.read(fd, len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)

    # -- durability ------------------------------------------------------------------------------

    def datasync(self, fd: int) -> None:
        """Make *fd*'s data and size durable, not its other metadata (``fdatasync``; ``fsync``
        where there is none). Waits for the disk."""
        (self.os_fdatasync or os.fsync)(fd)

    def full_sync(self, fd: int) -> None:
        """Make *fd*'s data durable before it is renamed into place: ``fsync`` (on Windows the CRT's
        ``_commit``). On macOS ``fsync`` leaves the drive's cache free to write later data first, so
        ``F_FULLFSYNC`` (which flushes that cache); where a file system refuses it,
        ``F_BARRIERFSYNC`` (nothing issued later reaches the disk before this file's data);
        plain ``fsync`` only where both are refused (see docs/reliability.md, "Power loss")."""
        if self.full_fsync is not None or self.barrier_fsync is not None:
            import fcntl

            for command in (self.full_fsync, self.barrier_fsync):
                if command is None:
                    continue
                try:
                    fcntl.fcntl(fd, command)
                    return
                except OSError:  # not every file system supports it (SMB, some FUSE)
                    continue
            if not self._warned_unordered:
                import logging  # only here: ensure()'s cheap path imports this module, not logging

                self._warned_unordered = True
                logging.getLogger("ollama_seed").warning(
                    "this file system refuses F_FULLFSYNC and F_BARRIERFSYNC: after a power cut a blob "
                    "may hold lost bytes; run 'ollama-seed verify' then (ensure --verify repairs it)"
                )
        os.fsync(fd)

    def fsync_dir(self, path: Path) -> None:
        """Make a rename or create inside *path* durable (impossible on Windows: no-op there).

        A directory that cannot be opened, or a file system that cannot sync one (EINVAL, ENOTSUP:
        some FUSE and network file systems), is passed over: there is nothing more to do there.
        Any other error (EIO: the disk failed to write) is raised, so nothing goes on to name
        what may not be on disk."""
        if not self.dir_fsync:
            return
        try:
            fd = os.open(path, os.O_RDONLY | self.o_directory)
        except OSError:
            return
        try:
            self.full_sync(fd)  # on macOS through the drive's cache too: a rename must outlive a power cut
        except OSError as exc:
            if exc.errno not in _DIR_SYNC_UNSUPPORTED:
                raise
        finally:
            os.close(fd)

    # -- the other state-changing calls of the store (one place, so a recording platform sees them all)

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        """Write all of *data* at *fd*'s current offset (a write may take less than asked)."""
        _write_all(fd, data)

    def mkdir(self, path: Path, mode: int) -> None:
        """``mkdir`` then ``chmod``: the mode exactly, whatever the umask."""
        os.mkdir(path, mode)
        os.chmod(path, mode)

    def rmdir(self, path: Path | str) -> None:
        os.rmdir(path)

    def chmod(self, path: Path, mode: int) -> None:
        os.chmod(path, mode)

    def set_owner(self, fd: int, owner: tuple[int, int]) -> None:
        """``fchown`` (POSIX only; callers pass an owner only when running as root there)."""
        os.fchown(fd, *owner)

    def set_path_owner(self, path: Path, owner: tuple[int, int]) -> None:
        """``lchown``: a directory (or a link, never its target) handed to *owner*."""
        os.lchown(path, *owner)

    def clone(self, dst: int, src: int) -> bool:
        """Share *src*'s extents with *dst* (Linux ``FICLONE``: Btrfs, XFS, bcachefs); False where
        the file system or the system cannot, and the caller copies."""
        if self.kind != "linux" or self.emulated:
            return False
        try:
            import fcntl

            fcntl.ioctl(dst, _FICLONE, src)
        except (OSError, ImportError):
            return False
        return True

    def map_shared(self, fd: int) -> mmap.mmap:
        """A writable shared map of the whole file (the resume state); change it only with :meth:`poke`."""
        import mmap as _mmap

        return _mmap.mmap(fd, 0)

    def flush_map(self, mapped: mmap.mmap) -> None:
        """Write a map from :meth:`map_shared` back to its file now and wait (``msync``)."""
        mapped.flush()

    def boot_id(self) -> bytes:
        """16 bytes that differ from one boot of this machine to the next (all zeros when that
        cannot be told): a resume state written in another boot trusts only what was synced.
        Linux: ``/proc/sys/kernel/random/boot_id``; macOS: ``kern.boottime``; Windows: the boot
        time from ``GetTickCount64``."""
        if self._boot is None:
            from .native import boot_id

            self._boot = boot_id(self.kind if not self.emulated else "linux")
        return self._boot

    def poke(self, mapped: mmap.mmap, offset: int, data: bytes) -> None:
        """Store *data* at *offset* of a map from :meth:`map_shared`: no system call, but a change of
        the file all the same (the kernel writes it back when it likes)."""
        mapped[offset : offset + len(data)] = data

    def set_mode(self, fd: int, mode: int, path: Path) -> None:
        """``fchmod`` where it exists; else ``chmod`` of *path* (Windows before Python 3.13, where a
        mode only sets or clears the read-only flag: our modes all leave the file writable)."""
        if self.os_fchmod is not None:
            self.os_fchmod(fd, mode)
        else:
            os.chmod(path, mode)

    # -- opening without following links --------------------------------------------------------

    def open_nofollow(self, path: Path | str, flags: int, mode: int = 0o600) -> int:
        """``os.open`` in binary mode that never follows a symlink at the last component.

        Without ``O_NOFOLLOW`` (Windows): ``lstat`` before, ``fstat`` after, and the two must be the
        same regular file; a link swapped in between the two calls is caught by the comparison.
        """
        flags |= self.o_binary | getattr(os, "O_CLOEXEC", 0)
        if self.o_nofollow:
            return os.open(path, flags | self.o_nofollow, mode)
        try:
            before: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            before = None
        if before is not None and _is_link(before):
            raise OSError(errno.ELOOP, "refusing to open a symbolic link", str(path))
        fd = os.open(path, flags, mode)
        try:
            after = os.fstat(fd)
            now = os.lstat(path)
            if (
                _is_link(now)
                or not os.path.samestat(after, now)
                or (before is not None and not os.path.samestat(before, after))
            ):
                raise OSError(errno.ELOOP, "the file was replaced by a link while it was opened", str(path))
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- replacing and deleting ------------------------------------------------------------------

    def replace(self, src: Path | str, dst: Path | str) -> None:
        """``os.replace``; on Windows retried for up to a second while another process holds *dst*
        open (Ollama reading it, a virus scanner, an indexer), as pip does."""
        self._retry(lambda: self._checked(os.replace, src, dst), str(dst))

    def remove(self, path: Path | str) -> None:
        """``os.unlink``; on Windows retried like :meth:`replace`. A missing file is not an error."""
        with contextlib.suppress(FileNotFoundError):
            self._retry(lambda: self._checked(os.unlink, path), str(path))

    def _checked(self, op: Callable[..., None], *paths: Path | str) -> None:
        if self.emulated and self.sharing_violations:
            from .native import open_here

            for p in paths:
                if open_here(p):
                    raise PermissionError(errno.EACCES, "emulated Windows: the file is open in this process", str(p))
        op(*paths)

    def _retry(self, op: Callable[[], None], what: str) -> None:
        if not self.sharing_violations:
            op()
            return
        deadline = time.monotonic() + _REPLACE_RETRY_S
        while True:
            try:
                op()
                return
            except PermissionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_REPLACE_STEP_S)

    def long_path(self, root: Path) -> Path:
        """*root* with Windows' ``\\\\?\\`` prefix where paths below it could pass the 260-character
        limit (as huggingface_hub does, and Go's os package does for Ollama); unchanged elsewhere."""
        if self.kind != "windows" or self.emulated:
            return root
        return Path(windows_long_path(str(root.absolute())))

    def listen_options(self, sock: socket.socket) -> None:
        """Let a restarted server bind its port at once, and never share it with another process:
        ``SO_REUSEADDR`` on POSIX; on Windows that option lets a second process take the port, so
        ``SO_EXCLUSIVEADDRUSE`` instead (as asyncio does)."""
        import socket as _socket

        if self.kind == "windows" and not self.emulated:
            exclusive = getattr(_socket, "SO_EXCLUSIVEADDRUSE", None)
            if exclusive is not None:
                sock.setsockopt(_socket.SOL_SOCKET, exclusive, 1)
            return
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)


# Longest path we make below a models directory, past its root: a staging file
# (``\\.ollama-seed\\staging\\sha256-<64 hex>.data.<pid>-<8 hex>``), or a manifest of short parts.
_BELOW_ROOT = 110
_WINDOWS_MAX_PATH = 260


def windows_long_path(absolute: str) -> str:
    """``\\\\?\\`` + *absolute* when paths below it could pass MAX_PATH; a UNC share becomes
    ``\\\\?\\UNC\\server\\share``. Pure string work, so it is tested on any system."""
    if absolute.startswith("\\\\?\\") or len(absolute) + _BELOW_ROOT < _WINDOWS_MAX_PATH:
        return absolute
    if absolute.startswith("\\\\"):
        return "\\\\?\\UNC\\" + absolute[2:]
    return "\\\\?\\" + absolute


# -- helpers ---------------------------------------------------------------------------------------

_FD_LOCKS: dict[int, threading.Lock] = {}
_FD_LOCKS_GUARD: threading.Lock | None = None


def _fd_lock(fd: int) -> threading.Lock:
    """One lock per descriptor number: seek-then-read/write is one step for the threads sharing it."""
    global _FD_LOCKS_GUARD
    if _FD_LOCKS_GUARD is None:
        import threading  # only where there is no pwrite (Windows): not on the start-up path

        _FD_LOCKS_GUARD = threading.Lock()
    with _FD_LOCKS_GUARD:
        lock = _FD_LOCKS.get(fd)
        if lock is None:
            import threading

            lock = _FD_LOCKS[fd] = threading.Lock()
        return lock


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _is_link(st: os.stat_result) -> bool:
    import stat

    if stat.S_ISLNK(st.st_mode):
        return True
    reparse = getattr(st, "st_reparse_tag", 0)  # Windows junctions and other reparse points
    return bool(reparse)


def _free_bytes(directory: Path) -> int | None:
    import shutil

    for candidate in (directory, *directory.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


# -- choosing --------------------------------------------------------------------------------------


def _native_kind() -> Kind:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    if sys.platform == "win32":
        return "windows"
    return "posix"


def _from_os(kind: Kind, *, emulated: bool) -> Platform:
    """What *kind* offers, from what this ``os`` module has, less what *kind* is known to lack."""
    hide: set[str] = set()
    if kind in ("macos", "windows"):
        hide |= {"posix_fallocate", "posix_fadvise", "fdatasync"}
    if kind == "windows":
        hide |= {"pread", "pwrite", "preadv", "readv", "fchmod", "O_NOFOLLOW", "O_DIRECTORY"}
    if kind == "macos" and emulated:
        hide.add("preadv")  # present only on macOS 11+ builds: test the older case

    def has(name: str) -> Any:
        return None if name in hide else getattr(os, name, None)

    full_fsync = barrier_fsync = None
    if kind == "macos" and not emulated:
        import fcntl

        full_fsync = getattr(fcntl, "F_FULLFSYNC", None)
        barrier_fsync = getattr(fcntl, "F_BARRIERFSYNC", _F_BARRIERFSYNC)
    return Platform(
        kind=kind,
        emulated=emulated,
        os_fallocate=has("posix_fallocate"),
        os_fadvise=has("posix_fadvise"),
        os_pread=has("pread"),
        os_pwrite=has("pwrite"),
        os_preadv=has("preadv"),
        os_readv=has("readv"),
        os_fdatasync=has("fdatasync"),
        os_fchmod=has("fchmod"),
        o_nofollow=int(has("O_NOFOLLOW") or 0),
        o_directory=int(has("O_DIRECTORY") or 0),
        o_binary=int(getattr(os, "O_BINARY", 0)),
        full_fsync=full_fsync,
        barrier_fsync=barrier_fsync,
        dir_fsync=kind != "windows",
        sharing_violations=kind == "windows",
    )


def emulate(kind: str) -> Platform:
    """This machine with the os module reduced to what *kind* (``macos``, ``windows``) offers."""
    if kind not in ("macos", "windows", "linux"):
        raise ValueError(f"{EMULATE_ENV} must be macos, windows or linux, not {kind!r}")
    chosen: Kind = "macos" if kind == "macos" else "windows" if kind == "windows" else "linux"
    return _from_os(chosen, emulated=chosen != _native_kind())


def detect() -> Platform:
    """This machine, or the emulation ``OLLAMA_SEED_EMULATE`` asks for."""
    wanted = os.environ.get(EMULATE_ENV, "").strip().lower()
    if wanted:
        return emulate(wanted)
    return _from_os(_native_kind(), emulated=False)


host: Platform = detect()
