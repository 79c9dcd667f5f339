"""Local files and bytes into ``blobs/``: hashed in the same pass as the copy, through a staging
file and the atomic install like any downloaded blob.

A file is copied, never hard-linked (an edit of the source would corrupt the store); where the
file system supports it (Btrfs, XFS, bcachefs), a reflink (``FICLONE``) shares the extents
instead and the hash reads the clone. A source already ingested is recognised without reading it
again by (device, inode, size, mtime) in ``.ollama-seed/sources.json``, so a 12 GB GGUF named by a
Modelfile is not re-hashed at every start-up; any change to those four means a new hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.digest import Digest
from ..core.errors import IntegrityError, SeedError, StoreError
from ..core.manifest import Layer
from . import oscalls
from .fsutil import atomic_write, open_nofollow, raise_os_error
from .store import ModelStore

__all__ = ["SourceChanged", "ingest_bytes", "ingest_file"]

CHUNK = 1 << 20
SOURCES = "sources.json"
MAX_SOURCES = 4096  # entries kept in the source cache (the oldest go first)


class SourceChanged(IntegrityError):
    """A source file changed while it was being copied into the store."""


@dataclass(frozen=True, slots=True)
class _Key:
    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> _Key:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def text(self, path: Path) -> str:
        return f"{path}\0{self.dev}\0{self.ino}\0{self.size}\0{self.mtime_ns}"


def _load_sources(store: ModelStore) -> dict[str, str]:
    try:
        data = json.loads((store.layout.state_dir / SOURCES).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _remember(store: ModelStore, key: str, digest: Digest) -> None:
    sources = _load_sources(store)
    sources.pop(key, None)
    sources[key] = str(digest)
    while len(sources) > MAX_SOURCES:
        sources.pop(next(iter(sources)))
    with contextlib.suppress(SeedError):  # a cache: losing it costs a hash, never correctness
        atomic_write(store.layout.state_dir / SOURCES, json.dumps(sources).encode(), store.layout.tmp_dir, mode=0o600)


def _cached(store: ModelStore, key: str) -> Digest | None:
    value = _load_sources(store).get(key)
    if value is None:
        return None
    try:
        return Digest.parse(value)
    except SeedError:
        return None


def _staging_path(store: ModelStore, tag: str) -> Path:
    return store.layout.staging_dir / f"ingest-{tag}.{os.getpid()}-{secrets.token_hex(4)}"


def ingest_file(
    store: ModelStore, source: Path, media_type: str, *, progress: Callable[[int, int], None] | None = None
) -> tuple[Layer, bool]:
    """Put *source* into the store as a blob of *media_type*; the layer, and whether it was already there.

    *progress* is called with (bytes done, total) as the copy goes. The caller has checked what the
    file is (its magic); this checks that it is a regular file that did not change while copied.

    Raises:
        StoreError: *source* is not a readable regular file, or the store refused the blob.
        SourceChanged: the file changed while it was copied (nothing was installed).
        InsufficientSpace: the disk is full.
    """
    store.prepare()
    try:  # stat first: opening a FIFO or a device could block or have side effects
        seen = os.stat(source)
        if not stat.S_ISREG(seen.st_mode):
            raise StoreError(f"{source} is not a regular file")
        src = os.open(source, os.O_RDONLY | oscalls.host.o_binary | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise StoreError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        before = os.fstat(src)
        if not os.path.samestat(seen, before):
            raise SourceChanged(f"{source} was replaced while it was opened; run again")
        key = _Key.of(before).text(Path(os.path.abspath(source)))
        known = _cached(store, key)
        if known is not None and store.blob_size(known) == before.st_size:
            if progress is not None:
                progress(before.st_size, before.st_size)
            return Layer(media_type, known, before.st_size), True
        layer = _copy_in(store, src, source, before, media_type, progress)
    finally:
        os.close(src)
    _remember(store, key, layer.digest)
    return layer, False


def _copy_in(
    store: ModelStore,
    src: int,
    source: Path,
    before: os.stat_result,
    media_type: str,
    progress: Callable[[int, int], None] | None,
) -> Layer:
    total = before.st_size
    staged = _staging_path(store, "file")
    hasher = hashlib.sha256()
    try:
        dst = open_nofollow(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            cloned = oscalls.host.clone(dst, src)
            if not cloned:
                oscalls.host.preallocate(dst, total, staged.parent)
            done = 0
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while done < total:
                n = oscalls.host.preadinto(src, view[: min(CHUNK, total - done)], done)
                if n == 0:
                    raise SourceChanged(f"{source} became shorter while it was copied; nothing was installed")
                hasher.update(view[:n])
                if not cloned:
                    oscalls.host.pwrite_all(dst, view[:n], done)
                done += n
                if progress is not None:
                    progress(done, total)
            after = os.fstat(src)
            if _Key.of(after) != _Key.of(before) or after.st_ctime_ns != before.st_ctime_ns:
                raise SourceChanged(
                    f"{source} changed while it was copied into the store; nothing was installed. "
                    "Run again once nothing writes to it"
                )
            store.seal(dst, staged)
        finally:
            os.close(dst)
        layer = Layer(media_type, Digest.parse(f"sha256:{hasher.hexdigest()}"), total)
        if store.has_blob(layer):
            oscalls.host.remove(staged)
        else:
            store.install_blob(staged, layer)
    except OSError as exc:
        oscalls.host.remove(staged)
        raise_os_error(exc, f"copying {source} into the store")
        raise
    except BaseException:
        oscalls.host.remove(staged)
        raise
    return layer


def ingest_bytes(store: ModelStore, data: bytes, media_type: str) -> Layer:
    """Put *data* into the store as a blob of *media_type* (a config, a params or template layer)."""
    store.prepare()
    layer = Layer(media_type, Digest.parse(f"sha256:{hashlib.sha256(data).hexdigest()}"), len(data))
    if store.has_blob(layer):
        return layer
    staged = _staging_path(store, "bytes")
    try:
        fd = open_nofollow(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            oscalls.host.pwrite_all(fd, data, 0)
            store.seal(fd, staged)
        finally:
            os.close(fd)
        store.install_blob(staged, layer)
    except OSError as exc:
        oscalls.host.remove(staged)
        raise_os_error(exc, f"writing a {len(data)}-byte {layer.kind} blob")
    except BaseException:
        oscalls.host.remove(staged)
        raise
    return layer
