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
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zstandard

from ...core.digest import Digest
from ...core.ociimage import END_OF_ARCHIVE, LAYER_MEDIA_TYPES, PlannedLayer, padding, tar_header
from ...core.progress import LayerProgress, ProgressEvent, no_progress
from ...store.fsutil import atomic_write
from ...store.gc import LAYER_MEMO
from ...store.store import ModelStore
from ..buffer_ring import BufferRing, Cancelled, open_blob
from ..options import Compression
from ..sources.streams import CHUNK

__all__ = ["Cancelled", "LayerCache", "LayerDigests", "LayerStream", "media_type"]

PROGRESS_STEP = 16 * CHUNK
MAX_CACHE = 10_000


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
        self.path = store.layout.state_dir / LAYER_MEMO
        self.entries: dict[str, list[object]] = {}
        self.dirty = False
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(self.path.read_bytes())
            if isinstance(doc, dict):
                self.entries = doc

    @staticmethod
    def key(layer: PlannedLayer, mtime: int, compression: Compression) -> str | None:
        """``<blob digest>|...``: ``prune`` drops the entries whose blob left the store (``store.gc``)."""
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
        fd, _ = open_blob(path, size)
        try:
            reported = 0
            remedy = "run 'ollama-seed verify' and pull the model again"
            for chunk in self.ring.read_blob(
                fd, path, digest, size, verify=self.verify, cancel=self.cancel, remedy=remedy
            ):
                yield chunk
                if self.done - reported >= PROGRESS_STEP:
                    reported = self.done
                    self._progress()
        finally:
            os.close(fd)

    def _progress(self, *, done: bool = False) -> None:
        self.emit(LayerProgress(self.label, self.layer.label[:80], "", self.total, self.done, done=done))

    def finished(self) -> None:
        self.done = self.total
        self._progress(done=True)
