"""The public bundle API: export models to a bundle, import one, inspect or verify one.

``await aexport_bundle(["gemma3:270m"], "models.bundle")`` and
``await aimport_bundle("models.bundle")``, with blocking twins ``export_bundle`` and
``import_bundle``. The byte work runs in a worker thread; cancelling the awaiting task
stops it at the next chunk and removes what it staged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from ..core.digest import Digest
from ..core.errors import BundleError
from ..core.manifest import Manifest
from ..core.progress import ProgressCallback, ProgressEvent
from ..core.reference import ModelName
from ..store.store import ModelStore
from ..wire.sync import run_sync
from .export import Exporter, ExportResult, choose_compression, resolve_models
from .format import MAX_INDEX_BYTES, BundleIndex, Compression, MemberKind, parse_compress, parse_size
from .importer import END_SLACK, INITIAL_LIMIT, Importer, ImportResult
from .members import Member, MemberSource, TarMembers
from .oci import DirMembers, is_layout_dir
from .sinks import FileSink, PartsSink, Sink, StreamSink, ZstdSink
from .stream import BoundedSource, OpenedSource, open_source

__all__ = [
    "BundleInfo",
    "BundleModel",
    "ExportResult",
    "ImportResult",
    "aexport_bundle",
    "aimport_bundle",
    "ainspect_bundle",
    "averify_bundle",
    "export_bundle",
    "import_bundle",
    "inspect_bundle",
    "verify_bundle",
]

T = TypeVar("T")
StrPath = str | os.PathLike[str]
BundleSource = StrPath | IO[bytes]
Emit = Callable[[ProgressEvent], None]
CANCEL_GRACE = 10.0  # seconds to wait for the worker's clean-up (it may be blocked reading a pipe)


@dataclass(frozen=True, slots=True)
class BundleModel:
    """A model a bundle carries: name, manifest digest, and bytes of its manifest and blobs."""

    name: ModelName
    manifest_digest: Digest
    size: int
    blobs: int


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What ``bundle ls`` shows. *format* is ``ollama-seed``, ``tar`` (no index) or ``oci``;
    *size* is the bytes of blobs and manifests it carries, before tar and compression."""

    format: str
    version: int | None
    created_by: str
    created: str
    compression: str
    models: tuple[BundleModel, ...]
    blobs: tuple[tuple[Digest, int], ...]
    size: int


async def _in_thread(work: Callable[[threading.Event, Emit], T], progress: ProgressCallback | None) -> T:
    """Run *work* in a worker thread; progress events are delivered on the event loop's thread."""
    cancel, finished = threading.Event(), threading.Event()

    def emit(event: ProgressEvent) -> None:
        if progress is not None:
            anyio.from_thread.run_sync(progress, event)

    def run() -> T:
        try:
            return work(cancel, emit)
        finally:
            finished.set()

    try:
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()  # the worker stops at its next chunk and removes what it staged
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(finished.wait, CANCEL_GRACE)
        raise


def _names(names: str | ModelName | Iterable[str | ModelName]) -> list[ModelName]:
    items = [names] if isinstance(names, (str, ModelName)) else list(names)
    if not items:
        raise ValueError("name at least one model to export")
    return [n if isinstance(n, ModelName) else ModelName.parse(n) for n in items]


# -- export ---------------------------------------------------------------------------


def _sink(output: StrPath | IO[bytes], split_size: int | None) -> Sink:
    if output == "-":
        return StreamSink(None)
    if not isinstance(output, (str, os.PathLike)):
        return StreamSink(output)
    path = Path(output)
    if path.is_dir():
        raise BundleError(f"{path} is a directory; give a file name for the bundle")
    return PartsSink(path, split_size) if split_size else FileSink(path)


