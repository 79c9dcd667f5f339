"""The bytes of an image's model layers, streamed from the store with their digests computed on the way.

A layer is never staged: :meth:`LayerStream.chunks` yields the tar (compressed or not) piece by
piece, reading each blob straight from ``blobs/``; the diff_id (sha256 of the tar) runs in the
calling thread, the check of the store blob against its own name in a helper thread alongside
it, and for a compressed layer the digest of what comes out of the compressor. Memory stays at
a few 1 MiB buffers whatever the model's size.

The digests of a single-blob layer depend only on the blob, the models path, the mtime and the
compression, so they are remembered in ``.ollama-seed/image-layers.json``: a rebuild (or a push
after a Modelfile change) knows them without reading the blob, and a registry that has the
layer is not sent it again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import stat
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zstandard

from ...core.digest import Digest
from ...core.errors import IntegrityError, StoreError
from ...core.ociimage import END_OF_ARCHIVE, LAYER_MEDIA_TYPES, PlannedLayer, padding, tar_header
from ...core.progress import LayerProgress, ProgressEvent, no_progress
from ...store import oscalls
from ...store.fsutil import atomic_write, open_nofollow, raise_os_error
from ...store.store import ModelStore
from ..buffer_ring import BufferRing
from ..options import Compression
from ..sources.streams import CHUNK

__all__ = ["Cancelled", "LayerCache", "LayerDigests", "LayerStream", "media_type"]

PROGRESS_STEP = 16 * CHUNK
CACHE_FILE = "image-layers.json"
MAX_CACHE = 10_000


class Cancelled(Exception):
    """The caller cancelled the build."""


@dataclass(frozen=True, slots=True)
class LayerDigests:
    """A finished layer: the digest and size of its bytes as stored, and its diff_id."""

    digest: Digest
    size: int
    diff_id: Digest


def media_type(compression: Compression) -> str:
    return LAYER_MEDIA_TYPES["none" if compression.kind in ("none", "auto") else compression.kind]


def _compression_key(compression: Compression) -> str:
    if compression.kind == "zstd":
        return f"zstd:{compression.level}:{zstandard.__version__}"
    if compression.kind == "gzip":
        return f"gzip:{compression.level}:{zlib.ZLIB_RUNTIME_VERSION}"
    return "none"


class LayerCache:
    """Digests of single-blob layers already built from this store (``.ollama-seed/image-layers.json``)."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.path = store.layout.state_dir / CACHE_FILE
        self.entries: dict[str, list[object]] = {}
        self.dirty = False
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(self.path.read_bytes())
            if isinstance(doc, dict):
                self.entries = doc

    @staticmethod
    def key(layer: PlannedLayer, mtime: int, compression: Compression) -> str | None:
        if len(layer.files) != 1 or layer.files[0].digest is None:
            return None
        f = layer.files[0]
        return f"{f.digest}|{f.path}|{'/'.join(layer.dirs)}|{mtime}|{_compression_key(compression)}"

    def get(self, layer: PlannedLayer, mtime: int, compression: Compression) -> LayerDigests | None:
        key = self.key(layer, mtime, compression)
        entry = self.entries.get(key) if key else None
        try:
            assert isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], int)
            return LayerDigests(Digest.parse(str(entry[0])), entry[1], Digest.parse(str(entry[2])))
        except (AssertionError, ValueError):
            return None

    def put(self, layer: PlannedLayer, mtime: int, compression: Compression, digests: LayerDigests) -> None:
        key = self.key(layer, mtime, compression)
        if key and self.entries.get(key) != [str(digests.digest), digests.size, str(digests.diff_id)]:
            if len(self.entries) >= MAX_CACHE:
                self.entries.clear()
            self.entries[key] = [str(digests.digest), digests.size, str(digests.diff_id)]
            self.dirty = True

    def save(self) -> None:
        """Write the cache (best effort: a store we may not write to only loses the shortcut)."""
        if not self.dirty or not self.store.root.is_dir():
            return
        with contextlib.suppress(OSError):  # StoreError is an OSError too
            self.store.prepare()
            atomic_write(self.path, json.dumps(self.entries).encode(), self.store.layout.tmp_dir, 0o600)
            self.dirty = False


