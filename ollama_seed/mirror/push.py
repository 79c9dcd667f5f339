"""Pushing a model from the store into any registry that speaks the distribution API.

The protocol (HEAD, cross-repository mount, monolithic or chunked upload, the manifest last, its
digest checked) is :class:`wire.upload.Uploader`, shared with ``image build --push``. Here: which
blobs a model has, a few at a time, where they may be mounted from (a model of the store kept
under the target registry's host, or a ``mount_from`` repository whose HEAD finds the blob), and
their bytes streamed from ``blobs/``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import httpx

from ..core.digest import Digest
from ..core.errors import (
    InvalidName,
    StoreError,
)
from ..core.groups import raise_collapsed
from ..core.layout import StrPath
from ..core.manifest import MANIFEST_MEDIA_TYPE, Layer, Manifest
from ..core.ocidoc import Descriptor
from ..core.progress import LayerProgress, ProgressCallback, Status, no_progress
from ..core.reference import ModelName
from ..store import oscalls
from ..store.fsutil import open_nofollow, raise_os_error
from ..store.signatures import SignatureStore
from ..store.store import InstalledModel, ModelStore
from ..wire.registry import Credentials, RegistryClient
from ..wire.sync import blocking
from ..wire.upload import DEFAULT_CHUNK, Uploader, with_retries

if TYPE_CHECKING:
    from ..wire.cosign_attach import PreparedSignature
    from ..wire.keys import SigningKey

__all__ = ["PushResult", "apush", "push"]

READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did: which blobs were uploaded, mounted from another repository, or already there."""

    source: ModelName
    target: ModelName
    manifest_digest: Digest
    uploaded: tuple[Digest, ...]
    mounted: tuple[Digest, ...]
    existing: tuple[Digest, ...]
    bytes_uploaded: int
    elapsed: float
    signatures: tuple[Digest, ...] = ()
    """The signature documents written with ``sign=``: the cosign referrer manifest (and the ``.sig``
    manifest with ``cosign_legacy``)."""


class _Pusher:
    def __init__(
        self,
        client: RegistryClient,
        store: ModelStore,
        target: ModelName,
        *,
        chunk_size: int,
        mount_from: Sequence[str],
        progress: ProgressCallback,
    ) -> None:
        self.client, self.store, self.target = client, store, target
        self.up = Uploader(client, target, chunk_size=chunk_size)
        self.mount_from = list(mount_from)
        self.progress = progress
        self.repo = target.repository
        self.sent = 0
        self.known: dict[Digest, str] = {}
        for item in store.iter_models():
            if isinstance(item, InstalledModel) and item.name.host == target.host and item.name.repository != self.repo:
                for layer in item.manifest.blobs:
                    self.known.setdefault(layer.digest, item.name.repository)

    def _read(self, layer: Layer, start: int, length: int) -> AsyncIterator[bytes]:
        path = self.store.layout.blob(layer.digest)

        async def gen() -> AsyncIterator[bytes]:
            try:
                fd = open_nofollow(path, os.O_RDONLY)
            except OSError as exc:
                raise_os_error(exc, f"reading {path}")
                raise
            try:
                pos, end = start, start + length
                while pos < end:
                    data = await anyio.to_thread.run_sync(oscalls.host.pread, fd, min(READ_CHUNK, end - pos), pos)
                    if not data:
                        raise StoreError(f"{path} is shorter than the manifest says; run 'ollama-seed verify'")
                    pos += len(data)
                    self.sent += len(data)
                    self._emit(layer, pos)
                    yield data
            finally:
                os.close(fd)

        return gen()

    def _emit(self, layer: Layer, completed: int, *, cached: bool = False, done: bool = False) -> None:
        self.progress(
            LayerProgress(
                self.target.display,
                str(layer.digest),
                layer.media_type,
                layer.size,
                completed,
                cached=cached,
                done=done,
            )
        )

    # -- one blob ------------------------------------------------------------------------
    async def blob(self, layer: Layer) -> str:
        """Push one blob; ``"existing"``, ``"mounted"`` or ``"uploaded"``."""
        return await with_retries(lambda: self._blob_once(layer), f"pushing {layer.digest} to {self.target.host}")

    async def _source_for(self, digest: Digest) -> str | None:
        if digest in self.known:
            return self.known[digest]
        for repo in self.mount_from:
            if repo == self.repo:
                continue
            if await self.up.exists(digest, repo):
                return repo
        return None

    async def _blob_once(self, layer: Layer) -> str:
        digest = layer.digest
        if await self.up.exists(digest):
            self._emit(layer, layer.size, cached=True, done=True)
            return "existing"
        location = None
        source = await self._source_for(digest)
        if source is not None:
            location = await self.up.mount(digest, source)
            if location is None:
                self._emit(layer, layer.size, cached=True, done=True)
                return "mounted"
        await self.up.upload(digest, layer.size, lambda start, n: self._read(layer, start, n), location)
        self._emit(layer, layer.size, done=True)
        return "uploaded"

    async def manifest(self, manifest: Manifest) -> None:
        await self.up.manifest(
            self.target.tag, manifest.media_type or MANIFEST_MEDIA_TYPE, manifest.raw, manifest.digest
        )
        # (a rewritten manifest would give Ollama another model ID: Uploader.manifest refuses it)