async def aexport_bundle(
    names: str | ModelName | Iterable[str | ModelName],
    output: StrPath | IO[bytes],
    *,
    models_dir: StrPath | None = None,
    compress: str | Compression = "auto",
    split_size: int | str | None = None,
    format: str = "ollama",
    verify: bool = True,
    progress: ProgressCallback | None = None,
) -> ExportResult:
    """Write installed models to a bundle: each blob once, hashed as it is read.

    Args:
        names: models to export (``gemma3:270m``, ...); they must be complete in the store.
        output: a file path, ``"-"`` for standard output, or a writable binary file object.
            With ``format="oci"``, a path not ending in ``.tar``/``.tar.zst`` is a layout directory.
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        compress: ``auto`` (zstd level 1 when a sample of the weights shrinks by 2% or more),
            ``none``, ``zstd`` or ``zstd:LEVEL``.
        split_size: write ``FILE.000``, ``FILE.001``, ... of at most this size (``"4G"``, bytes).
        format: ``ollama`` (tar with an index) or ``oci`` (OCI image layout).
        verify: hash every blob on the way (a corrupt store blob stops the export).
        progress: called with :class:`Status` and :class:`LayerProgress` events.

    Raises:
        ModelNotFound: a name is not installed. StoreError: a model is incomplete or unreadable.
        IntegrityError: a store blob is corrupt. InsufficientSpace: the output does not fit.
        BundleError: the output cannot be used. ValueError: bad options.
    """
    refs = _names(names)
    comp = parse_compress(compress)
    part = parse_size(split_size) if split_size else None
    if format not in ("ollama", "oci"):
        raise ValueError(f"format must be 'ollama' or 'oci', not {format!r}")
    if (part and not isinstance(output, (str, os.PathLike))) or (part and output == "-"):
        raise ValueError("split parts need a file name for -o, not standard output")
    oci_dir = format == "oci" and isinstance(output, (str, os.PathLike)) and output != "-" and \
        not str(output).endswith((".tar", ".tar.zst"))
    if oci_dir and (part or comp.kind == "zstd"):
        raise ValueError("an OCI layout directory cannot be split or compressed; name the output FILE.tar")
    store = ModelStore(models_dir)

    def work(cancel: threading.Event, emit: Emit) -> ExportResult:
        started = time.monotonic()
        models = resolve_models(store, refs)
        exporter = Exporter(store, models, verify=verify, emit=emit, cancel=cancel)
        chosen = comp
        if comp.kind == "auto":
            chosen = Compression("none") if format == "oci" else choose_compression(store, models)[0]
        if oci_dir:
            assert isinstance(output, (str, os.PathLike))
            exporter.write_oci_dir(Path(output))
            return ExportResult(tuple(n for n, _ in models), exporter.blobs, exporter.bytes_in, exporter.bytes_in,
                                "none", "oci", (str(output),), time.monotonic() - started)
        inner = _sink(output, part)
        sink: Sink = ZstdSink(inner, chosen.level) if chosen.kind == "zstd" else inner
        try:
            exporter.write_tar(sink, oci=format == "oci")
            paths = sink.commit()
        except BaseException:
            sink.abort()
            raise
        return ExportResult(tuple(n for n, _ in models), exporter.blobs, exporter.bytes_in, inner.bytes_written,
                            str(chosen), format, tuple(paths), time.monotonic() - started)

    return await _in_thread(work, progress)


def export_bundle(names: str | ModelName | Iterable[str | ModelName], output: StrPath | IO[bytes],
                  **options: Any) -> ExportResult:
    """Blocking form of :func:`aexport_bundle`; same options. Not for use inside an event loop."""
    result: ExportResult = run_sync(aexport_bundle, names, output, **options)
    return result


# -- import, verify, inspect ----------------------------------------------------------


class _Opened:
    def __init__(self, source: BundleSource) -> None:
        self.stream: OpenedSource | None = None
        self.bounded: BoundedSource | None = None
        self.directory = False
        if isinstance(source, (str, os.PathLike)) and source != "-" and Path(source).is_dir():
            path = Path(source)
            if not is_layout_dir(path):
                raise BundleError(f"{path} is a directory but not an OCI image layout (no oci-layout file)")
            self.dir_members = DirMembers(path)
            self.members: MemberSource = self.dir_members
            self.label, self.compression, self.directory = str(path), "none", True
        else:
            self.stream = open_source(source)
            self.bounded = BoundedSource(self.stream.tar, INITIAL_LIMIT)
            self.members = TarMembers(self.bounded)
            self.label, self.compression = self.stream.label, self.stream.compression

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        else:
            self.dir_members.close()


def _run_importer(source: BundleSource, store: ModelStore | None, install: bool, cancel: threading.Event,
                  emit: Emit) -> ImportResult:
    opened = _Opened(source)
    try:
        importer = Importer(store, install=install, emit=emit, cancel=cancel)
        result = importer.run(opened.members, opened.bounded, label=opened.label, compression=opened.compression,
                              directory=opened.directory)
        if opened.stream is not None:
            opened.stream.drain(END_SLACK)
        return result
    finally:
        opened.close()


