"""Byte plumbing for bundles: sources (file, stdin, split parts, zstd), sinks, bounded reads, hashing.

Everything here moves bytes; nothing decides what they mean. Sources expose
``readinto(view) -> int`` (0 at the end); sinks expose ``write(view)``, ``commit()`` and
``abort()``. Files are written under a temporary name and renamed on ``commit()``, so a
failed export never leaves a file that looks like a finished bundle.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import zstandard

from ._errors import BundleError
from ._fsutil import fsync_dir, raise_os_error

__all__ = [
    "CHUNK",
    "BoundedSource",
    "ByteSource",
    "FileSink",
    "HashRing",
    "PartsSink",
    "Sink",
    "StreamSink",
    "TruncatedBundle",
    "Writeback",
    "ZstdSink",
    "open_source",
    "part_paths",
    "read_exact",
]

CHUNK = 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_OTHER_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ": "xz", b"BZh": "bzip2", b"PK\x03\x04": "zip"}
MAX_PARTS = 1000


class TruncatedBundle(BundleError):
    """The bundle ended before its data did."""


class ByteSource(Protocol):
    def readinto(self, view: memoryview, /) -> int: ...


class _FdSource:
    """A file descriptor read with ``readinto`` (files and pipes alike)."""

    def __init__(self, f: IO[bytes], label: str) -> None:
        self.f = f
        self.label = label

    def readinto(self, view: memoryview) -> int:
        n = self.f.readinto(view)  # type: ignore[attr-defined]
        return int(n or 0)


def part_paths(first: Path) -> tuple[list[Path], Path | None]:
    """``FILE.000, FILE.001, ...`` that exist in a row from *first*; and the first gap if a later part exists."""
    stem, _, number = first.name.rpartition(".")
    width = len(number)
    paths: list[Path] = []
    for i in range(int(number), MAX_PARTS * 10):
        p = first.with_name(f"{stem}.{i:0{width}d}")
        if not p.is_file():
            later = first.with_name(f"{stem}.{i + 1:0{width}d}")
            return paths, (p if later.exists() else None)
        paths.append(p)
    return paths, None


class _PartsSource:
    """Parts read one after the other as one stream."""

    def __init__(self, paths: list[Path], gap: Path | None) -> None:
        self.paths, self.gap = paths, gap
        self.i = 0
        self.f: IO[bytes] | None = None

    @property
    def label(self) -> str:
        note = f"; {self.gap.name} is missing" if self.gap else ""
        return f"{len(self.paths)} part(s) {self.paths[0].name}..{self.paths[-1].name}{note}"

    def readinto(self, view: memoryview) -> int:
        while self.i < len(self.paths):
            if self.f is None:
                self.f = _open_read(self.paths[self.i])
            n = self.f.readinto(view)  # type: ignore[attr-defined]
            if n:
                return int(n)
            self.f.close()
            self.f = None
            self.i += 1
        return 0

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def _open_read(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None


class _Prefixed:
    """A source with some bytes already read from its front put back."""

    def __init__(self, head: bytes, inner: Any) -> None:
        self.head, self.inner = head, inner

    def readinto(self, view: memoryview) -> int:
        if self.head:
            n = min(len(view), len(self.head))
            view[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return int(self.inner.readinto(view))

    def read(self, size: int = -1) -> bytes:  # for zstandard's stream_reader
        size = size if size > 0 else CHUNK
        if not self.head and isinstance(self.inner, _FdSource):
            return self.inner.f.read(size) or b""
        buf = bytearray(size)
        n = self.readinto(memoryview(buf))
        del buf[n:]
        return bytes(buf)


class _ZstdSource:
    def __init__(self, raw: _Prefixed) -> None:
        self.raw = raw
        dctx = zstandard.ZstdDecompressor()
        self.reader = dctx.stream_reader(raw, read_size=CHUNK, read_across_frames=True)  # type: ignore[arg-type]

    def readinto(self, view: memoryview) -> int:
        try:
            return int(self.reader.readinto(view))
        except zstandard.ZstdError as exc:
            raise BundleError(f"the zstd stream of the bundle is damaged ({exc})") from None


class OpenedSource:
    """What :func:`open_source` returns: the tar-level byte source, and how it was found."""

    def __init__(self, tar: ByteSource, raw: _Prefixed, label: str, compression: str,
                 closer: Callable[[], None]) -> None:
        self.tar, self.raw, self.label, self.compression = tar, raw, label, compression
        self._closer = closer

    def drain(self, limit: int) -> None:
        """Read what follows the archive (zstd epilogue, record padding) so a pipe's writer never sees EPIPE."""
        buf = memoryview(bytearray(64 * 1024))
        for src in (self.tar, self.raw):
            left = limit
            with contextlib.suppress(BundleError, OSError):
                while left > 0 and (n := src.readinto(buf[: min(len(buf), left)])):
                    left -= n

    def close(self) -> None:
        self._closer()