class LayerStream:
    """One model layer's bytes from the store; after :meth:`chunks` is exhausted, :attr:`result` holds its digests."""

    def __init__(
        self,
        store: ModelStore,
        layer: PlannedLayer,
        *,
        mtime: int,
        compression: Compression,
        verify: bool = True,
        pool: concurrent.futures.Executor | None = None,
        emit: Callable[[ProgressEvent], None] | None = None,
        label: str = "image",
        cancel: threading.Event | None = None,
    ) -> None:
        self.store, self.layer, self.mtime = store, layer, mtime
        self.compression, self.verify = compression, verify
        self.ring = BufferRing(pool)
        self.emit = emit or no_progress
        self.label, self.cancel = label, cancel
        self.total = layer.size(mtime)
        self.done = 0
        self.result: LayerDigests | None = None

    def chunks(self) -> Iterator[memoryview | bytes]:
        """The layer as stored, in order. A view is valid until the next one is asked for."""
        diff = hashlib.sha256()
        out_hash = diff if self.compression.kind in ("none", "auto") else hashlib.sha256()
        size = 0
        pack = self._packer()
        for piece in self._tar():
            diff.update(piece)
            self.done += len(piece)
            packed = pack(piece) if pack is not None else piece
            if packed:
                if out_hash is not diff:
                    out_hash.update(packed)
                size += len(packed)
                yield packed
        if pack is not None:
            tail = pack(None)
            out_hash.update(tail)
            size += len(tail)
            yield tail
        self.result = LayerDigests(Digest(out_hash.hexdigest()), size, Digest(diff.hexdigest()))

    def _packer(self) -> Callable[[memoryview | bytes | None], bytes] | None:
        """A function compressing each piece (None: flush); None for an uncompressed layer."""
        if self.compression.kind == "gzip":
            comp = zlib.compressobj(self.compression.level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
            return lambda piece: comp.flush() if piece is None else comp.compress(piece)
        if self.compression.kind == "zstd":
            zobj = zstandard.ZstdCompressor(level=self.compression.level, write_checksum=True).compressobj()
            return lambda piece: zobj.flush() if piece is None else zobj.compress(piece)
        return None

    def _tar(self) -> Iterator[memoryview | bytes]:
        head = b"".join(tar_header(d, 0, mtime=self.mtime, directory=True) for d in self.layer.dirs)
        for f in self.layer.files:
            head += tar_header(f.path, f.size, mtime=self.mtime)
            if f.data is not None:
                yield head + f.data + bytes(padding(f.size))
                head = b""
                continue
            assert f.digest is not None
            yield head
            head = b""
            yield from self._blob(f.digest, f.size)
            if padding(f.size):
                yield bytes(padding(f.size))
        yield head + END_OF_ARCHIVE

    def _blob(self, digest: Digest, size: int) -> Iterator[memoryview]:
        path = self.store.layout.blob(digest)
        try:
            fd = open_nofollow(path, os.O_RDONLY)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}; run 'ollama-seed verify'") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise StoreError(f"{path} is not a {size}-byte file; run 'ollama-seed verify' and pull it again")
            with contextlib.suppress(OSError):
                oscalls.host.fadvise_sequential(fd)
            hasher = hashlib.sha256() if self.verify else None
            left, reported = size, 0
            while left:
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled
                slot, view = self.ring.take()
                try:
                    n = os.readv(fd, [view[:left] if left < len(view) else view])
                except OSError as exc:
                    raise_os_error(exc, f"reading {path}")
                    raise
                if not n:
                    raise StoreError(f"{path} shrank while it was read; is something rewriting the store?")
                chunk = view[:n]
                if hasher is not None:
                    self.ring.update(slot, hasher, chunk)
                left -= n
                yield chunk
                if self.done - reported >= PROGRESS_STEP:
                    reported = self.done
                    self._progress()
            self.ring.wait()
        finally:
            os.close(fd)
        if hasher is not None and hasher.hexdigest() != digest.hex:
            raise IntegrityError(
                f"blob {digest} in {self.store.root} is corrupt (its sha256 is {hasher.hexdigest()}); "
                "run 'ollama-seed verify' and pull the model again",
                expected=str(digest),
                actual=f"sha256:{hasher.hexdigest()}",
            )

    def _progress(self, *, done: bool = False) -> None:
        self.emit(LayerProgress(self.label, self.layer.label[:80], "", self.total, self.done, done=done))

    def finished(self) -> None:
        self.done = self.total
        self._progress(done=True)
