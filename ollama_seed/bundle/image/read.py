"""``image verify`` and ``image extract``: an image's models read through the importer, every digest checked.

1. The reference gives an index or a manifest; from an index, verify takes every platform and
   extract the one of this machine (else the first).
2. Each manifest must be all Docker or all OCI types; its config must list one diff_id per layer.
3. Model layers are the ones ollama-seed annotated (``io.ollama-seed.layer``); an image without
   any annotation is read whole. The layers below them (a base image) are checked by digest and
   diff_id by verify and never read by extract; a foreign layer above a model layer is refused.
4. The model layers go through :class:`~bundle.image.members.LayerMembers` into the importer with
   ``hold``: blobs hashed into staging, manifests checked against them, and nothing installed
   until the last layer's digest and diff_id have matched. Then blobs, then manifests (the same
   path as ``import``).

Verify also checks what Ollama needs to serve the models from a read-only mount: every file and
directory world-readable, no empty directory under ``manifests/``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform as _host
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import zstandard

from ...core.digest import Digest
from ...core.errors import BundleError
from ...core.ocidoc import Descriptor, ImageManifest, is_index, parse_config, parse_index, parse_manifest
from ...core.ociimage import models_dirs
from ...core.progress import ProgressEvent, Status
from ...core.reference import ModelName
from ...store.store import ModelStore
from ..importer import Importer
from .members import ImageLayer, LayerFile, LayerMembers, open_layer

if TYPE_CHECKING:
    from ...wire.trust import Signer

__all__ = ["ImageReport", "ImageSource", "read_image"]

Emit = Callable[[ProgressEvent], None]


class ImageSource(Protocol):
    """Where verify and extract read an image: an OCI layout or a registry."""

    label: str

    async def resolve(self) -> tuple[Descriptor, bytes]:
        """The descriptor and bytes of the image the reference names (an index or a manifest)."""
        ...

    async def small(self, desc: Descriptor) -> bytes:
        """A small document (manifest, index, config) by its descriptor, checked against its digest."""
        ...

    async def layer(self, desc: Descriptor) -> LayerFile:
        """Where the layer's bytes are (see :class:`.members.LayerFile`)."""
        ...


@dataclass(frozen=True, slots=True)
class ImageReport:
    """What verify or extract found: the models, the image's digest, the platforms read, the work done,
    and who signed the image (when trust was asked for and a trusted signature was found)."""

    models: tuple[ModelName, ...]
    digest: Digest
    platforms: tuple[str, ...]
    layers_read: int
    layers_skipped: int
    blobs_written: int
    bytes_written: int
    elapsed: float
    signer: Signer | None = None


def host_platform() -> tuple[str, str]:
    """``("linux", <this machine's architecture as OCI names it>)``: the platform extract installs."""
    machine = _host.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)
    return "linux", arch


async def _manifests(
    source: ImageSource, every: bool, resolved: tuple[Descriptor, bytes] | None
) -> tuple[Digest, list[tuple[str, ImageManifest]]]:
    root, raw = resolved or await source.resolve()
    if not is_index(root.media_type, raw):
        return root.digest, [("", parse_manifest(raw, f"the manifest of {source.label}"))]
    children = parse_index(raw, f"the index of {source.label}")
    if not every:
        want = host_platform()
        match = [c for c in children if c.platform and (c.platform.os, c.platform.architecture) == want]
        children = match[:1] or children[:1]
    out = []
    for child in children:
        shown = str(child.platform) if child.platform else str(child.digest)
        out.append((shown, parse_manifest(await source.small(child), f"the {shown} manifest of {source.label}")))
    return root.digest, out


def _split(manifest: ImageManifest, diff_ids: list[Digest], what: str) -> tuple[list[ImageLayer], list[ImageLayer]]:
    """(base layers, model layers)."""
    layers = [ImageLayer(d, i) for d, i in zip(manifest.layers, diff_ids, strict=True)]
    marked = [i for i, layer in enumerate(layers) if layer.desc.model_content is not None]
    if not marked:
        return [], layers
    first = marked[0]
    stray = [layer for layer in layers[first:] if layer.desc.model_content is None]
    if stray:
        raise BundleError(
            f"{what}: layer {stray[0].desc.digest} is not a model layer but lies above one; it could "
            "replace model files, so the image is refused"
        )
    return layers[:first], layers[first:]


def _models_root(config: dict[str, Any], override: str | None) -> str:
    if override:
        return models_dirs(override)[0]
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    for entry in (inner or {}).get("Env") or []:
        if isinstance(entry, str) and entry.startswith("OLLAMA_MODELS="):
            return models_dirs(entry.partition("=")[2].rstrip("/") or "/models")[0]
    return "models"


async def _locate(source: ImageSource, layer: ImageLayer, root: str, blob: Digest, what: str) -> tuple[int, int] | None:
    """Where a registry's one-blob uncompressed layer holds its blob (see RegistrySource.locate); None
    for a layer read whole."""
    from .source import RegistrySource

    if not isinstance(source, RegistrySource) or layer.desc.compression != "none":
        return None
    if layer.diff_id != layer.desc.digest:
        raise BundleError(
            f"{what}: layer {layer.desc.digest} is an uncompressed tar, so its diff_id must be its digest, but the "
            f"image config says {layer.diff_id}; containerd and umoci refuse such an image"
        )
    return await source.locate(layer.desc, root, blob)


def _progress(emit: Emit, what: str, blob: Digest, size: int) -> Callable[[int], None]:
    from ...core.progress import LayerProgress

    return lambda n: emit(LayerProgress(what, str(blob), "", size, n))