def open_source(source: str | os.PathLike[str] | IO[bytes]) -> OpenedSource:
    """Open a bundle: a path, ``-`` for stdin, a readable binary file object, or split parts.

    A path that does not exist but whose ``.000`` part does, or a path ending in ``.000``,
    is read as the parts ``.000, .001, ...`` in a row. zstd is detected by its magic number.

    Raises:
        BundleError: nothing to read, or a compression we do not read.
    """
    closer: Callable[[], None] = lambda: None  # noqa: E731
    if source == "-":
        inner: Any = _FdSource(sys.stdin.buffer, "standard input")
        label = "standard input"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists() and path.with_name(path.name + ".000").is_file():
            path = path.with_name(path.name + ".000")
        if path.name.endswith(".000") and path.is_file():
            paths, gap = part_paths(path)
            inner = _PartsSource(paths, gap)
            label, closer = inner.label, inner.close
        else:
            if not path.exists():
                raise BundleError(f"no bundle at {path}")
            f = _open_read(path)
            inner, label, closer = _FdSource(f, str(path)), str(path), f.close
    else:
        inner, label = _FdSource(source, getattr(source, "name", "stream")), str(getattr(source, "name", "stream"))
    head = read_exact(inner, 6, allow_short=True)
    raw = _Prefixed(head, inner)
    if head.startswith(ZSTD_MAGIC):
        return OpenedSource(_ZstdSource(raw), raw, label, "zstd", closer)
    for magic, kind in _OTHER_MAGIC.items():
        if head.startswith(magic):
            closer()
            raise BundleError(f"{label} is {kind}-compressed; bundles are tar or zstd. Decompress it first "
                              f"(for example: {kind} -dc FILE | ollama-seed import -)")
    if not head:
        closer()
        raise TruncatedBundle(f"{label} is empty")
    return OpenedSource(raw, raw, label, "none", closer)


def read_exact(src: ByteSource, n: int, *, allow_short: bool = False) -> bytes:
    """Exactly *n* bytes (fewer only at the end when *allow_short*).

    Raises:
        TruncatedBundle: the source ended first.
    """
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = src.readinto(view[got:])
        if not k:
            if allow_short:
                return bytes(buf[:got])
            raise TruncatedBundle(f"the bundle ended {n - got} byte(s) early")
        got += k
    return bytes(buf)


class BoundedSource:
    """Counts bytes and refuses to yield more than :attr:`limit` (the decompression-bomb guard)."""

    def __init__(self, inner: ByteSource, limit: int) -> None:
        self.inner, self.limit = inner, limit
        self.count = 0

    def readinto(self, view: memoryview) -> int:
        room = self.limit - self.count
        if room <= 0:
            raise BundleError(f"the bundle holds more data than its index declares (over {self.limit} bytes "
                              "unpacked); refusing it as a possible decompression bomb")
        n = self.inner.readinto(view[:room] if len(view) > room else view)
        self.count += n
        return n


# -- hashing alongside I/O ------------------------------------------------------------


class HashRing:
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


def new_hasher() -> Any:
    return hashlib.sha256()


# -- sinks ----------------------------------------------------------------------------


class Sink(Protocol):
    bytes_written: int

    def write(self, data: bytes | memoryview, /) -> int: ...
    def commit(self) -> list[str]: ...
    def abort(self) -> None: ...


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import ctypes.util

        func = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).sync_file_range
        func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        func.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return func


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_STEP = 8 * CHUNK


