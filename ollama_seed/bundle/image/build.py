"""Building a model image: the plan, the layers streamed into a target, then configs, manifests and the index.

:class:`ImagePlan` decides everything that does not need the bytes (the layers, their order and
sizes, the platforms); :meth:`ImagePlan.documents` turns the built layers into the JSON
documents. :func:`build_to` writes an image into a layout directory or archive; pushing (in
:mod:`bundle.image.push`) streams the same layers into a registry instead.

The same models, base, options and mtime always give the same bytes, so the same digests: the
layers are deterministic tars, the JSON is canonical (sorted keys, no spaces), and every time in
them is the mtime (``--mtime``, default ``$SOURCE_DATE_EPOCH``, else 0).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...core.digest import Digest
from ...core.errors import BundleError, ConfigError
from ...core.manifest import Manifest
from ...core.ocidoc import Descriptor
from ...core.ociimage import (
    ANNOTATION_LAYER,
    CONFIG_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    PlannedLayer,
    Platform,
    descriptor,
    encode_json,
    image_config,
    image_index,
    image_manifest,
    plan_layers,
)
from ...core.progress import ProgressEvent, Status
from ...core.reference import ModelName
from ...store.store import ModelStore
from ..options import Compression
from .base import BaseImage
from .layers import LayerCache, LayerDigests, LayerStream, media_type
from .layout import ArchiveTarget, LayoutTarget, compressed_bound

if TYPE_CHECKING:
    from ...wire.keys import SigningKey

__all__ = ["BuildOptions", "BuiltLayer", "ImagePlan", "ImageResult", "build_to", "default_mtime"]


def default_mtime() -> int:
    """``$SOURCE_DATE_EPOCH`` (the reproducible-builds convention), else 0.

    Raises:
        ConfigError: SOURCE_DATE_EPOCH is set but not a whole number of seconds.
    """
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise ConfigError(f"SOURCE_DATE_EPOCH={text!r} is not a whole number of seconds since 1970")
    return int(text)


@dataclass(frozen=True, slots=True)
class BuildOptions:
    models_path: str = "/models"
    layering: str = "per-blob"
    max_layers: int | None = None
    compression: Compression = field(default_factory=lambda: Compression("none"))
    mtime: int = 0
    platforms: tuple[Platform, ...] = ()
    verify: bool = True


@dataclass(frozen=True, slots=True)
class BuiltLayer:
    """One layer of the image: what it holds (blob digests, ``manifests`` or a base layer's), as stored."""

    label: str
    digest: Digest
    size: int
    diff_id: Digest
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return descriptor(self.media_type, self.digest, self.size, annotations={ANNOTATION_LAYER: self.label})


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a build wrote. *digest* is the image index's (deploy by it); *platforms* each manifest's."""

    models: tuple[ModelName, ...]
    digest: Digest
    platforms: tuple[tuple[str, Digest], ...]
    layers: tuple[BuiltLayer, ...]
    target: str
    refs: tuple[str, ...]
    bytes_written: int
    elapsed: float
    uploaded: tuple[Digest, ...] = ()
    mounted: tuple[Digest, ...] = ()
    existing: tuple[Digest, ...] = ()


@dataclass
class Document:
    """A JSON blob of the image, in the order a registry must receive them (configs, manifests, index)."""

    media_type: str
    raw: bytes
    digest: Digest = field(init=False)

    def __post_init__(self) -> None:

        self.digest = Digest.of(self.raw)


class ImagePlan:
    """Everything about an image that does not need the bytes of its layers."""

    def __init__(
        self, models: Sequence[tuple[ModelName, Manifest]], options: BuildOptions, base: BaseImage | None = None
    ) -> None:
        self.models = list(models)
        self.names = [name for name, _ in models]
        self.options = options
        self.base = base
        self.platforms = tuple(p.platform for p in base.platforms) if base else options.platforms
        self.layers: list[PlannedLayer] = plan_layers(
            models,
            models_path=options.models_path,
            layering=options.layering,
            max_layers=options.max_layers,
            base_layers=max((len(p.layers) for p in base.platforms), default=0) if base else 0,
        )
        self.media_type = media_type(options.compression)

    def stream(
        self,
        store: ModelStore,
        layer: PlannedLayer,
        *,
        pool: concurrent.futures.Executor,
        emit: Callable[[ProgressEvent], None],
        label: str,
        cancel: threading.Event | None = None,
    ) -> LayerStream:
        """The bytes of one of this plan's layers, read from *store* (see bundle.image.layers)."""
        opts = self.options
        return LayerStream(
            store,
            layer,
            mtime=opts.mtime,
            compression=opts.compression,
            verify=opts.verify,
            pool=pool,
            emit=emit,
            label=label,
            cancel=cancel,
        )

    def largest(self) -> int:
        """Bytes of the largest layer, uncompressed (what a registry's per-layer cap is checked against)."""
        return max(layer.size(self.options.mtime) for layer in self.layers)

    def documents(self, built: Sequence[BuiltLayer]) -> tuple[list[Document], list[Document], Document]:
        """Per platform its config and its manifest, and the index over them."""
        configs: list[Document] = []
        manifests: list[Document] = []
        children: list[tuple[Platform, Digest, int]] = []
        for i, platform in enumerate(self.platforms):
            below = self.base.platforms[i] if self.base else None
            config = image_config(
                platform,
                [layer.diff_id for layer in built],
                [layer.label for layer in built],
                mtime=self.options.mtime,
                models_path=self.options.models_path,
                models=self.names,
                base=below.config if below else None,
            )
            cdoc = Document(CONFIG_MEDIA_TYPE, encode_json(config))
            manifest = image_manifest(
                descriptor(CONFIG_MEDIA_TYPE, cdoc.digest, len(cdoc.raw)),
                [*(d.doc() for d in (below.layers if below else ())), *(layer.descriptor() for layer in built)],
                mtime=self.options.mtime,
                models=self.names,
                base=(self.base.name, self.base.digest) if self.base else None,
            )
            mdoc = Document(MANIFEST_MEDIA_TYPE, encode_json(manifest))
            configs.append(cdoc)
            manifests.append(mdoc)
            children.append((platform, mdoc.digest, len(mdoc.raw)))
        index = Document(INDEX_MEDIA_TYPE, encode_json(image_index(children, models=self.names)))
        return configs, manifests, index

    def refs(self, tag: str, manifests: Sequence[Document], index: Document) -> dict[str, dict[str, Any]]:
        """Layout refs: TAG for the index, TAG-os-arch for each platform's manifest (umoci unpacks one of those)."""
        refs = {tag: descriptor(INDEX_MEDIA_TYPE, index.digest, len(index.raw))}
        pairs = [(p.os, p.architecture) for p in self.platforms]
        for platform, mdoc in zip(self.platforms, manifests, strict=True):
            name = f"{tag}-{platform.os}-{platform.architecture}"
            if pairs.count((platform.os, platform.architecture)) > 1 and platform.variant:
                name += f"-{platform.variant}"
            refs[name] = descriptor(MANIFEST_MEDIA_TYPE, mdoc.digest, len(mdoc.raw), platform=platform.doc())
        return refs


def build_to(
    store: ModelStore,
    plan: ImagePlan,
    target: LayoutTarget | ArchiveTarget,
    tag: str,
    *,
    emit: Callable[[ProgressEvent], None],
    cancel: threading.Event,
    sign: SigningKey | None = None,
) -> ImageResult:
    """Write the image of *plan* into *target* under *tag*; on any failure the target is left as it was.

    With *sign*, the index and each platform's manifest get a cosign signature (see :mod:`.trusted`)."""
    started = time.monotonic()
    opts = plan.options
    cache = LayerCache(store)
    built: list[BuiltLayer] = []
    written = 0
    label = plan.names[0].display if len(plan.names) == 1 else f"{len(plan.names)} models"
    try:
        if plan.base is not None:
            written += copy_base_layers(plan.base, target, emit, label)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ollama-seed-hash") as pool:
            for layer in plan.layers:
                emit(Status(label, f"layer {layer.label[:19]}"))
                known = cache.get(layer, opts.mtime, opts.compression)
                if known is not None and target.has(known.digest, known.size):
                    built.append(BuiltLayer(layer.label, known.digest, known.size, known.diff_id, plan.media_type))
                    continue
                stream = plan.stream(store, layer, pool=pool, emit=emit, label=label, cancel=cancel)
                if isinstance(target, ArchiveTarget) and opts.compression.kind != "none":
                    digest, size = target.put(stream.chunks(), None, compressed_bound(stream.total))
                elif isinstance(target, ArchiveTarget):
                    digest, size = target.put(stream.chunks(), stream.total)
                else:
                    digest, size = target.put(stream.chunks())
                stream.finished()
                assert stream.result is not None and stream.result.digest == digest
                written += size
                cache.put(layer, opts.mtime, opts.compression, LayerDigests(digest, size, stream.result.diff_id))
                built.append(BuiltLayer(layer.label, digest, size, stream.result.diff_id, plan.media_type))
        configs, manifests, index = plan.documents(built)
        for doc in (*configs, *manifests, index):
            target.put_bytes(doc.raw)
            written += len(doc.raw)
        refs = plan.refs(tag, manifests, index)
        if sign is not None:
            from .trusted import sign_documents

            emit(Status(label, f"signing with {sign.public_key.fingerprint}"))
            subjects = [Descriptor(INDEX_MEDIA_TYPE, index.digest, len(index.raw), {})]
            subjects += [Descriptor(MANIFEST_MEDIA_TYPE, m.digest, len(m.raw), {}) for m in manifests]
            refs = {**refs, **sign_documents(sign, subjects, target.put_bytes, target.tagged)}
        target.commit(refs)
    except BaseException:
        target.abort()
        raise
    finally:
        cache.save()
    emit(Status(label, "success"))
    return ImageResult(
        tuple(plan.names),
        index.digest,
        tuple((str(p), m.digest) for p, m in zip(plan.platforms, manifests, strict=True)),
        tuple(built),
        str(target.path if isinstance(target, ArchiveTarget) else target.root),
        tuple(refs),
        written,
        time.monotonic() - started,
    )


def _file_chunks(path: os.PathLike[str] | str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def copy_base_layers(
    base: BaseImage, target: LayoutTarget | ArchiveTarget, emit: Callable[[ProgressEvent], None], label: str
) -> int:
    """The base's layers into *target* unchanged (from its layout, or downloaded); bytes written. In a worker thread."""
    import anyio.from_thread

    written = 0
    for desc in base.layers:
        if target.has(desc.digest, desc.size):
            continue
        emit(Status(label, f"base layer {desc.digest.short}"))
        file = anyio.from_thread.run(base.source.layer, desc)
        try:
            if isinstance(target, ArchiveTarget):
                digest, size = target.put(_file_chunks(file.path), desc.size)
            else:
                digest, size = target.put(_file_chunks(file.path))
        finally:
            file.release()
        if digest != desc.digest or size != desc.size:
            raise BundleError(f"base layer {desc.digest} of {base.name} hashes to {digest}; the base is damaged")
        written += size
    return written
