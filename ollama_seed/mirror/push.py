"""Pushing a model from the store into any registry that speaks the distribution API.

For each distinct blob of the manifest (a few at a time):

1. ``HEAD /v2/<repo>/blobs/<digest>``: 200 means the registry has it; nothing is sent.
2. If another repository on that registry is known to hold the blob (a model of the store kept
   under that registry's host, or a ``mount_from`` repository whose HEAD finds it), a
   cross-repository mount: ``POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>``.
   201 means mounted; 202 means the registry declined and opened an ordinary upload instead.
3. Otherwise ``POST /v2/<repo>/blobs/uploads/`` (202 and a ``Location``).
4. A blob of at most *chunk_size* bytes goes in one ``PUT <Location>&digest=<digest>``
   (monolithic); a bigger one as ``PATCH`` requests of *chunk_size* bytes with
   ``Content-Range: <first>-<last>`` (each answer names the next ``Location``), then an empty
   ``PUT <Location>&digest=<digest>``. Bodies stream from the blob file; nothing is held whole.

Last, ``PUT /v2/<repo>/manifests/<tag>`` with the manifest's exact bytes and its ``mediaType``
as ``Content-Type``; the registry's ``Docker-Content-Digest`` must equal ours. A blob upload
that fails with 5xx/429 or a network error starts again (three tries). Tokens come from the
registry client's challenge logic with scope ``repository:<repo>:pull,push``.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from ..core.digest import Digest
from ..core.errors import (
    AuthenticationError,
    IntegrityError,
    InvalidName,
    RegistryError,
    RegistryProtocolError,
    SeedError,
    StoreError,
    TransferError,
)
from ..core.groups import collapse
from ..core.manifest import MANIFEST_MEDIA_TYPE, Layer, Manifest
from ..core.progress import LayerProgress, ProgressCallback, ProgressEvent, Status
from ..core.ranges import backoff
from ..core.reference import ModelName
from ..store import platform as _platform
from ..store.fsutil import open_nofollow, raise_os_error
from ..store.store import InstalledModel, ModelStore
from ..wire.registry import Credentials, RegistryClient, map_errors
from ..wire.sync import run_sync

__all__ = ["PushResult", "apush", "push"]

DEFAULT_CHUNK = 32 * 1024 * 1024
READ_CHUNK = 1024 * 1024
ATTEMPTS = 3
StrPath = str | os.PathLike[str]


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


class _Retry(Exception):
    pass


def _excerpt(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
    return text or "(no body)"


def _with_digest(location: str, digest: Digest) -> str:
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    return f"{location}{sep}{urllib.parse.urlencode({'digest': str(digest)})}"


def _noop(event: ProgressEvent) -> None:
    return None


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
        self.chunk_size = max(1, chunk_size)
        self.mount_from = list(mount_from)
        self.progress = progress
        self.base = client.base(target)
        self.repo = target.repository
        self.scope = f"repository:{self.repo}:pull,push"
        self.sent = 0
        self.known: dict[Digest, str] = {}
        for item in store.iter_models():
            if isinstance(item, InstalledModel) and item.name.host == target.host and item.name.repository != self.repo:
                for layer in item.manifest.blobs:
                    self.known.setdefault(layer.digest, item.name.repository)

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        content: Any = None,
        ok: Sequence[int] = (200, 201, 202, 204),
    ) -> httpx.Response:
        with map_errors(url):
            resp = await self.client.send(self.target, method, url, headers or {}, content=content, scope=self.scope)
            try:
                body = await resp.aread()
            finally:
                await resp.aclose()
        status = resp.status_code
        if status in ok:
            return resp
        shown = url.split("?", 1)[0]
        if status in (401, 403):
            raise AuthenticationError(
                f"{self.target.host} refused {method} {shown} (HTTP {status}): {_excerpt(body)}; push needs "
                "credentials with push rights: docker login, or OLLAMA_SEED_REGISTRY_USER/PASSWORD",
                url=shown,
                status=status,
            )
        if status == 429 or status >= 500:
            raise _Retry(f"{method} {shown}: HTTP {status}: {_excerpt(body)}")
        if status == 405:
            raise RegistryError(
                f"{self.target.host} does not accept uploads ({method} {shown} answered 405); "
                "it may be a read-only mirror or proxy",
                url=shown,
                status=status,
            )
        raise RegistryError(f"{method} {shown} answered HTTP {status}: {_excerpt(body)}", url=shown, status=status)

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
                    data = await anyio.to_thread.run_sync(_platform.current.pread, fd, min(READ_CHUNK, end - pos), pos)
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
        for attempt in range(ATTEMPTS):
            try:
                return await self._blob_once(layer)
            except (_Retry, TransferError) as exc:
                if attempt == ATTEMPTS - 1:
                    raise TransferError(
                        f"pushing {layer.digest} to {self.target.host} failed {ATTEMPTS} times: {exc}"
                    ) from None
                await anyio.sleep(backoff(attempt))
        raise AssertionError("unreachable")

    async def _source_for(self, digest: Digest) -> str | None:
        if digest in self.known:
            return self.known[digest]
        for repo in self.mount_from:
            if repo == self.repo:
                continue
            resp = await self.request("HEAD", f"{self.base}/v2/{repo}/blobs/{digest}", ok=(200, 404, 401, 403))
            if resp.status_code == 200:
                return repo
        return None

    async def _blob_once(self, layer: Layer) -> str:
        digest = layer.digest
        uploads = f"{self.base}/v2/{self.repo}/blobs/uploads/"
        resp = await self.request("HEAD", f"{self.base}/v2/{self.repo}/blobs/{digest}", ok=(200, 404))
        if resp.status_code == 200:
            self._emit(layer, layer.size, cached=True, done=True)
            return "existing"
        location = None
        source = await self._source_for(digest)
        if source is not None:
            query = urllib.parse.urlencode({"mount": str(digest), "from": source})
            resp = await self.request("POST", f"{uploads}?{query}", ok=(201, 202))
            if resp.status_code == 201:
                self._emit(layer, layer.size, cached=True, done=True)
                return "mounted"
            location = resp.headers.get("location")
        if location is None:
            resp = await self.request("POST", uploads, ok=(202,))
            location = resp.headers.get("location")
            if not location:
                raise RegistryProtocolError(f"POST {uploads} answered 202 without a Location", url=uploads)
        location = urllib.parse.urljoin(uploads, location)
        octet = {"Content-Type": "application/octet-stream"}
        if layer.size <= self.chunk_size:
            resp = await self.request(
                "PUT",
                _with_digest(location, digest),
                {**octet, "Content-Length": str(layer.size)},
                lambda: self._read(layer, 0, layer.size),
                ok=(201, 204),
            )
        else:
            pos = 0
            while pos < layer.size:
                n = min(self.chunk_size, layer.size - pos)
                resp = await self.request(
                    "PATCH",
                    location,
                    {**octet, "Content-Range": f"{pos}-{pos + n - 1}", "Content-Length": str(n)},
                    lambda p=pos, n=n: self._read(layer, p, n),
                    ok=(202, 204),
                )
                got = resp.headers.get("range")
                if got and got.removeprefix("bytes=") != f"0-{pos + n - 1}":
                    raise _Retry(f"the registry holds {got} of {digest} after sending bytes 0-{pos + n - 1}")
                location = urllib.parse.urljoin(location, resp.headers.get("location") or location)
                pos += n
            resp = await self.request(
                "PUT", _with_digest(location, digest), {"Content-Length": "0"}, b"", ok=(201, 204)
            )
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != str(digest):
            raise IntegrityError(f"the registry stored {stored} for {digest}", expected=str(digest), actual=stored)
        self._emit(layer, layer.size, done=True)
        return "uploaded"

    async def manifest(self, manifest: Manifest) -> None:
        url = f"{self.base}/v2/{self.repo}/manifests/{self.target.tag}"
        for attempt in range(ATTEMPTS):
            try:
                resp = await self.request(
                    "PUT",
                    url,
                    {"Content-Type": manifest.media_type or MANIFEST_MEDIA_TYPE},
                    manifest.raw,
                    ok=(200, 201, 202, 204),
                )
                break
            except (_Retry, TransferError) as exc:
                if attempt == ATTEMPTS - 1:
                    raise TransferError(f"pushing the manifest to {self.target.host} failed: {exc}") from None
                await anyio.sleep(backoff(attempt))
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != str(manifest.digest):
            raise IntegrityError(
                f"{self.target.host} stored the manifest as {stored}, not {manifest.digest}: it "
                "rewrote the bytes, so Ollama would see another model ID",
                expected=str(manifest.digest),
                actual=stored,
            )


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

    Raises:
        InvalidName: a name is invalid, or *target* pins a digest.
        ModelNotFound: *source* is not in the store.
        StoreError: a blob of *source* is missing or short.
        AuthenticationError, RegistryError, TransferError, IntegrityError: the registry refused or failed.
    """
    started = time.monotonic()
    src = source if isinstance(source, ModelName) else ModelName.parse(source)
    dst = target if isinstance(target, ModelName) else ModelName.parse(target)
    if dst.digest is not None:
        raise InvalidName(f"push target {target!s} pins a digest; give a tag instead")
    store = ModelStore(models_dir)
    model = store.get(src)
    missing = store.missing(model.manifest)
    if missing:
        raise StoreError(
            f"{model.name.display} is incomplete in {store.root}: {len(missing)} blob(s) missing or "
            f"short, first {missing[0].digest}; pull it again before pushing"
        )
    emit = progress or _noop
    outcome: dict[Digest, str] = {}
    try:
        async with RegistryClient(insecure=insecure, transport=transport, credentials=credentials) as client:
            pusher = _Pusher(client, store, dst, chunk_size=chunk_size, mount_from=mount_from, progress=emit)
            emit(Status(dst.display, f"pushing {model.name.display}"))
            limiter = anyio.CapacityLimiter(max(1, concurrency))

            async def one(layer: Layer) -> None:
                async with limiter:
                    outcome[layer.digest] = await pusher.blob(layer)

            async with anyio.create_task_group() as tg:
                for layer in model.manifest.blobs:
                    tg.start_soon(one, layer)
            emit(Status(dst.display, "pushing manifest"))
            await pusher.manifest(model.manifest)
            emit(Status(dst.display, "success"))
    except BaseException as exc:
        err = collapse(exc)
        if err is exc or not isinstance(err, SeedError):
            raise
        raise err from None

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
    )


def push(source: str | ModelName, target: str | ModelName, **options: Any) -> PushResult:
    """Blocking form of :func:`apush`; takes the same options. Not for use inside an event loop."""
    result: PushResult = run_sync(apush, source, target, **options)
    return result
