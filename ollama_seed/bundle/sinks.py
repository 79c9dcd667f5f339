"""Writing bundles: sinks for stdout, a file, split parts, zstd and gzip, with early writeback.

Sinks expose ``write(view)``, ``commit()`` and ``abort()``. Files are written under a
temporary name, fsynced and renamed on ``commit()``, so a failed export never leaves a file
that looks like a finished bundle.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import zlib
from pathlib import Path
from typing import IO, Protocol

import zstandard

from ..core.errors import BundleError
from ..store import oscalls
from ..store.fsutil import fsync_dir, open_nofollow, raise_os_error
from ..store.writeback import start_writeback
from .sources.streams import CHUNK, MAX_PARTS

__all__ = ["FileSink", "GzipSink", "PartsSink", "Sink", "StreamSink", "Writeback", "ZstdSink"]


class Sink(Protocol):
    """Where an export's bytes go (a file, split parts, stdout, a compressor in front of one):
    written in order, then committed, or aborted with nothing left behind."""

    bytes_written: int

    def write(self, data: bytes | memoryview, /) -> int:
        """Write all of *data*; its length."""
        ...

    def commit(self) -> list[str]:
        """Make what was written durable under its final name(s); the paths written."""
        ...

    def abort(self) -> None:
        """Remove whatever was written (after a failure); nothing is left under a final name."""
        ...


WRITEBACK_STEP = 8 * CHUNK


class Writeback:
    """Starts the kernel writing a file's dirty pages to disk as they accumulate (Linux ``sync_file_range``),
    so the fsync at the end waits for a little data instead of all of it. Elsewhere it does nothing."""

    def __init__(self, fd: int) -> None:
        self.fd, self.start, self.end = fd, 0, 0

    def wrote(self, n: int) -> None:
        self.end += n
        if self.end - self.start >= WRITEBACK_STEP:
            start_writeback(self.fd, self.start, self.end - self.start)
            self.start = self.end


def _write_all(fd: int, data: bytes | memoryview) -> None:
    oscalls.host.write_all(fd, data)


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
            self.fd = open_nofollow(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise_os_error(exc, f"creating {final}")

    def finish(self) -> None:
        try:
            oscalls.host.full_sync(self.fd)
            os.close(self.fd)
            self.fd = -1
            oscalls.host.replace(self.tmp, self.final)
        except OSError as exc:
            raise_os_error(exc, f"writing {self.final}")

    def discard(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        oscalls.host.remove(self.tmp)


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


class GzipSink:
    """Compresses into another sink as one gzip member (``--compress gzip``, for tools that only know gzip).

    zlib writes the header itself (no file name, mtime 0, so equal input gives equal bytes) and
    releases the GIL while it deflates, so the hash thread keeps running alongside.
    """

    def __init__(self, inner: Sink, level: int) -> None:
        self.inner = inner
        self.comp = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self.bytes_written = 0

    def write(self, data: bytes | memoryview) -> int:
        out = self.comp.compress(data)
        if out:
            self.inner.write(out)
        self.bytes_written += len(data)
        return len(data)

    def commit(self) -> list[str]:
        self.inner.write(self.comp.flush())
        return self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()