async def aimport_bundle(source: BundleSource, *, models_dir: StrPath | None = None,
                         progress: ProgressCallback | None = None) -> ImportResult:
    """Install the models of a bundle, verifying every byte; never needs the whole bundle on disk.

    Args:
        source: a bundle file, its first part ``FILE.000`` (the rest are found), ``"-"`` for
            standard input, a readable binary file object, or an OCI layout directory or tar.
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        progress: called with :class:`Status` and :class:`LayerProgress` events.

    Raises:
        BundleError: a refused, damaged or truncated bundle (models completed before the
            problem stay installed; nothing else in the store changes).
        StoreError, InsufficientSpace: the store cannot take the models.
    """
    store = ModelStore(models_dir)
    return await _in_thread(lambda cancel, emit: _run_importer(source, store, True, cancel, emit), progress)


def import_bundle(source: BundleSource, **options: Any) -> ImportResult:
    """Blocking form of :func:`aimport_bundle`; same options. Not for use inside an event loop."""
    result: ImportResult = run_sync(aimport_bundle, source, **options)
    return result


async def averify_bundle(source: BundleSource, *, models_dir: StrPath | None = None,
                         progress: ProgressCallback | None = None) -> ImportResult:
    """Read a whole bundle and check it as an import would, writing nothing.

    Blobs a manifest needs but the bundle lacks are looked up in *models_dir* when given.

    Raises:
        BundleError: the first problem found.
    """
    store = ModelStore(models_dir) if models_dir is not None else None
    return await _in_thread(lambda cancel, emit: _run_importer(source, store, False, cancel, emit), progress)


def verify_bundle(source: BundleSource, **options: Any) -> ImportResult:
    """Blocking form of :func:`averify_bundle`."""
    result: ImportResult = run_sync(averify_bundle, source, **options)
    return result


class _Replay:
    """A member source with its first member already read."""

    def __init__(self, inner: MemberSource, first: Member | None) -> None:
        self.inner, self.first, self.started = inner, first, False

    def next(self) -> Member | None:
        if not self.started:
            self.started = True
            if self.first is not None:
                return self.first
        return self.inner.next()

    def readinto(self, view: memoryview) -> int:
        return self.inner.readinto(view)

    def skip(self) -> None:
        self.inner.skip()


def _inspect(source: BundleSource, cancel: threading.Event, emit: Emit) -> BundleInfo:
    opened = _Opened(source)
    try:
        importer = Importer(None, install=False, cancel=cancel)
        first = None if opened.directory else opened.members.next()
        if first is not None and first.ref.kind is MemberKind.INDEX:
            importer.members = opened.members
            index = BundleIndex.decode(importer.read_small(first, MAX_INDEX_BYTES))
            return _info_from_index(index, opened.compression)
        importer.run(_Replay(opened.members, first), opened.bounded, label=opened.label,
                     compression=opened.compression, directory=opened.directory)
    finally:
        opened.close()
    st = importer.st
    models = []
    manifest_bytes = 0
    for name in st.done:
        raw = st.manifests[name]
        manifest = Manifest.parse(raw)
        manifest_bytes += len(raw)
        models.append(BundleModel(name, manifest.digest, len(raw) + manifest.total_size, len(manifest.blobs)))
    blobs = tuple((d, b.size) for d, b in st.blobs.items() if d not in (st.oci or {}) and d not in st.oci_skip)
    return BundleInfo(st.kind, None, "", "", opened.compression, tuple(models), blobs,
                      sum(size for _, size in blobs) + manifest_bytes)


def _info_from_index(index: BundleIndex, compression: str) -> BundleInfo:
    sizes = index.blob_map
    models = tuple(BundleModel(m.name, m.manifest_digest,
                               m.manifest_size + sum(sizes[d].size for d in m.blobs if d in sizes), len(m.blobs))
                   for m in index.models)
    return BundleInfo("ollama-seed", index.version, index.created_by, index.created, compression, models,
                      tuple((b.digest, b.size) for b in index.blobs), index.size)


async def ainspect_bundle(source: BundleSource) -> BundleInfo:
    """The models and blobs of a bundle, from its index (a bundle without one is read through).

    Raises:
        BundleError: not a bundle, or a damaged one.
    """
    return await _in_thread(lambda cancel, emit: _inspect(source, cancel, emit), None)


def inspect_bundle(source: BundleSource) -> BundleInfo:
    """Blocking form of :func:`ainspect_bundle`."""
    result: BundleInfo = run_sync(ainspect_bundle, source)
    return result

