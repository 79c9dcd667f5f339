"""The public bundle API: export models to a bundle, import one, inspect or verify one.

``await aexport_bundle(["gemma3:270m"], "models.bundle")`` and
``await aimport_bundle("models.bundle")``, with blocking twins ``export_bundle`` and
``import_bundle``. In the async forms the byte work runs in a worker thread; cancelling the
awaiting task stops it at the next chunk and removes what it staged. The blocking forms (and
so the CLI) run it in the calling thread with no event loop at all: anyio is not even
imported (see docs/performance.md). Each operation is written once, as a *job factory* that
checks its arguments and returns a :class:`~..wire.sync.Job`; both twins are derived from it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..core.errors import BundleError
from ..core.layout import StrPath
from ..core.manifest import Manifest
from ..core.progress import ProgressCallback, ProgressEvent
from ..core.reference import ModelName
from ..store.store import ModelStore
from ..wire.sync import Job, in_this_thread, in_worker_thread
from .export import Exporter, ExportResult, choose_compression, export_dir, resolve_models
from .options import Compression, parse_compress, parse_split_size
from .results import BundleInfo, BundleModel, ImportResult
from .sinks import FileSink, GzipSink, PartsSink, Sink, StreamSink, ZstdSink

if TYPE_CHECKING:
    from ..wire.keys import SigningKey
    from ..wire.verify import TrustLike
    from .signed import SignatureCheck
    from .sources.detect import BundleSource, OpenedBundle

Emit = Callable[[ProgressEvent], None]

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


def _names(names: str | ModelName | Iterable[str | ModelName]) -> list[ModelName]:
    items = [names] if isinstance(names, (str, ModelName)) else list(names)
    if not items:
        raise ValueError("name at least one model to export")
    return [ModelName.of(n) for n in items]


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


def export_job(
    names: str | ModelName | Iterable[str | ModelName],
    output: StrPath | IO[bytes],
    *,
    models_dir: StrPath | None = None,
    compress: str | Compression = "auto",
    split_size: int | str | None = None,
    format: str = "ollama",
    verify: bool = True,
    sign: SigningKey | None = None,
    signature_file: StrPath | None = None,
    progress: ProgressCallback | None = None,
) -> Job[ExportResult]:
    """Write installed models to a bundle: each blob once, hashed as it is read.

    Args:
        names: models to export (``gemma3:270m``, ...); they must be complete in the store.
        output: a file path, ``"-"`` for standard output, or a writable binary file object.
            With ``format="oci"``, a path not ending in ``.tar``/``.tar.zst`` is a layout directory;
            with ``format="dir"``, the directory to write a models-directory tree into.
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        compress: ``auto`` (zstd level 1 when a sample of the weights shrinks by 2% or more),
            ``none``, ``zstd``, ``zstd:LEVEL``, ``gzip`` (level 1) or ``gzip:LEVEL``.
        split_size: write ``FILE.000``, ``FILE.001``, ... of at most this size (``"4G"``, bytes).
        format: ``ollama`` (tar with an index), ``oci`` (OCI image layout) or ``dir`` (a plain
            models directory: blobs first, manifests last; every blob hashed, always).
        verify: hash every blob on the way (a corrupt store blob stops the export).
        progress: called with :class:`Status` and :class:`LayerProgress` events.
        sign: sign the bundle (an OpenSSF Model Signing signature over every manifest and every blob
            they name, in the index); no second hashing pass, blob names are digests.
        signature_file: with *sign*, also write the signature to this file (detached: for
            ``model_signing verify``, auditors, or a bundle read by another tool). ``format="dir"``
            writes it to ``DIR/model.sig`` unless this says where; ``format="oci"`` needs it.

    Raises:
        ModelNotFound: a name is not installed. StoreError: a model is incomplete or unreadable.
        IntegrityError: a store blob is corrupt. InsufficientSpace: the output does not fit.
        BundleError: the output cannot be used. ValueError: bad options.
    """
    refs = _names(names)
    comp = parse_compress(compress)
    part = parse_split_size(split_size) if split_size else None
    if format not in ("ollama", "oci", "dir"):
        raise ValueError(f"format must be 'ollama', 'oci' or 'dir', not {format!r}")
    if (part and not isinstance(output, (str, os.PathLike))) or (part and output == "-"):
        raise ValueError("split parts need a file name for -o, not standard output")
    is_path = isinstance(output, (str, os.PathLike)) and output != "-"
    if format == "dir" and (not is_path or part or comp.kind not in ("auto", "none")):
        raise ValueError(
            "--format dir writes a directory tree: give a directory for -o, without --split-size or --compress"
        )
    oci_dir = format == "oci" and is_path and not str(output).endswith((".tar", ".tar.zst", ".tar.gz", ".tgz"))
    if oci_dir and (part or comp.kind in ("zstd", "gzip")):
        raise ValueError("an OCI layout directory cannot be split or compressed; name the output FILE.tar")
    if signature_file is not None and sign is None:
        raise ValueError("a signature file is written when signing: give the key (sign=, --sign KEY)")
    if sign is not None and format == "oci" and signature_file is None:
        raise ValueError("an OCI layout has no place for the signature: say where to write it (--signature FILE)")
    store = ModelStore(models_dir)

    def work(cancel: threading.Event, emit: Emit) -> ExportResult:
        result = _export(cancel, emit)
        if sign is None:
            return result
        kind = "certificate-bound key" if sign.certificates else "key"
        return dataclasses.replace(result, signer=f"{kind} {sign.public_key.fingerprint}")

    def _export(cancel: threading.Event, emit: Emit) -> ExportResult:
        started = time.monotonic()
        models = resolve_models(store, refs)
        signature = _sign(sign, models) if sign is not None else None
        if format == "dir":
            assert isinstance(output, (str, os.PathLike))
            where = Path(signature_file) if signature_file is not None else None
            return export_dir(
                store, models, Path(output), emit=emit, cancel=cancel, signature=signature, signature_file=where
            )
        exporter = Exporter(
            store, models, verify=verify, emit=emit, cancel=cancel, signatures=(signature,) if signature else ()
        )
        chosen = comp
        if comp.kind == "auto":
            chosen = Compression("none") if format == "oci" else choose_compression(store, models)[0]
        if oci_dir:
            assert isinstance(output, (str, os.PathLike))
            exporter.write_oci_dir(Path(output))
            detached = _detached(signature, signature_file)
            return ExportResult(
                tuple(n for n, _ in models),
                exporter.blobs,
                exporter.bytes_in,
                exporter.bytes_in,
                "none",
                "oci",
                (str(output),),
                time.monotonic() - started,
                signature_file=detached,
            )
        inner = _sink(output, part)
        sink: Sink = inner
        if chosen.kind == "zstd":
            sink = ZstdSink(inner, chosen.level)
        elif chosen.kind == "gzip":
            sink = GzipSink(inner, chosen.level)
        try:
            exporter.write_tar(sink, oci=format == "oci")
            paths = sink.commit()
        except BaseException:
            sink.abort()
            raise
        detached = _detached(signature, signature_file)
        return ExportResult(
            tuple(n for n, _ in models),
            exporter.blobs,
            exporter.bytes_in,
            inner.bytes_written,
            str(chosen),
            format,
            tuple(paths),
            time.monotonic() - started,
            signature_file=detached,
        )

    return Job(work, progress)


aexport_bundle = in_worker_thread(export_job, "aexport_bundle")
export_bundle = in_this_thread(export_job, "export_bundle", "aexport_bundle")


def _sign(key: SigningKey, models: Sequence[tuple[ModelName, Manifest]]) -> bytes:
    from ..wire.oms import sign_models

    return sign_models(key, models)


def _detached(signature: bytes | None, path: StrPath | None) -> str | None:
    if signature is None or path is None:
        return None
    from .signed import write_detached

    return write_detached(signature, Path(path))


# -- import, verify, inspect ----------------------------------------------------------


def run_importer(
    source: BundleSource,
    store: ModelStore | None,
    install: bool,
    cancel: threading.Event,
    emit: Emit,
    *,
    names: Sequence[ModelName] = (),
    rename: ModelName | None = None,
    manifests_last: bool = False,
    trust: TrustLike = None,
    signature: bytes | StrPath | None = None,
) -> ImportResult:
    """One import (*install*) or verification of *source* into (or against) *store*."""
    from .importer import END_SLACK, Importer  # the import machinery loads only for imports and verifications
    from .sources.detect import OpenedBundle

    opened = OpenedBundle(source, names)
    try:
        check = _signature_check(opened, trust, signature, bool(names))
        importer = Importer(
            store,
            install=install,
            emit=emit,
            cancel=cancel,
            rename=rename,
            manifests_last=manifests_last,
            signature=check,
        )
        result = importer.run(
            opened.members,
            opened.bounded,
            label=opened.label,
            compression=opened.compression,
            directory=opened.oci_dir is not None,
            ended=opened.stream.ended if opened.stream is not None else "",
        )
        if opened.stream is not None:
            opened.stream.drain(END_SLACK)
        if opened.models_dir is not None:
            result = dataclasses.replace(result, format="models-dir")
        if check is not None and check.verified is not None:
            result = dataclasses.replace(result, signer=check.signer)
            if install and store is not None:
                from .signed import keep_signature

                keep_signature(store, check, importer.st.manifests.values())
        return result
    finally:
        opened.close()


def _signature_check(
    opened: OpenedBundle, trust: TrustLike, signature: bytes | StrPath | None, some: bool
) -> SignatureCheck | None:
    """The signature check of an import, when trust is configured or a signature given (see .signed)."""
    if trust is None:
        if signature is not None:
            raise ValueError("a signature is checked against whom you trust: give trust= (--trust or --trust-ca)")
        return None
    from ..pulling.provenance import read_signature
    from .signed import DETACHED_NAME, SignatureCheck

    raw = signature if isinstance(signature, bytes) else read_signature(signature) if signature is not None else None
    if raw is None and opened.models_dir is not None:
        beside = opened.models_dir.root / DETACHED_NAME  # where --format dir puts it
        raw = read_signature(beside) if beside.is_file() else None
    return SignatureCheck(trust, [raw] if raw is not None else [], exact=not some)


def import_job(
    source: BundleSource,
    *,
    models_dir: StrPath | None = None,
    names: Iterable[str | ModelName] = (),
    as_name: str | ModelName | None = None,
    trust: TrustLike = None,
    signature: bytes | StrPath | None = None,
    progress: ProgressCallback | None = None,
) -> Job[ImportResult]:
    """Install the models of a bundle, verifying every byte; never needs the whole bundle on disk.

    Args:
        source: a bundle file (tar, plain, zstd or gzip: ours, a ``tar`` of a models directory
            or an ollamazip archive), its first part ``FILE.000`` (the rest are found), ``"-"``
            for standard input, a readable binary file object, an OCI layout directory or tar,
            or another Ollama models directory (a USB or NFS copy of ``~/.ollama/models``).
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        names: with a models directory as *source*, import only these models (default: all).
        as_name: install the bundle's only model under this name (a bundle of several is refused).
        progress: called with :class:`Status` and :class:`LayerProgress` events.
        trust: a :class:`Trust` (every model must be signed by one of its keys or CAs) or a
            :class:`TrustPolicy` (per name pattern). The signature (in the bundle's index, or
            *signature*) is checked before anything is written; the signer is in the result and
            the signature is kept in the store with the models.
        signature: a detached OMS signature (its bytes or its file): for a bundle without one, or
            without an index (a models directory's ``model.sig`` is used by itself).

    Raises:
        SignatureError: trust is configured and the bundle is unsigned, altered, or not signed by
            a key or CA you trust (nothing was written).
        BundleError: a refused, damaged or truncated bundle (models completed before the
            problem stay installed; nothing else in the store changes).
        ModelNotFound: a name in *names* is not in the source directory.
        StoreError, InsufficientSpace: the store cannot take the models.
        ValueError: *names* with a source that is not a models directory.
    """
    store = ModelStore(models_dir)
    picked = [ModelName.of(n) for n in names]
    rename = ModelName.of(as_name) if as_name is not None else None
    if rename is not None and rename.digest is not None:
        raise ValueError(f"--as takes a name without a digest, not {rename.display!r}")
    fresh = not store.root.exists()

    def work(cancel: threading.Event, emit: Emit) -> ImportResult:
        try:
            return run_importer(
                source, store, True, cancel, emit, names=picked, rename=rename, trust=trust, signature=signature
            )
        except BaseException:
            if fresh:  # a refused bundle leaves no empty store behind where there was none
                store.remove_if_empty()
            raise

    return Job(work, progress)


aimport_bundle = in_worker_thread(import_job, "aimport_bundle")
import_bundle = in_this_thread(import_job, "import_bundle", "aimport_bundle")


def verify_job(
    source: BundleSource,
    *,
    models_dir: StrPath | None = None,
    progress: ProgressCallback | None = None,
    trust: TrustLike = None,
    signature: bytes | StrPath | None = None,
) -> Job[ImportResult]:
    """Read a whole bundle and check it as an import would, writing nothing.

    Blobs a manifest needs but the bundle lacks are looked up in *models_dir* when given. With
    *trust* (and *signature*), its signature is checked as :func:`aimport_bundle` checks it.

    Raises:
        BundleError: the first problem found. SignatureError: see :func:`aimport_bundle`.
    """
    store = ModelStore(models_dir) if models_dir is not None else None
    return Job(
        lambda cancel, emit: run_importer(source, store, False, cancel, emit, trust=trust, signature=signature),
        progress,
    )


averify_bundle = in_worker_thread(verify_job, "averify_bundle")
verify_bundle = in_this_thread(verify_job, "verify_bundle", "averify_bundle")


def inspect_job(source: BundleSource) -> Job[BundleInfo]:
    """The models and blobs of a bundle, from its index (a bundle without one is read through).

    Raises:
        BundleError: not a bundle, or a damaged one.
    """
    from .inspect import inspect_source

    return Job(lambda cancel, emit: inspect_source(source, cancel, emit))


ainspect_bundle = in_worker_thread(inspect_job, "ainspect_bundle")
inspect_bundle = in_this_thread(inspect_job, "inspect_bundle", "ainspect_bundle")
