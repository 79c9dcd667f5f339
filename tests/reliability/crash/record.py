"""Recording what a workload does to the file system: a :class:`Platform` that logs every
state-changing call of the store as a logical operation (ALICE's vocabulary).

Installed as ``ollama_seed.store.oscalls.host``, a :class:`RecordingPlatform` sees every call
the store makes through the platform layer (which is every state-changing one: the strace test
checks that). It performs each call for real, then appends an :class:`Op` to one log, under one
lock (worker threads write concurrently). Only paths under the recorded roots count; the
per-blob lock files are left out (their content does not matter and a lock dies with the
machine).

Inodes get small logical numbers: the files present when recording starts are numbered by a walk
of the roots, a file created through the platform gets a new number, and a descriptor is mapped
to its number through ``fstat``. A write, truncate or sync on a descriptor whose file the recorder
never saw is a bypass: it is kept in :attr:`Recorder.bypasses` for the tests to refuse.

Hooks let a workload stop a call in its tracks (``Killed``: what SIGKILL does between two calls),
pause one thread until another has gone ahead (two processes interleaved), or make a sync fail
with EIO. The strength of each sync is logged: ``full`` (durable), ``barrier`` (ordered, not yet
durable: macOS ``F_BARRIERFSYNC``) or ``none`` (macOS ``fsync`` without ``F_FULLFSYNC``, which
leaves the drive's cache free to reorder), so the persistence model can tell them apart.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from unittest import mock

from ollama_seed.store import oscalls
from ollama_seed.store.oscalls import Platform

__all__ = ["F_BARRIERFSYNC", "F_FULLFSYNC", "Hook", "Killed", "Op", "Recorder", "RecordingPlatform", "recording"]

F_FULLFSYNC = 51  # <sys/fcntl.h> on macOS
F_BARRIERFSYNC = 85

Kind = Literal["creat", "write", "trunc", "rename", "unlink", "mkdir", "rmdir", "fsync", "fsync_dir", "attr", "stdout"]
Strength = Literal["full", "data", "barrier", "none", "failed"]


class Killed(BaseException):
    """Raised by a hook: the process stops here, as SIGKILL would stop it (nothing more is written)."""


@dataclass(frozen=True, slots=True)
class Op:
    """One logical operation. Paths are relative to the root they are under (``root:rel``)."""

    seq: int
    kind: Kind
    path: str = ""  # creat, rename (source), unlink, mkdir, rmdir, fsync_dir, attr (for information)
    dst: str = ""  # rename
    ino: int = -1  # creat, write, trunc, fsync, attr
    off: int = 0  # write
    data: bytes = b""  # write; stdout: the message
    size: int = 0  # trunc: the new size; write: the file's size before the write
    mode: int = 0  # creat, attr
    strength: Strength = "full"  # fsync, fsync_dir
    actor: str = ""  # which (simulated) process made the call
    note: str = ""  # "counter" for a resume-state store, "foreign" for Ollama's own writes


@dataclass
class Hook:
    """*when(op_kind, path)* decides; then *action* runs before the call is made (it may raise
    :class:`Killed`, wait for an event, ...). ``once`` hooks fire only the first time."""

    when: Callable[[str, str], bool]
    action: Callable[[], None]
    once: bool = True
    fired: int = 0


@dataclass
class Recorder:
    """The log of one workload over some roots (the models directory, an export target, ...)."""

    roots: list[Path]
    ops: list[Op] = field(default_factory=list)
    bypasses: list[str] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    eio_dirs: set[str] = field(default_factory=set)  # fsync_dir of these (relative) paths fails with EIO
    refuse: set[int] = field(default_factory=set)  # macOS fcntl sync commands the file system refuses
    actor: threading.local = field(default_factory=threading.local)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _inodes: dict[tuple[int, int], int] = field(default_factory=dict)
    _maps: dict[int, int] = field(default_factory=dict)
    _next_ino: int = 1
    initial: dict[str, int] = field(default_factory=dict)  # rel path -> ino, files present at the start
    initial_dirs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.roots = [Path(os.path.abspath(r)) for r in self.roots]
        for root in self.roots:
            if not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                here = Path(dirpath)
                rel = self.rel(here)
                if rel is not None:
                    self.initial_dirs.add(rel)
                for name in filenames:
                    p = here / name
                    r = self.rel(p)
                    st = os.lstat(p)
                    if r is None or not stat.S_ISREG(st.st_mode):
                        continue
                    self.initial[r] = self._new_ino(st)
                dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]

    # -- paths and inodes ----------------------------------------------------------------
    def rel(self, path: Path | str) -> str | None:
        """``"<root index>:<relative posix path>"`` for a path under a recorded root, else None.
        Lock files are None too: they are left out of the model."""
        p = Path(os.path.abspath(path))
        for i, root in enumerate(self.roots):
            if p == root or root in p.parents:
                rel = p.relative_to(root).as_posix()
                if rel.startswith(".ollama-seed/locks"):
                    return None
                return f"{i}:{'' if rel == '.' else rel}"
        return None

    def _new_ino(self, st: os.stat_result) -> int:
        ino = self._next_ino
        self._next_ino += 1
        self._inodes[(st.st_dev, st.st_ino)] = ino
        return ino

    def ids(self) -> dict[int, tuple[int, int]]:
        """Logical inode -> (device, inode number) of the file it was while recording."""
        return {v: k for k, v in self._inodes.items()}

    def ino_of(self, fd: int) -> int | None:
        st = os.fstat(fd)
        ino = self._inodes.get((st.st_dev, st.st_ino))
        if ino is None and stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                where = os.readlink(f"/proc/self/fd/{fd}")
                if self.rel(where) is not None:
                    self.bypasses.append(f"descriptor {fd} on {where} was not opened through the platform")
        return ino

    # -- the log -------------------------------------------------------------------------
    def add(self, kind: Kind, **fields: Any) -> None:
        fields.setdefault("actor", getattr(self.actor, "name", ""))
        self.ops.append(Op(len(self.ops), kind, **fields))

    def stdout(self, message: str) -> None:
        """What the user was told (a model reported done): a durability barrier for the checks."""
        with self.lock:
            self.add("stdout", data=message.encode())

    def fire(self, kind: str, path: str) -> None:
        for hook in self.hooks:
            if (not hook.once or not hook.fired) and hook.when(kind, path):
                hook.fired += 1
                hook.action()

    @contextlib.contextmanager
    def as_actor(self, name: str) -> Iterator[None]:
        old = getattr(self.actor, "name", "")
        self.actor.name = name
        try:
            yield
        finally:
            self.actor.name = old


class RecordingPlatform(Platform):
    """*base*'s capabilities, with every state-changing call logged into *rec*."""

    def __init__(self, base: Platform, rec: Recorder, *, full_fsync: int | None = None) -> None:
        fields = {k: v for k, v in vars(base).items() if k not in ("kind", "full_fsync") and not k.startswith("_")}
        if full_fsync is not None and "barrier_fsync" in inspect.signature(Platform.__init__).parameters:
            fields["barrier_fsync"] = F_BARRIERFSYNC  # the recorded macOS offers both (a file system may refuse)
        super().__init__(base.kind, full_fsync=base.full_fsync if full_fsync is None else full_fsync, **fields)
        self.rec = rec
        self.boot = b"boot-1".ljust(16, b"\0")
        self._fcntl_ok: list[int] = []

    # -- creating and opening ------------------------------------------------------------------
    def open_nofollow(self, path: Path | str, flags: int, mode: int = 0o600) -> int:
        rel = self.rec.rel(path)
        if rel is None:
            return super().open_nofollow(path, flags, mode)
        self.rec.fire("open", rel)
        try:
            before: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            before = None
        fd = super().open_nofollow(path, flags, mode)
        st = os.fstat(fd)
        with self.rec.lock:
            if before is None:
                ino = self.rec._new_ino(st)
                self.rec.add("creat", path=rel, ino=ino, mode=stat.S_IMODE(st.st_mode))
            else:
                ino = self.rec._inodes.get((st.st_dev, st.st_ino), -1)
                if ino < 0:
                    self.rec.bypasses.append(f"{rel} was opened but never seen created")
                elif flags & os.O_TRUNC and before.st_size:
                    self.rec.add("trunc", ino=ino, size=0, path=rel)
        return fd

    def mkdir(self, path: Path, mode: int) -> None:
        rel = self.rec.rel(path)
        if rel is not None:
            self.rec.fire("mkdir", rel)
        super().mkdir(path, mode)
        if rel is not None:
            with self.rec.lock:
                self.rec.add("mkdir", path=rel, mode=mode)

    # -- data ----------------------------------------------------------------------------------
    def _wrote(self, fd: int, data: bytes | memoryview, pos: int, size_before: int, note: str = "") -> None:
        ino = self.rec.ino_of(fd)
        if ino is not None:
            with self.rec.lock:
                self.rec.add("write", ino=ino, off=pos, data=bytes(data), size=size_before, note=note)

    def pwrite_all(self, fd: int, data: bytes | memoryview, pos: int) -> None:
        size = os.fstat(fd).st_size
        super().pwrite_all(fd, data, pos)
        self._wrote(fd, data, pos, size)

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        size = os.fstat(fd).st_size
        super().write_all(fd, data)
        self._wrote(fd, data, pos, size)

    def preallocate(self, fd: int, size: int, directory: Path) -> None:
        before = os.fstat(fd).st_size
        super().preallocate(fd, size, directory)
        ino = self.rec.ino_of(fd)
        if ino is not None and size != before:
            with self.rec.lock:
                self.rec.add("trunc", ino=ino, size=size)

    def clone(self, dst: int, src: int) -> bool:
        if not super().clone(dst, src):
            return False
        size = os.fstat(src).st_size
        self._wrote(dst, os.pread(src, size, 0), 0, 0)
        return True

    def map_shared(self, fd: int) -> Any:
        mapped = super().map_shared(fd)
        ino = self.rec.ino_of(fd)
        if ino is not None:
            self.rec._maps[id(mapped)] = ino
        return mapped

    def poke(self, mapped: Any, offset: int, data: bytes) -> None:
        super().poke(mapped, offset, data)
        ino = self.rec._maps.get(id(mapped))
        if ino is not None:
            with self.rec.lock:
                self.rec.add("write", ino=ino, off=offset, data=bytes(data), size=len(mapped), note="counter")

    # -- attributes ----------------------------------------------------------------------------
    def set_mode(self, fd: int, mode: int, path: Path) -> None:
        super().set_mode(fd, mode, path)
        ino = self.rec.ino_of(fd)
        if ino is not None:
            with self.rec.lock:
                self.rec.add("attr", ino=ino, mode=mode, path=self.rec.rel(path) or "")

    def chmod(self, path: Path, mode: int) -> None:
        super().chmod(path, mode)
        rel = self.rec.rel(path)
        if rel is None:
            return
        st = os.lstat(path)
        ino = self.rec._inodes.get((st.st_dev, st.st_ino))
        if ino is not None:
            with self.rec.lock:
                self.rec.add("attr", ino=ino, mode=mode, path=rel)

    # -- syncs ---------------------------------------------------------------------------------
    def _fake_fcntl(self, fd: int, cmd: int, arg: Any = 0) -> int:
        """macOS's ``fcntl`` sync commands, played on Linux: a refused one raises ENOTSUP; an
        honoured one does an fsync and is remembered (it decides the sync's strength)."""
        if cmd in (F_FULLFSYNC, F_BARRIERFSYNC):
            if cmd in self.rec.refuse:
                raise OSError(errno.ENOTSUP, "refused by this file system (recorded macOS)")
            os.fsync(fd)
            self._fcntl_ok.append(cmd)
            return 0
        raise OSError(errno.EINVAL, f"fcntl command {cmd} is not played by the recorder")

    def _strength(self) -> Strength:
        done, self._fcntl_ok = self._fcntl_ok, []
        if F_FULLFSYNC in done:
            return "full"
        if F_BARRIERFSYNC in done:
            return "barrier"
        return "none" if self.kind == "macos" else "full"

    @contextlib.contextmanager
    def _macos_fcntl(self) -> Iterator[None]:
        if self.kind != "macos":
            yield
            return
        import fcntl

        with mock.patch.object(fcntl, "fcntl", self._fake_fcntl):
            yield

    def full_sync(self, fd: int) -> None:
        ino = self.rec.ino_of(fd)
        with self._macos_fcntl():
            if ino is None:  # a directory (fsync_dir logs it, with the strength this reached)
                super().full_sync(fd)
                return
            self.rec.fire("fsync", str(ino))
            super().full_sync(fd)
        strength = self._strength()
        with self.rec.lock:
            self.rec.add("fsync", ino=ino, strength=strength)

    def datasync(self, fd: int) -> None:
        super().datasync(fd)
        ino = self.rec.ino_of(fd)
        if ino is not None:
            with self.rec.lock:
                self.rec.add("fsync", ino=ino, strength="none" if self.kind == "macos" else "data")

    def fsync_dir(self, path: Path) -> None:
        rel = self.rec.rel(path)
        if rel is None:
            super().fsync_dir(path)
            return
        self.rec.fire("fsync_dir", rel)
        failed = rel in self.rec.eio_dirs

        def eio(fd: int) -> None:
            raise OSError(errno.EIO, "injected I/O error", str(path))

        with contextlib.ExitStack() as stack:
            stack.enter_context(self._macos_fcntl())
            if failed:
                stack.enter_context(mock.patch.object(os, "fsync", eio))
            super().fsync_dir(path)  # may raise (the injected EIO): then no sync is logged
        strength: Strength = "failed" if failed else self._strength() if self.dir_fsync else "none"
        with self.rec.lock:
            self.rec.add("fsync_dir", path=rel, strength=strength)

    def flush_map(self, mapped: Any) -> None:
        parent = getattr(super(), "flush_map", None)
        if parent is None:
            return
        parent(mapped)
        ino = self.rec._maps.get(id(mapped))
        if ino is not None:
            with self.rec.lock:
                self.rec.add("fsync", ino=ino, strength="none" if self.kind == "macos" else "data")

    def boot_id(self) -> bytes:
        return self.boot

    # -- names ---------------------------------------------------------------------------------
    def replace(self, src: Path | str, dst: Path | str) -> None:
        rs, rd = self.rec.rel(src), self.rec.rel(dst)
        if rd is not None:
            self.rec.fire("rename", rd)
        super().replace(src, dst)
        if rs is not None and rd is not None:
            with self.rec.lock:
                self.rec.add("rename", path=rs, dst=rd)
        elif rd is not None or rs is not None:
            self.rec.bypasses.append(f"a rename across the recorded roots: {src} -> {dst}")

    def remove(self, path: Path | str) -> None:
        rel = self.rec.rel(path)
        if rel is None:
            super().remove(path)
            return
        self.rec.fire("unlink", rel)
        existed = os.path.lexists(path)
        super().remove(path)
        if existed:
            with self.rec.lock:
                self.rec.add("unlink", path=rel)

    def rmdir(self, path: Path | str) -> None:
        rel = self.rec.rel(path)
        super().rmdir(path)
        if rel is not None:
            with self.rec.lock:
                self.rec.add("rmdir", path=rel)


@contextlib.contextmanager
def recording(
    rec: Recorder, base: Platform | None = None, *, full_fsync: int | None = None
) -> Iterator[RecordingPlatform]:
    """Install a :class:`RecordingPlatform` over *base* (this machine's Linux platform by default)
    as the store's platform for the duration."""
    plat = RecordingPlatform(base or oscalls.emulate("linux"), rec, full_fsync=full_fsync)
    old = oscalls.host
    oscalls.host = plat
    try:
        yield plat
    finally:
        oscalls.host = old
