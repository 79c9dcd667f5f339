"""The bytes of a bundle stream: a file, stdin, split parts, zstd or gzip, detected by magic; bounded reads.

Everything here moves bytes; nothing decides what they mean. Sources expose
``readinto(view) -> int`` (0 at the end). Writing is in :mod:`..sinks`.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import zstandard

from ...core.errors import BundleError

__all__ = [
    "CHUNK",
    "MAX_PARTS",
    "BoundedSource",
    "ByteSource",
    "OpenedSource",
    "TruncatedBundle",
    "open_source",
    "part_paths",
    "read_exact",
]

CHUNK = 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
_OTHER_MAGIC = {b"\xfd7zXZ": "xz", b"BZh": "bzip2", b"PK\x03\x04": "zip"}
_UNPACK = {"xz": "xz -dc FILE", "bzip2": "bzip2 -dc FILE", "zip": "unzip -p FILE"}  # each writes to stdout
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
        if len(self.paths) == 1:
            return str(self.paths[0])
        return f"{self.paths[0]}..{self.paths[-1].name} ({len(self.paths)} parts)"

    def ended(self) -> str:
        """Why the parts ended early, for a truncation message."""
        if self.gap is not None:
            return f"{self.gap.name} is missing (later parts are there): copy it next to the others and run again"
        return f"no part after {self.paths[-1].name}: if there were more, copy them next to it and run again"

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


class _GzipSource:
    """A gzip stream (``tar -czf``, ollamazip's gzip archives), decompressed as it is read.

    The stdlib reader checks each member's CRC-32 and length, reads concatenated members,
    and skips zero padding after the last one.
    """

    def __init__(self, raw: _Prefixed) -> None:
        self.reader = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[call-overload]

    def readinto(self, view: memoryview) -> int:
        try:
            return int(self.reader.readinto(view))
        except EOFError:
            raise TruncatedBundle("the gzip stream ends before its end marker") from None
        except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise BundleError(f"the gzip stream of the bundle is damaged ({exc})") from None


class OpenedSource:
    """What :func:`open_source` returns: the tar-level byte source, and how it was found.
    *ended* says why split parts stopped short ("" for one file or a stream)."""

    def __init__(
        self, tar: ByteSource, raw: _Prefixed, label: str, compression: str, closer: Callable[[], None]
    ) -> None:
        self.tar, self.raw, self.label, self.compression = tar, raw, label, compression
        self._closer = closer
        self.ended = ""

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
    is read as the parts ``.000, .001, ...`` in a row. zstd and gzip are detected by their
    magic numbers.

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
                raise BundleError(f"no bundle at {path} (nor a first part {path.name}.000 beside it); check the path")
            f = _open_read(path)
            inner, label, closer = _FdSource(f, str(path)), str(path), f.close
    else:
        inner, label = _FdSource(source, getattr(source, "name", "stream")), str(getattr(source, "name", "stream"))
    opened = _detect(inner, label, closer)
    if isinstance(inner, _PartsSource):
        opened.ended = inner.ended()
    return opened


def _detect(inner: Any, label: str, closer: Callable[[], None]) -> OpenedSource:
    head = read_exact(inner, 6, allow_short=True)
    raw = _Prefixed(head, inner)
    if head.startswith(ZSTD_MAGIC):
        return OpenedSource(_ZstdSource(raw), raw, label, "zstd", closer)
    if head.startswith(GZIP_MAGIC):
        return OpenedSource(_GzipSource(raw), raw, label, "gzip", closer)
    if head.startswith(b"GGUF"):
        closer()
        name = Path(label).name
        raise BundleError(
            f"{label} is a GGUF model file, not a bundle; make a model of it with a Modelfile: "
            f"echo 'FROM ./{name}' > Modelfile && ollama-seed create NAME -f Modelfile (in the GGUF's folder)"
        )
    for magic, kind in _OTHER_MAGIC.items():
        if head.startswith(magic):
            closer()
            raise BundleError(
                f"{label} is {kind}-compressed; bundles are tar, zstd or gzip. Decompress it first "
                f"(for example: {_UNPACK[kind].replace('FILE', label)} | ollama-seed import -)"
            )
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
            raise BundleError(
                f"the bundle holds more data than its index declares (over {self.limit} bytes "
                "unpacked); refusing it as a possible decompression bomb"
            )
        n = self.inner.readinto(view[:room] if len(view) > room else view)
        self.count += n
        return n
