"""The public image API: ``build_image``, ``verify_image``, ``extract_image`` and their async twins.

``await abuild_image(["gemma3:270m"], oci_layout="img:gemma3")`` builds a model image from the
store (pulling what is missing first, unless ``offline``); ``push="registry/ns/img:tag"`` sends it
to a registry instead, ``oci_archive="img.tar"`` writes a tar of a layout. The byte work of a
layout or archive runs in a worker thread (cancelling the awaiting task stops it at the next
chunk and removes what it added); a push runs on the event loop with its file reads in threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from ...core.errors import ConfigError, ModelNotFound, OfflineError, StoreError
from ...core.layout import StrPath
from ...core.manifest import Manifest
from ...core.ociimage import parse_platforms
from ...core.progress import ProgressCallback, no_progress
from ...core.reference import ModelName
from ...store.gc import BASE_SCRATCH, LAYER_SCRATCH
from ...store.store import ModelStore
from ...wire.sync import Job, blocking, run_job
from ..export import resolve_models
from ..options import Compression, parse_compress
from .build import BuildOptions, ImagePlan, ImageResult, build_to, default_mtime
from .layout import ArchiveTarget, LayoutTarget, split_layout_arg
from .read import ImageReport

if TYPE_CHECKING:
    import httpx
    from typing_extensions import Unpack

    from ...wire.keys import SigningKey
    from ...wire.registry import Credentials
    from ...wire.verify import TrustLike

__all__ = [
    "ImagePushOptions",
    "ImageReport",
    "RegistryOptions",
    "ImageResult",
    "abuild_image",
    "aextract_image",
    "averify_image",
    "build_image",
    "extract_image",
    "verify_image",
]


class RegistryOptions(TypedDict, total=False):
    """How to reach a registry beyond its address (each optional).

    Attributes:
        credentials: ``host -> (user, password)`` (default: the environment, then ``~/.docker/config.json``).
        transport: an httpx transport (tests, custom networking).
    """

    credentials: Credentials | None
    transport: httpx.AsyncBaseTransport | None


class ImagePushOptions(RegistryOptions, total=False):
    """How :func:`abuild_image` pushes (``push=REF``): the options of ``image_push.apush_image``.

    Attributes:
        chunk_size: blobs up to this size go in one PUT, larger ones in PATCH chunks of it.
        concurrency: layers pushed at once.
        sign: a key to sign the index and each platform's manifest with (cosign signatures); also
            for an OCI layout or archive, where the signatures are referrers listed in ``index.json``.
        cosign_legacy: with *sign*, also write cosign v2's ``.sig`` simple signing.
    """

    chunk_size: int
    concurrency: int
    sign: SigningKey | None
    cosign_legacy: bool


def _names(models: str | ModelName | Iterable[str | ModelName]) -> list[ModelName]:
    items = [models] if isinstance(models, (str, ModelName)) else list(models)
    if not items:
        raise ConfigError("name at least one model to put in the image")
    return [ModelName.of(n) for n in items]


def build_options(
    *,
    platforms: str | Sequence[str] | None = None,
    models_path: str = "/models",
    layering: str = "per-blob",
    max_layers: int | None = None,
    compression: str | Compression = "none",
    mtime: int | None = None,
    verify: bool = True,
) -> BuildOptions:
    """Check the build options (raising at once, before anything is read).

    Raises:
        ConfigError: a bad option.
    """
    try:
        comp = parse_compress(compression)
    except ValueError as exc:
        raise ConfigError(f"--compression: {exc}") from None
    if comp.kind == "auto":
        comp = Compression("none")
    if max_layers is not None and max_layers < 1:
        raise ConfigError("--max-layers must be at least 1")
    if mtime is not None and mtime < 0:
        raise ConfigError("--mtime must be a whole number of seconds since 1970, not negative")
    return BuildOptions(
        models_path=models_path.rstrip("/") or "/",
        layering=layering,
        max_layers=max_layers,
        compression=comp,
        mtime=default_mtime() if mtime is None else mtime,
        platforms=parse_platforms(platforms),
        verify=verify,
    )


async def _models(
    store: ModelStore, names: list[ModelName], *, offline: bool, insecure: bool, progress: ProgressCallback | None
) -> list[tuple[ModelName, Manifest]]:
    """The models, complete in the store: missing or incomplete ones pulled first (never when *offline*)."""
    for name in names:
        try:
            model = store.get(name)
            complete = not store.missing(model.manifest)
        except ModelNotFound:
            complete = False
        if complete:
            continue
        if offline:
            raise OfflineError(
                f"{name.display} is not complete in {store.root} and --offline forbids pulling it; "
                f"run 'ollama-seed pull {name.display}' first"
            )
        from ...pulling.api import apull

        await apull(name, models_dir=store.root, insecure=insecure, progress=progress)
    return resolve_models(store, names)


async def abuild_image(
    models: str | ModelName | Iterable[str | ModelName],
    *,
    oci_layout: StrPath | None = None,
    oci_archive: StrPath | None = None,
    push: str | None = None,
    models_dir: StrPath | None = None,
    offline: bool = False,
    insecure: bool = False,
    platforms: str | Sequence[str] | None = None,
    models_path: str = "/models",
    layering: str = "per-blob",
    max_layers: int | None = None,
    compression: str | Compression = "none",
    mtime: int | None = None,
    verify: bool = True,
    base: str | None = None,
    progress: ProgressCallback | None = None,
    **push_options: Unpack[ImagePushOptions],
) -> ImageResult:
    """Build an OCI image holding *models* at ``models_path`` (default ``/models``), one layer per blob.

    Exactly one of *oci_layout* (``DIR`` or ``DIR:TAG``; the tag defaults to ``latest``),
    *oci_archive* (a tar of a layout) or *push* (``registry/repo:tag``) says where it goes.

    Args:
        models: model names in the store (pulled first when missing, unless *offline*).
        platforms: ``linux/amd64,linux/arm64`` by default: an index with one manifest per platform
            (the layers are shared; only the small configs differ).
        layering: ``per-blob`` (default) or ``single`` (everything in one layer).
        max_layers: merge the smallest blobs into one layer past this many layers.
        compression: ``none`` (default: GGUF does not compress, and the layer digest is its
            diff_id), ``gzip[:LEVEL]`` or ``zstd[:LEVEL]``.
        mtime: the time in every tar header and JSON document (default ``$SOURCE_DATE_EPOCH``, else 0).
        verify: hash every store blob while it is read (a corrupt blob stops the build).
        base: put the models on top of this image: a registry reference, or ``oci:DIR[:TAG]``;
            every platform of its index (or those *platforms* names); ``OLLAMA_MODELS`` is set.
        progress: called with :class:`Status` and :class:`LayerProgress` events.
        push_options: with *push*, how to push (:class:`ImagePushOptions`); *credentials* and
            *transport* also reach the registry of *base*.

    Raises:
        ConfigError: bad options. ModelNotFound, OfflineError: a model is not there.
        IntegrityError: a store blob is corrupt. StoreError, BundleError: the output cannot be written.
        RegistryError, AuthenticationError, TransferError: the push failed.
    """
    targets = [t for t in (oci_layout, oci_archive, push) if t is not None]
    if len(targets) != 1:
        raise ConfigError("say where the image goes: one of --push REF, --oci-layout DIR[:TAG], --oci-archive FILE")
    options = build_options(
        platforms=platforms,
        models_path=models_path,
        layering=layering,
        max_layers=max_layers,
        compression=compression,
        mtime=mtime,
        verify=verify,
    )
    names = _names(models)
    store = ModelStore(models_dir)
    sign = push_options.pop("sign", None) if push is None else None
    if push is None and push_options.pop("cosign_legacy", False):
        raise ConfigError("--cosign-legacy writes registry tags (sha256-<hex>.sig): use it with --push REF")
    if push is None and push_options:
        raise TypeError(f"unexpected options {sorted(push_options)} (they apply to push only)")
    resolved = await _models(store, names, offline=offline, insecure=insecure, progress=progress)
    base_image = None
    if base is not None:
        from .base import resolve_base

        client: RegistryOptions = {}
        if "credentials" in push_options:
            client["credentials"] = push_options["credentials"]
        if "transport" in push_options:
            client["transport"] = push_options["transport"]
        base_image = await resolve_base(
            base,
            insecure=insecure,
            scratch=store.layout.state_dir / BASE_SCRATCH,
            platforms=parse_platforms(platforms) if platforms is not None else None,
            client=client,
        )
    try:
        return await _build(
            store,
            ImagePlan(resolved, options, base_image),
            oci_layout,
            oci_archive,
            push,
            insecure,
            progress,
            push_options,
            sign,
        )
    finally:
        if base_image is not None:
            await base_image.source.aclose()


async def _build(
    store: ModelStore,
    plan: ImagePlan,
    oci_layout: StrPath | None,
    oci_archive: StrPath | None,
    push: str | None,
    insecure: bool,
    progress: ProgressCallback | None,
    push_options: ImagePushOptions,
    sign: SigningKey | None,
) -> ImageResult:
    options = plan.options
    if push is not None:
        from .push import apush_image

        return await apush_image(store, plan, push, insecure=insecure, progress=progress, **push_options)
    if oci_layout is not None:
        root, tag = split_layout_arg(os.fspath(oci_layout))
    else:
        assert oci_archive is not None
        root, tag = Path(oci_archive), "latest"
        if not root.parent.is_dir():
            raise StoreError(f"{root.parent} does not exist; create it or give another --oci-archive path")

    def work(cancel: Any, emit: Any) -> ImageResult:
        target = LayoutTarget(root) if oci_layout is not None else ArchiveTarget(root, options.mtime)
        return build_to(store, plan, target, tag, emit=emit, cancel=cancel, sign=sign)

    return await run_job(Job(work, progress))


build_image = blocking(abuild_image)


# -- verify and extract ---------------------------------------------------------------


def _source(
    ref: str | None,
    oci_layout: StrPath | None,
    oci_archive: StrPath | None,
    scratch: Path,
    insecure: bool,
    client: RegistryOptions,
) -> Any:
    if sum(x is not None for x in (ref, oci_layout, oci_archive)) != 1:
        raise ConfigError("name the image: a registry reference, --oci-layout DIR[:TAG] or --oci-archive FILE[:TAG]")
    if oci_layout is not None or oci_archive is not None:
        text = os.fspath(oci_layout if oci_layout is not None else oci_archive)  # type: ignore[arg-type]
        root, tag = split_layout_arg(text)
        picked = tag if root != Path(text) else None
        if oci_archive is not None:
            from .archive import ArchiveSource

            return ArchiveSource(root, picked)
        from .source import LayoutSource

        return LayoutSource(root, picked)
    from ...core.imageref import ImageRef
    from .source import RegistrySource

    assert ref is not None
    parsed = ImageRef.parse(ref)
    return RegistrySource(parsed, scratch, insecure=insecure or parsed.scheme == "http", **client)


async def _read(
    source: Any,
    store: ModelStore | None,
    *,
    install: bool,
    trust: TrustLike,
    models_path: str | None,
    progress: ProgressCallback | None,
) -> ImageReport:
    import dataclasses
    import threading

    from ...core.groups import raise_collapsed
    from .read import read_image

    emit = progress or no_progress
    ok = False
    try:
        resolved = await source.resolve()
        signed = None
        if trust is not None:
            from .trusted import check_image

            signed = await check_image(source, resolved[0], trust, emit)
        if store is not None:
            store.prepare()
        report = await read_image(
            source,
            store,
            install=install,
            models_path=models_path,
            emit=emit,
            cancel=threading.Event(),
            resolved=resolved,
        )
        ok = True
        return dataclasses.replace(report, signer=signed.signer) if signed is not None else report
    except BaseException as exc:
        raise_collapsed(exc)
    finally:
        await source.aclose(done=ok or not install)


async def averify_image(
    ref: str | None = None,
    *,
    oci_layout: StrPath | None = None,
    oci_archive: StrPath | None = None,
    trust: TrustLike = None,
    insecure: bool = False,
    models_path: str | None = None,
    progress: ProgressCallback | None = None,
    **client: Unpack[RegistryOptions],
) -> ImageReport:
    """Check an image (in a registry, ``oci_layout="DIR[:TAG]"`` or ``oci_archive="FILE[:TAG]"``)
    completely; write nothing.

    Every platform; every digest and size; every diff_id; every model layer's members confined to
    the models path (``OLLAMA_MODELS`` of the image's config, or *models_path*); every blob hashing
    to its name; every Ollama manifest's blobs present; files world-readable; no empty directory
    under ``manifests/``. With *trust* (a :class:`~ollama_seed.Trust`, or a
    :class:`~ollama_seed.TrustPolicy` whose rules match the image's name), first its cosign
    signature, before any layer is read.

    Raises:
        SignatureError: *trust* applies and no signature of the image is by a key or CA you trust.
        BundleError: the first problem found. ModelNotFound: no such image or tag.
        RegistryError, AuthenticationError, TransferError: the registry failed.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ollama-seed-verify.") as tmp:
        source = _source(ref, oci_layout, oci_archive, Path(tmp), insecure, client)
        return await _read(source, None, install=False, trust=trust, models_path=models_path, progress=progress)


verify_image = blocking(averify_image)


async def aextract_image(
    ref: str | None = None,
    *,
    oci_layout: StrPath | None = None,
    oci_archive: StrPath | None = None,
    trust: TrustLike = None,
    models_dir: StrPath | None = None,
    insecure: bool = False,
    models_path: str | None = None,
    progress: ProgressCallback | None = None,
    **client: Unpack[RegistryOptions],
) -> ImageReport:
    """Install the models of an image into the store, with no container runtime (init containers).

    Through the same staging, hashing and manifest-last installation as ``import``: nothing
    reaches the store until every layer read has matched its digest and diff_id. Layers whose
    blobs the store has are not fetched; a registry's layers are downloaded by the pull engine
    into ``.ollama-seed/image-layers/`` of the store and resume there after an interruption.
    With *trust*, the image's cosign signature is checked first: with none by a key or CA you
    trust, nothing is fetched and the store is not touched.

    Raises:
        SignatureError: *trust* applies and no signature of the image is by a key or CA you trust.
        BundleError: a damaged or hostile image (the store is left as it was).
        ModelNotFound: no such image or tag. StoreError, InsufficientSpace: the store cannot take it.
        RegistryError, AuthenticationError, TransferError: the registry failed.
    """
    store = ModelStore(models_dir)
    source = _source(ref, oci_layout, oci_archive, store.layout.state_dir / LAYER_SCRATCH, insecure, client)
    return await _read(source, store, install=True, trust=trust, models_path=models_path, progress=progress)


extract_image = blocking(aextract_image)