async def apush(
    source: str | ModelName,
    target: str | ModelName,
    *,
    models_dir: StrPath | None = None,
    insecure: bool = False,
    credentials: Credentials | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    mount_from: Sequence[str] = (),
    concurrency: int = 3,
    progress: ProgressCallback | None = None,
    sign: SigningKey | None = None,
    cosign_legacy: bool = False,
) -> PushResult:
    """Push the stored model *source* to *target* (``registry.example.com/ns/model:tag``).

    Args:
        source: a model in the store.
        target: where to push it; its host is the registry.
        insecure: plain http to the registry.
        credentials: ``host -> (user, password)``; default: environment, then ``~/.docker/config.json``.
        chunk_size: blobs up to this size go in one PUT; larger ones in PATCH chunks of this size.
        mount_from: repositories on the target registry to mount blobs from when they hold them.
        concurrency: blobs pushed at once.
        progress: called with :class:`Status` and :class:`LayerProgress` events.
        sign: after the manifest, attach a cosign signature over its digest (cosign v3: a Sigstore
            bundle as an OCI 1.1 referrer, with the ``sha256-<hex>`` tag for registries without
            the referrers API); the signature is also kept in the local store.
        cosign_legacy: with *sign*, also write cosign v2's ``sha256-<hex>.sig`` simple signing.

    Raises:
        InvalidName: a name is invalid, or *target* pins a digest.
        ModelNotFound: *source* is not in the store.
        StoreError: a blob of *source* is missing or short.
        AuthenticationError, RegistryError, TransferError, IntegrityError: the registry refused or failed.
    """
    started = time.monotonic()
    src = ModelName.of(source)
    dst = ModelName.of(target)
    if dst.digest is not None:
        raise InvalidName(f"push target {target!s} pins a digest; give a tag instead")
    if cosign_legacy and sign is None:
        raise ValueError("cosign_legacy adds a signature format: it needs a key to sign with (sign=)")
    store = ModelStore(models_dir)
    model = store.get_complete(src, before="pushing it")
    emit = progress or no_progress
    outcome: dict[Digest, str] = {}
    signatures: tuple[Digest, ...] = ()
    try:
        async with RegistryClient(insecure=insecure, transport=transport, credentials=credentials) as client:
            pusher = _Pusher(client, store, dst, chunk_size=chunk_size, mount_from=mount_from, progress=emit)
            emit(Status(dst.display, f"pushing {model.name.display}"))
            limiter = anyio.CapacityLimiter(max(1, concurrency))

            async def one(layer: Layer) -> None:
                async with limiter:
                    outcome[layer.digest] = await pusher.blob(layer)

            prepared: list[PreparedSignature] = []

            async def prepare(key: SigningKey) -> None:  # the signature's blobs go alongside the model's
                emit(Status(dst.display, f"signing with {key.public_key.fingerprint}"))
                prepared.append(await _prepare(pusher.up, model.manifest, key, cosign_legacy))

            async with anyio.create_task_group() as tg:
                for layer in model.manifest.blobs:
                    tg.start_soon(one, layer)
                if sign is not None:
                    tg.start_soon(prepare, sign)
            emit(Status(dst.display, "pushing manifest"))
            await pusher.manifest(model.manifest)
            if prepared:
                records = await prepared[0].publish(pusher.up)
                signatures = tuple(r.artifact.digest for r in records if r.artifact is not None)
                keep = SignatureStore(store)
                for record in records:
                    keep.add(model.manifest.digest, record)
            emit(Status(dst.display, "success"))
    except BaseException as exc:
        raise_collapsed(exc)

    def kind(k: str) -> tuple[Digest, ...]:
        return tuple(d for d, v in outcome.items() if v == k)

    return PushResult(
        model.name,
        dst,
        model.manifest.digest,
        kind("uploaded"),
        kind("mounted"),
        kind("existing"),
        pusher.sent,
        time.monotonic() - started,
        signatures,
    )


async def _prepare(up: Uploader, manifest: Manifest, key: SigningKey, legacy: bool) -> PreparedSignature:
    from ..wire.cosign_attach import prepare_signature

    subject = Descriptor(manifest.media_type or MANIFEST_MEDIA_TYPE, manifest.digest, len(manifest.raw), {})
    return await prepare_signature(up, subject, key, legacy=legacy)


push = blocking(apush)