def check_layer_file(file: LayerFile, layer: ImageLayer) -> None:
    """A base layer: its digest and its diff_id, without looking inside."""
    raw, unpacked = hashlib.sha256(), hashlib.sha256()
    kind = layer.desc.compression
    gz = zlib.decompressobj(16 + zlib.MAX_WBITS) if kind == "gzip" else None
    zs = zstandard.ZstdDecompressor().decompressobj() if kind == "zstd" else None
    size, checked = 0, file.checked
    with os.fdopen(open_layer(file, layer.desc), "rb") as f:
        while size < layer.desc.size and (chunk := f.read(min(1 << 20, layer.desc.size - size))):
            size += len(chunk)
            raw.update(chunk)
            try:
                unpacked.update(gz.decompress(chunk) if gz else zs.decompress(chunk) if zs else chunk)
            except (zlib.error, zstandard.ZstdError) as exc:
                raise BundleError(f"base layer {layer.desc.digest} does not decompress ({exc})") from None
    if size != layer.desc.size or (not checked and raw.hexdigest() != layer.desc.digest.hex):
        raise BundleError(f"base layer {layer.desc.digest} does not match its descriptor (size or sha256)")
    if unpacked.hexdigest() != layer.diff_id.hex:
        raise BundleError(
            f"base layer {layer.desc.digest}: its diff_id is sha256:{unpacked.hexdigest()}, not {layer.diff_id}"
        )


def _ollama_invariants(members: LayerMembers, what: str) -> None:
    files = [p for p, _, is_dir in members.modes if not is_dir]
    for path, mode, is_dir in members.modes:
        need = 0o555 if is_dir else 0o444
        if mode & need != need:
            raise BundleError(
                f"{what}: {path} has mode {mode:o}; image volumes are read-only and ignore fsGroup, so every "
                "file must be world-readable (0644) and every directory world-searchable (0755)"
            )
        if is_dir and path.startswith("manifests") and not any(f.startswith(path + "/") for f in files):
            raise BundleError(
                f"{what}: {path}/ is an empty directory under manifests/; Ollama's start-up prune removes "
                "it and fails on a read-only mount"
            )


async def read_image(
    source: ImageSource,
    store: ModelStore | None,
    *,
    install: bool,
    models_path: str | None,
    emit: Emit,
    cancel: threading.Event,
    resolved: tuple[Descriptor, bytes] | None = None,
) -> ImageReport:
    """Verify (*install* false) or extract the image of *source* into *store*; *resolved* is what
    ``source.resolve()`` answered already (the document whose signature was checked)."""
    import anyio
    import anyio.from_thread
    import anyio.to_thread

    started = time.monotonic()
    digest, manifests = await _manifests(source, not install, resolved)
    done: dict[Digest, int] = {}
    models: list[ModelName] = []
    written = bytes_written = skipped = 0
    direct: list[tuple[ImageLayer, Digest, tuple[int, int]]] = []
    for shown, manifest in manifests:
        what = f"{source.label}" + (f" ({shown})" if shown else "")
        config, diff_ids = parse_config(
            await source.small(manifest.config), len(manifest.layers), f"the config of {what}"
        )
        root = _models_root(config, models_path)
        base, model_layers = _split(manifest, diff_ids, what)
        if not install:
            for layer in base:
                if layer.desc.digest not in done:
                    file = await source.layer(layer.desc)
                    try:
                        await anyio.to_thread.run_sync(check_layer_file, file, layer)
                    finally:
                        file.release()
                    done[layer.desc.digest] = 1
        todo = []
        for layer in model_layers:
            blobs = [Digest.parse(w) for w in (layer.desc.model_content or "").split() if w.startswith("sha256:")]
            holds_manifests = "manifests" in (layer.desc.model_content or "manifests").split()
            if install and store is not None and blobs and not holds_manifests:
                if all(store.blob_size(d) is not None for d in blobs):
                    skipped += 1  # every blob it carries is in the store already: never fetched
                    continue
                if len(blobs) == 1 and (at := await _locate(source, layer, root, blobs[0], what)) is not None:
                    direct.append((layer, blobs[0], at))
                    continue
            todo.append(layer)
        # Every direct layer's header was checked before the first of their blobs is fetched: a hostile
        # member anywhere stops the extract with nothing written. A blob is installed once its own
        # digest matched, as a pull installs blobs before their manifest.
        for layer, blob, at in direct:
            await source.fetch_at(layer.desc, blob, at, store, _progress(emit, what, blob, at[1]))  # type: ignore[attr-defined]
        emit(Status(what, "extracting" if install else "verifying"))

        if not install and all(layer.desc.digest in done for layer in todo):
            continue  # another platform's manifest over the same model layers: read once

        def fetch(layer: ImageLayer) -> LayerFile:
            return anyio.from_thread.run(source.layer, layer.desc)

        members = LayerMembers(todo, fetch, root)
        importer = Importer(store, install=install, emit=emit, cancel=cancel, hold=True)
        try:
            result = await anyio.to_thread.run_sync(
                functools.partial(importer.run, members, None, label=what, compression="none")
            )
        finally:
            members.close()
        if not install:
            _ollama_invariants(members, what)
        models.extend(n for n in result.models if n not in models)
        written += result.blobs_written
        bytes_written += result.bytes_written
        for layer in todo:
            done[layer.desc.digest] = 1
    return ImageReport(
        tuple(models),
        digest,
        tuple(s for s, _ in manifests),
        len(done) + len(direct),
        skipped,
        written,
        bytes_written,
        time.monotonic() - started,
    )
