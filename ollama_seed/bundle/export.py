"""Export: models from the store into a bundle stream (or an OCI layout), each blob once, verified on the way.

Member order is what lets an importer work as a stream: the index first, then per model
the blobs not yet written, then its manifest. Every blob is hashed while it is read from
the store (in a helper thread, alongside the write), so a corrupt store blob stops the
export here instead of failing an import on the far side of an air gap.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..__about__ import __version__
from ..core.digest import Digest
from ..core.errors import SeedError, StoreError
from ..core.manifest import Layer, Manifest
from ..core.ociimage import END_OF_ARCHIVE, padding, tar_header
from ..core.progress import LayerProgress, ProgressEvent, Status, no_progress
from ..core.reference import ModelName
from ..store import oscalls
from ..store.fsutil import ensure_dir, open_nofollow, raise_os_error, remove_tree
from ..store.store import ModelStore
from .buffer_ring import BufferRing, open_blob
from .format.index import BundleIndex
from .format.names import INDEX_MEMBER
from .options import DEFAULT_ZSTD_LEVEL, Compression
from .sinks import FileSink, Sink
from .sources.streams import CHUNK

__all__ = ["AUTO_MIN_SAVING", "ExportResult", "Exporter", "choose_compression", "export_dir"]

AUTO_MIN_SAVING = 0.02
SAMPLE_WINDOW = 4 * 1024 * 1024
PROGRESS_STEP = 16 * CHUNK
TOOL = f"ollama-seed {__version__}"


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote. *paths* are the files (or the directory) written; empty for a stream."""

    models: tuple[ModelName, ...]
    blobs: int
    bytes_in: int
    bytes_out: int
    compression: str
    format: str
    paths: tuple[str, ...]
    elapsed: float
    signer: str | None = None
    """With ``sign=``: the signing key's fingerprint (``sha256:...``), or its certificate's subject."""
    signature_file: str | None = None
    """With ``sign=``: where the detached signature was written, if it was."""