class Writeback:
    """Starts the kernel writing a file's dirty pages to disk as they accumulate (Linux ``sync_file_range``),
    so the fsync at the end waits for a little data instead of all of it. Elsewhere it does nothing."""

    def __init__(self, fd: int) -> None:
        self.fd, self.start, self.end = fd, 0, 0

    def wrote(self, n: int) -> None:
        self.end += n
        if _SYNC_FILE_RANGE is not None and self.end - self.start >= WRITEBACK_STEP:
            _SYNC_FILE_RANGE(self.fd, self.start, self.end - self.start, _SYNC_FILE_RANGE_WRITE)
            self.start = self.end


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class StreamSink:
    """stdout or a caller's binary file object."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        self.out = out
        self.fd = sys.stdout.buffer.fileno() if out is None else None
        self.bytes_written = 0

    def write(self, data: bytes | memoryview) -> int:
        if self.fd is not None:
            _write_all(self.fd, data)
        else:
            assert self.out is not None
            self.out.write(data)
        self.bytes_written += len(data)
        return len(data)

    def commit(self) -> list[str]:
        if self.out is not None:
            self.out.flush()
        return []

    def abort(self) -> None:
        return None


class _TempFile:
    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")
        try:
            self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise_os_error(exc, f"creating {final}")

    def finish(self) -> None:
        try:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            os.replace(self.tmp, self.final)
        except OSError as exc:
            raise_os_error(exc, f"writing {self.final}")

    def discard(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        self.tmp.unlink(missing_ok=True)


class FileSink:
    """One file, written under a temporary name, fsynced and renamed on commit."""

    def __init__(self, path: Path) -> None:
        self.file = _TempFile(path)
        self.writeback = Writeback(self.file.fd)
        self.bytes_written = 0

    def write(self, data: bytes | memoryview) -> int:
        try:
            _write_all(self.file.fd, data)
        except OSError as exc:
            raise_os_error(exc, f"writing {self.file.final}")
        self.writeback.wrote(len(data))
        self.bytes_written += len(data)
        return len(data)

    def commit(self) -> list[str]:
        self.file.finish()
        fsync_dir(self.file.final.parent)
        return [str(self.file.final)]

    def abort(self) -> None:
        self.file.discard()


class PartsSink:
    """``FILE.000``, ``FILE.001``, ... of at most *part_size* bytes each (``cat FILE.* > FILE`` joins them)."""

    def __init__(self, path: Path, part_size: int) -> None:
        self.path, self.part_size = path, part_size
        self.parts: list[_TempFile] = []
        self.in_part = 0
        self.bytes_written = 0

    def _next(self) -> _TempFile:
        if len(self.parts) >= MAX_PARTS:
            raise BundleError(f"more than {MAX_PARTS} parts; use a larger --split-size")
        part = _TempFile(self.path.with_name(f"{self.path.name}.{len(self.parts):03d}"))
        self.parts.append(part)
        self.writeback = Writeback(part.fd)
        self.in_part = 0
        return part

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        while view:
            part = self.parts[-1] if self.parts and self.in_part < self.part_size else self._next()
            n = min(len(view), self.part_size - self.in_part)
            try:
                _write_all(part.fd, view[:n])
            except OSError as exc:
                raise_os_error(exc, f"writing {part.final}")
            self.writeback.wrote(n)
            self.in_part += n
            self.bytes_written += n
            view = view[n:]
        return len(data)

    def commit(self) -> list[str]:
        if not self.parts:
            self._next()
        for part in self.parts:
            part.finish()
        fsync_dir(self.path.parent)
        return [str(p.final) for p in self.parts]

    def abort(self) -> None:
        for part in self.parts:
            part.discard()


class ZstdSink:
    """Compresses into another sink with zstd (multi-threaded, with a content checksum)."""

    def __init__(self, inner: Sink, level: int, threads: int = -1) -> None:
        self.inner = inner
        cctx = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
        self.writer = cctx.stream_writer(inner, closefd=False, write_size=CHUNK)  # type: ignore[arg-type]
        self.bytes_written = 0

    def write(self, data: bytes | memoryview) -> int:
        self.writer.write(data)
        self.bytes_written += len(data)
        return len(data)

    def commit(self) -> list[str]:
        self.writer.flush(zstandard.FLUSH_FRAME)
        return self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()
