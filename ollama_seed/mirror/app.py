"""The mirror: a read-only registry over a :class:`~ollama_seed.store.store.ModelStore`, as an ASGI application.

Routes (``GET`` and ``HEAD``; any other method is 405)::

    /v2/                                     200 {}
    /v2/_catalog[?n=N&last=R]                {"repositories": [...]}
    /v2/<ns>/<model>/tags/list[?n=&last=]    {"name": ..., "tags": [...]}
    /v2/<ns>/<model>/manifests/<tag|digest>  the stored bytes, their mediaType, Docker-Content-Digest
    /v2/<ns>/<model>/blobs/<digest>          Range -> 206, unsatisfiable -> 416; may answer a 307
    /v2/<ns>/<model>/referrers/<digest>      the signatures the store keeps (see :mod:`mirror.signatures`)
    /v2/<host>/<ns>/<model>/...              the same, for the models stored under that registry host

A two-part repository (``library/gpt-oss``) is looked up under each registry host of the store
in turn: the ``hosts`` given, else the upstream's host, ``registry.ollama.ai``, then the others
in name order. A blob is served for a repository only if one of its manifests lists it. Paths
are understood by :mod:`~ollama_seed.mirror.routes`; the store is read by
:mod:`~ollama_seed.mirror.index`, in worker threads of the app's own (bounded) pool, so a slow
or hung file system never stops the event loop.

Blob bodies: a server that offers the ASGI ``http.response.zerocopysend`` extension (``serve``'s
own) gets the open file, and copies it from the page cache to the socket; any other ASGI server
gets 1 MiB chunks read in a worker thread, and a client that disconnects stops the stream.
Errors use the registry's JSON shape ``{"errors": [{"code", "message", "detail"}]}``. A
manifest's ``Content-Type`` is its media type only if that is one of the manifest media types
(else the Docker v2 type), and every response says ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel

from ..core.digest import Digest
from ..core.errors import InsufficientSpace, InvalidName, ModelNotFound, SeedError
from ..core.manifest import MANIFEST_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, Layer, Manifest
from ..core.ociref import INDEX_MEDIA_TYPE
from ..core.ranges import RangeNotSatisfiable, parse_range
from ..store import oscalls
from ..store.store import ModelStore
from .asgi import (
    API_VERSION,
    NOSNIFF,
    Counting,
    Receive,
    Scope,
    Send,
    log_access,
    reply_error,
    reply_json,
    run_lifespan,
)
from .index import MirrorIndex, Repo, open_blob
from .routes import DIRECT, Route, check_name, page, query_flags, route
from .signatures import Document, MirrorSignatures

if TYPE_CHECKING:
    from .cache import PullThroughCache

__all__ = ["FILTER", "MirrorApp", "RedirectPolicy", "parse_range"]

log = logging.getLogger("ollama_seed.mirror")
T = TypeVar("T")

RedirectPolicy = Callable[[Mapping[str, Any]], "str | None"]
"""``scope -> base URL`` (``http://localhost:8080``) for a blob GET's 307, or None to serve it here."""

FILTER = "ollama_seed.visible"  # a scope key: ``repository name -> bool``, what the catalog may list
CHUNK = 1024 * 1024
ZERO_COPY = "http.response.zerocopysend"
MANIFEST_TYPES = frozenset(
    {
        MANIFEST_MEDIA_TYPE,
        OCI_MANIFEST_MEDIA_TYPE,
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
DOCUMENT_TYPES = MANIFEST_TYPES | {INDEX_MEDIA_TYPE, "application/octet-stream", "application/json"}
_ALLOW = [(b"allow", b"GET, HEAD")]


class _Reply(Exception):
    """An error response; raised anywhere below the handler."""

    def __init__(self, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


@contextlib.contextmanager
def _upstream() -> Any:
    """Upstream failures as the registry errors the client gets: 507 for a full cache, else 502."""
    try:
        yield
    except InsufficientSpace as exc:  # --max-cache-size reached, or the disk is full
        raise _Reply(507, "UNAVAILABLE", str(exc)) from None
    except ModelNotFound:
        raise
    except SeedError as exc:
        raise _Reply(502, "UNKNOWN", f"upstream: {exc}") from None


class MirrorApp:
    """A read-only Docker Registry v2 API over a models directory (an ASGI 3 application).

    Args:
        store: the models directory to serve.
        cache: a pull-through cache; misses are fetched from its upstream (see :mod:`mirror.cache`).
        redirect: decides whether a blob GET answers 307 to another address of this server
            (see :class:`~ollama_seed.mirror.redirect.BlobRedirect`); the bytes are then served at that address.
        hosts: registry hosts a two-part repository is looked up under, in order.
        chunk_size: bytes per read and per write of a blob body (servers without zero-copy).
        file_threads: worker threads reading the store at once.
    """

    def __init__(
        self,
        store: ModelStore,
        *,
        cache: PullThroughCache | None = None,
        redirect: RedirectPolicy | None = None,
        hosts: Sequence[str] | None = None,
        chunk_size: int = CHUNK,
        file_threads: int = 16,
    ) -> None:
        self.store = store
        self.cache = cache
        self.redirect = redirect
        self.hosts = tuple(hosts) if hosts else None
        self.chunk_size = chunk_size
        self.log_access = True  # off when a wrapper (mirror.site) logs the requests itself
        self.index = MirrorIndex(store, hosts=self.hosts, first_host=cache.host if cache is not None else None)
        self._files = anyio.CapacityLimiter(file_threads)
        self.signatures = MirrorSignatures(store, self.index)

    async def __aenter__(self) -> MirrorApp:
        if self.cache is not None:
            await self.cache.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.cache is not None:
            await self.cache.__aexit__(None, None, None)

    async def fs(self, fn: Callable[..., T], *args: Any) -> T:
        """*fn(*args)* in a worker thread of the app's file pool."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._files)

    # -- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(self, receive, send)
            return
        if scope["type"] != "http":
            return
        ctx, started = Counting(send), time.monotonic()
        where = route(scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape"))
        try:
            await self._handle(scope, receive, ctx, where)
        except _Reply as reply:
            await reply_error(ctx, scope, reply.status, reply.code, reply.message, reply.headers)
        except Exception as exc:
            if ctx.status:
                raise
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await reply_error(ctx, scope, 500, "UNKNOWN", f"internal error: {type(exc).__name__}")
        finally:
            if self.log_access:
                log_access(scope, ctx.status, ctx.sent, time.monotonic() - started, where.kind, None)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, where: Route) -> None:
        refused = where.refused
        if refused is not None and refused.status in (404, 414) and where.kind == "other" and not where.parts:
            raise _Reply(refused.status, refused.code, refused.message)
        if scope["method"] not in ("GET", "HEAD"):
            raise _Reply(405, "UNSUPPORTED", "this mirror is read-only: only GET and HEAD are allowed", _ALLOW)
        if refused is not None:
            raise _Reply(refused.status, refused.code, refused.message)
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if where.kind == "base":
            await reply_json(send, scope, 200, {})
        elif where.kind == "catalog":
            names = await self.fs(self.index.catalog)
            items, links = page(names, query, "/v2/_catalog", visible=scope.get(FILTER))
            await reply_json(send, scope, 200, {"repositories": items}, links)
        elif where.kind in ("tags", "manifest", "blob", "referrers") and where.repo is not None:
            repo = Repo(*where.repo) if len(where.repo) == 3 else Repo(None, *where.repo)
            if where.kind == "referrers":
                await self._referrers(send, scope, repo, where.ref or "", query)
            elif where.kind == "tags":
                await self._tags(send, scope, repo, query)
            elif where.kind == "manifest":
                await self._manifest(send, scope, repo, where.ref or "")
            else:
                direct = DIRECT in query_flags(scope.get("query_string", b""))
                await self._blob(send, scope, receive, repo, where.ref or "", direct)
        else:  # pragma: no cover - route() refuses every other path
            raise _Reply(404, "NOT_FOUND", "unknown registry API path")

    def _cache_for(self, repo: Repo) -> PullThroughCache | None:
        return self.cache if self.cache is not None and repo.host in (None, self.cache.host) else None

    # -- handlers --------------------------------------------------------------------------
    async def _tags(self, send: Send, scope: Scope, repo: Repo, query: dict[str, list[str]]) -> None:
        tags = set(await self.fs(self.index.tags, repo))
        cache = self._cache_for(repo)
        if cache is not None:
            tags.update(cache.known_tags(repo.namespace, repo.model))
        if not tags:
            raise _Reply(404, "NAME_UNKNOWN", f"repository {repo.path} is not in this mirror")
        items, links = page(sorted(tags), query, f"/v2/{repo.path}/tags/list")
        await reply_json(send, scope, 200, {"name": repo.path, "tags": items}, links)

    async def _manifest(self, send: Send, scope: Scope, repo: Repo, ref: str) -> None:
        if ref.startswith("sha256:"):
            try:
                Digest.parse(ref)
            except InvalidName as exc:
                raise _Reply(400, "DIGEST_INVALID", str(exc)) from None
        else:
            problem = check_name((repo.host or "h", repo.namespace, repo.model), ref)
            if problem is not None:
                raise _Reply(400, "NAME_INVALID", problem)
        manifest: Manifest | None = await self.fs(self.index.find_manifest, repo, ref)
        signature = None if manifest is not None else await self.fs(self.signatures.manifest, repo, ref)
        if signature is not None:  # a kept signature document (before the upstream: it is not a model)
            await self._document(send, scope, signature)
            return
        cache = self._cache_for(repo)
        if manifest is None and cache is not None:
            try:
                with _upstream():
                    manifest = await cache.manifest(repo.namespace, repo.model, ref)
            except ModelNotFound:
                manifest = None
        if manifest is None:
            raise _Reply(404, "MANIFEST_UNKNOWN", f"manifest unknown: {repo.path}:{ref}")
        kind = manifest.media_type if manifest.media_type in MANIFEST_TYPES else MANIFEST_MEDIA_TYPE
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    API_VERSION,
                    NOSNIFF,
                    (b"content-type", kind.encode()),
                    (b"content-length", str(len(manifest.raw)).encode()),
                    (b"docker-content-digest", str(manifest.digest).encode()),
                    (b"etag", f'"{manifest.digest}"'.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else manifest.raw})

    async def _blob(self, send: Send, scope: Scope, receive: Receive, repo: Repo, ref: str, direct: bool) -> None:
        try:
            digest = Digest.parse(ref)
        except InvalidName as exc:
            raise _Reply(400, "DIGEST_INVALID", str(exc)) from None
        if not ref.startswith("sha256:"):
            raise _Reply(400, "DIGEST_INVALID", "a digest is written sha256:<hex>")
        layers = await self.fs(self.index.repo_layers, repo)
        layer = layers.get(digest)
        cache = self._cache_for(repo)
        try:
            if layer is None and cache is not None:
                with _upstream():
                    layer = await cache.layer(repo.namespace, repo.model, digest)
        except ModelNotFound:
            layer = None
        if layer is None:
            data = await self.fs(self.signatures.blob, repo, digest)
            if data is None:
                raise _Reply(404, "BLOB_UNKNOWN", f"blob unknown to repository {repo.path}: {digest}")
            await self._document(send, scope, ("application/octet-stream", data, []))
            return
        if scope["method"] == "GET" and not direct and self.redirect is not None:
            base = self.redirect(scope)
            if base:
                location = f"{base.rstrip('/')}/v2/{repo.path}/blobs/{digest}?{DIRECT}"
                await self._start(send, 307, [(b"location", location.encode()), (b"content-length", b"0")])
                await send({"type": "http.response.body", "body": b""})
                return
        fd = await self.fs(open_blob, self.store.layout.blobs_dir, digest, layer.size)
        if fd is None:
            if cache is None:
                log.warning("%s is listed by %s but missing or damaged in %s", digest, repo.path, self.store.root)
                raise _Reply(404, "BLOB_UNKNOWN", f"blob {digest} is missing from this mirror's store")
            if scope["method"] == "HEAD":
                await self._blob_start(send, layer, 200, layer.size, [])
                await send({"type": "http.response.body", "body": b""})
                return
            with _upstream():
                await cache.fetch_blob(repo.namespace, repo.model, layer)
            fd = await self.fs(open_blob, self.store.layout.blobs_dir, digest, layer.size)
            if fd is None:
                raise _Reply(404, "BLOB_UNKNOWN", f"blob {digest} is not in this mirror")
        try:
            await self._send_blob(send, scope, receive, layer, fd)
        finally:
            os.close(fd)

    async def _referrers(self, send: Send, scope: Scope, repo: Repo, ref: str, query: dict[str, list[str]]) -> None:
        artifact = query.get("artifactType", [None])[0]
        try:
            found = await self.fs(self.signatures.referrers_of, repo, ref, artifact)
        except InvalidName as exc:
            raise _Reply(400, "DIGEST_INVALID", str(exc)) from None
        if found is None:
            raise _Reply(404, "MANIFEST_UNKNOWN", f"manifest unknown: {ref}")
        await self._document(send, scope, found)

    async def _document(self, send: Send, scope: Scope, doc: Document) -> None:
        """A small signature document (a referrers list, a manifest or a blob) with its digest."""
        media_type, body, extra = doc
        kind = media_type if media_type in DOCUMENT_TYPES else "application/octet-stream"
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}".encode()
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await self._start(send, 200, [*headers, (b"docker-content-digest", digest), *extra])
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    @staticmethod
    async def _start(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [API_VERSION, NOSNIFF, *headers]})

    async def _blob_start(
        self, send: Send, layer: Layer, status: int, length: int, extra: list[tuple[bytes, bytes]]
    ) -> None:
        await self._start(
            send,
            status,
            [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(length).encode()),
                (b"accept-ranges", b"bytes"),
                (b"docker-content-digest", str(layer.digest).encode()),
                (b"etag", f'"{layer.digest}"'.encode()),
                (b"cache-control", b"max-age=31536000, immutable"),
                *extra,
            ],
        )

    async def _send_blob(self, send: Send, scope: Scope, receive: Receive, layer: Layer, fd: int) -> None:
        headers = dict(scope.get("headers", []))
        rng = headers.get(b"range", b"").decode("latin-1") or None
        if_range = headers.get(b"if-range", b"").decode("latin-1")
        if if_range and if_range != f'"{layer.digest}"':
            rng = None
        try:
            span = parse_range(rng, layer.size)
        except RangeNotSatisfiable as exc:
            raise _Reply(
                416, "RANGE_INVALID", str(exc), [(b"content-range", f"bytes */{layer.size}".encode())]
            ) from None
        start, end = span if span is not None else (0, layer.size)
        extra = [(b"content-range", f"bytes {start}-{end - 1}/{layer.size}".encode())] if span else []
        await self._blob_start(send, layer, 206 if span else 200, end - start, extra)
        if scope["method"] == "HEAD" or start == end:
            await send({"type": "http.response.body", "body": b""})
        elif ZERO_COPY in (scope.get("extensions") or {}):
            await send({"type": ZERO_COPY, "file": fd, "offset": start, "count": end - start, "more_body": False})
        else:
            await self._stream(send, receive, fd, start, end)

    async def _stream(self, send: Send, receive: Receive, fd: int, start: int, end: int) -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    await anyio.lowlevel.checkpoint()  # a well-behaved server blocks in receive() anyway
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            pos = start
            while pos < end:
                data = await self.fs(oscalls.host.pread, fd, min(self.chunk_size, end - pos), pos)
                if not data:
                    raise OSError(f"blob file shrank while it was being sent (at byte {pos})")
                pos += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": pos < end})
            tg.cancel_scope.cancel()