def choose_compression(store: ModelStore, models: Sequence[tuple[ModelName, Manifest]]) -> tuple[Compression, float]:
    """``auto``: zstd level 1 if sampled windows of the largest blob shrink by 2% or more, else none.

    Measured (docs/performance.md): quantized GGUF weights shrink about 5-6% at level 1 at
    about 1 GB/s, level 3 adds only 0.3%; random data does not shrink at all.
    """
    blobs = {layer.digest: layer for _, m in models for layer in m.blobs}
    if not blobs:
        return Compression("none"), 0.0
    largest = max(blobs.values(), key=lambda layer: layer.size)
    windows = sorted({0, max(0, largest.size // 2 - SAMPLE_WINDOW // 2), max(0, largest.size - SAMPLE_WINDOW)})
    raw = packed = 0
    cctx = zstandard.ZstdCompressor(level=DEFAULT_ZSTD_LEVEL)
    try:
        fd = open_nofollow(store.layout.blob(largest.digest), os.O_RDONLY)
    except OSError:
        return Compression("zstd", DEFAULT_ZSTD_LEVEL), 0.0
    try:
        for offset in windows:
            data = oscalls.host.pread(fd, SAMPLE_WINDOW, offset)
            raw += len(data)
            packed += len(cctx.compress(data))
    finally:
        os.close(fd)
    saving = 1 - packed / raw if raw else 0.0
    if raw < 64 * 1024:  # tiny models: text layers dominate, and they compress
        return Compression("zstd", DEFAULT_ZSTD_LEVEL), saving
    return (Compression("zstd", DEFAULT_ZSTD_LEVEL) if saving >= AUTO_MIN_SAVING else Compression("none")), saving


def resolve_models(store: ModelStore, names: Sequence[ModelName]) -> list[tuple[ModelName, Manifest]]:
    """The installed models *names* (each once), refusing incomplete ones.

    Raises:
        ModelNotFound: a name that is not installed.
        StoreError: a model with a missing blob.
    """
    out: list[tuple[ModelName, Manifest]] = []
    seen: set[ModelName] = set()
    for name in names:
        model = store.get_complete(name, before="exporting it")
        if model.name in seen:
            continue
        seen.add(model.name)
        out.append((model.name, model.manifest))
    return out


def export_dir(
    store: ModelStore,
    models: list[tuple[ModelName, Manifest]],
    root: Path,
    *,
    emit: Callable[[ProgressEvent], None],
    cancel: threading.Event,
    signature: bytes | None = None,
    signature_file: Path | None = None,
) -> ExportResult:
    """``--format dir``: *models* into a plain models-directory tree at *root* (what rsync users want).

    It is an import of the store into *root*: every blob hashed while staged there, blobs
    already in *root* not read, every blob before any manifest, manifests atomically. When
    *root* did not exist or was empty, our state directory is removed from it afterwards (but
    for the signatures kept there). A *signature* goes to *signature_file*, by default
    ``root/model.sig``, where ``model_signing verify key ROOT --signature ROOT/model.sig`` and
    ``ollama-seed import ROOT --trust KEY`` find it, and is kept in *root* with each model.
    """
    from .importer import Importer  # only this export needs the import machinery
    from .sources.models_dir import ModelsDirMembers

    started = time.monotonic()
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} exists and is not a directory; give a directory for --format dir")
    if root.is_dir() and os.path.samefile(root, store.root):
        raise StoreError(f"{root} is the store the models come from; give another directory")
    fresh = not root.exists() or not any(root.iterdir())
    dest = ModelStore(root)
    source = ModelsDirMembers(store.root, [name for name, _ in models])
    try:
        importer = Importer(dest, install=True, emit=emit, cancel=cancel, manifests_last=True)
        result = importer.run(source, None, label=str(store.root), compression="none")
    finally:
        source.close()
    written = None
    if signature is not None:
        from .signed import DETACHED_NAME, keep_detached

        written = keep_detached(dest, signature, signature_file or root / DETACHED_NAME, [m for _, m in models])
    if fresh:
        for child in dest.layout.state_dir.iterdir() if signature is not None else [dest.layout.state_dir]:
            if child != dest.layout.signatures_dir:
                remove_tree(child)
    total = sum(len(m.raw) + sum(layer.size for layer in m.blobs) for _, m in models)
    return ExportResult(
        tuple(name for name, _ in models),
        result.blobs_written,
        total,
        result.bytes_written,
        "none",
        "dir",
        (str(root),),
        time.monotonic() - started,
        signature_file=written,
    )


class Exporter:
    """Writes one bundle."""

    def __init__(
        self,
        store: ModelStore,
        models: list[tuple[ModelName, Manifest]],
        *,
        verify: bool = True,
        emit: Callable[[ProgressEvent], None] | None = None,
        cancel: threading.Event | None = None,
        signatures: tuple[bytes, ...] = (),
    ) -> None:
        self.store, self.models, self.verify = store, models, verify
        self.signatures = signatures  # OMS signatures for the index (see .signed)
        self.emit = emit or no_progress
        self.cancel = cancel
        self.ring = BufferRing(None)
        self.blobs = 0
        self.bytes_in = 0

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ollama-seed-hash")

    # -- tar stream -------------------------------------------------------------------
    def write_tar(self, sink: Sink, *, oci: bool = False) -> None:
        """The whole bundle (ollama-seed format, or an OCI layout as tar) into *sink*; not committed."""
        from .format.oci import encode_index, encode_layout, oci_twin  # loaded only for OCI output

        now = time.time()
        with self._pool() as pool:
            self.ring = BufferRing(pool)
            if oci:
                self._member(sink, "oci-layout", encode_layout(), now)
                self._member(sink, "index.json", encode_index(self.models, created_by=TOOL), now)
            else:
                created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                index = BundleIndex.build(self.models, created_by=TOOL, created=created, signatures=self.signatures)
                self._member(sink, INDEX_MEMBER, index.encode(), now)
            written: set[Digest] = set()
            for name, manifest in self.models:
                self.emit(Status(name.display, "exporting"))
                mtime = self._mtime(name, now)
                if oci:
                    twin = oci_twin(manifest)
                    self._member(sink, f"blobs/sha256/{manifest.digest.hex}", manifest.raw, mtime)
                    self._member(sink, f"blobs/sha256/{hashlib.sha256(twin).hexdigest()}", twin, mtime)
                for layer in manifest.blobs:
                    if layer.digest not in written:
                        written.add(layer.digest)
                        path = f"blobs/sha256/{layer.digest.hex}" if oci else f"blobs/{layer.digest.filename}"
                        self._blob(name, layer, path, sink)
                if not oci:
                    self._member(sink, "manifests/" + "/".join(name.path_parts), manifest.raw, mtime)
                self.bytes_in += len(manifest.raw)
                self.emit(Status(name.display, "success"))
            sink.write(END_OF_ARCHIVE)

    def _mtime(self, name: ModelName, default: float) -> float:
        try:
            return os.lstat(self.store.layout.manifest(name)).st_mtime
        except OSError:
            return default

    def _member(self, sink: Sink, path: str, data: bytes, mtime: float) -> None:
        sink.write(tar_header(path, len(data), mtime=int(mtime)))
        sink.write(data)
        sink.write(bytes(padding(len(data))))

    def _blob(self, name: ModelName, layer: Layer, path: str, sink: Sink) -> None:
        fd, mtime = self._open_blob(layer)
        try:
            sink.write(tar_header(path, layer.size, mtime=int(mtime)))
            self._copy(name, layer, fd, sink)
            sink.write(bytes(padding(layer.size)))
        finally:
            os.close(fd)

    def _open_blob(self, layer: Layer) -> tuple[int, float]:
        return open_blob(self.store.layout.blob(layer.digest), layer.size)

    def _copy(self, name: ModelName, layer: Layer, fd: int, sink: Sink) -> None:
        path = self.store.layout.blob(layer.digest)
        remedy = f"run 'ollama-seed pull {name.display}' to repair it"
        done, reported = 0, 0
        try:
            for chunk in self.ring.read_blob(
                fd, path, layer.digest, layer.size, verify=self.verify, cancel=self.cancel, remedy=remedy
            ):
                sink.write(chunk)
                done += len(chunk)
                if done - reported >= PROGRESS_STEP:
                    reported = done
                    self.emit(LayerProgress(name.display, str(layer.digest), layer.media_type, layer.size, done))
        except OSError as exc:
            if isinstance(exc, SeedError):  # StoreError and InsufficientSpace are OSErrors too
                raise
            raise_os_error(exc, f"writing {layer.digest} into the bundle")
        self.blobs += 1
        self.bytes_in += layer.size
        self.emit(LayerProgress(name.display, str(layer.digest), layer.media_type, layer.size, layer.size, done=True))

    # -- OCI directory ----------------------------------------------------------------
    def write_oci_dir(self, root: Path) -> None:
        """An OCI image layout directory at *root* (absent or empty); removed again on failure."""
        from .format.oci import encode_index, encode_layout, oci_twin

        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise StoreError(f"{root} exists and is not an empty directory; choose a new directory for the layout")
        created_root = not root.exists()
        blob_dir = root / "blobs" / "sha256"
        ensure_dir(blob_dir)
        written: list[Path] = []
        try:
            with self._pool() as pool:
                self.ring = BufferRing(pool)
                seen: set[Digest] = set()
                for name, manifest in self.models:
                    self.emit(Status(name.display, "exporting"))
                    for layer in manifest.blobs:
                        if layer.digest in seen:
                            continue
                        seen.add(layer.digest)
                        written.append(self._file(blob_dir / layer.digest.hex, self._blob_filler(name, layer)))
                    twin = oci_twin(manifest)
                    for raw in (manifest.raw, twin):
                        digest = Digest.of(raw)
                        if digest not in seen:
                            seen.add(digest)
                            written.append(self._file(blob_dir / digest.hex, _writer(raw)))
                    self.bytes_in += len(manifest.raw)
                    self.emit(Status(name.display, "success"))
            written.append(self._file(root / "oci-layout", _writer(encode_layout())))
            written.append(self._file(root / "index.json", _writer(encode_index(self.models, created_by=TOOL))))
        except BaseException:
            for path in written:
                oscalls.host.remove(path)
            for d in (blob_dir, root / "blobs", *([root] if created_root else [])):
                with contextlib.suppress(OSError):
                    oscalls.host.rmdir(d)
            raise

    def _blob_filler(self, name: ModelName, layer: Layer) -> Callable[[FileSink], object]:
        def fill(sink: FileSink) -> None:
            fd, _ = self._open_blob(layer)
            try:
                self._copy(name, layer, fd, sink)
            finally:
                os.close(fd)

        return fill

    @staticmethod
    def _file(path: Path, fill: Callable[[FileSink], object]) -> Path:
        sink = FileSink(path)
        try:
            fill(sink)
            sink.commit()
        except BaseException:
            sink.abort()
            raise
        return path


def _writer(data: bytes) -> Callable[[FileSink], object]:
    return lambda sink: sink.write(data)
