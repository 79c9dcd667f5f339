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
in name order. A blob is served for a repository only if one of its manifests lists it.

Safety: the raw request path is split on ``/``, each segment is percent-decoded once and must
then be a valid name part (:class:`~ollama_seed.core.reference.ModelName` rules, checked by parsing the name
back) or a ``sha256:<hex>`` digest. Files are opened with ``O_NOFOLLOW`` and must be regular
files, so no spelling of a URL (``..``, ``%2e%2e``, ``%2f``, ``//``, ``\\``, NUL, overlong)
reaches a path outside ``manifests/`` and ``blobs/``.

Blob bodies are streamed from the file in chunks (read in a worker thread), never loaded whole;
a client that disconnects stops the stream. Errors use the registry's JSON shape
``{"errors": [{"code", "message"}]}``. Every response is logged to the
``ollama_seed.mirror.access`` logger at INFO.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ..core.digest import Digest
from ..core.errors import InsufficientSpace, InvalidName, ModelNotFound, SeedError
from ..core.manifest import MANIFEST_MEDIA_TYPE, Layer
from ..core.reference import ModelName
from ..store import platform as _platform
from ..store.fsutil import open_nofollow
from ..store.store import ModelStore
from .index import SEGMENT, MirrorIndex, Repo
from .signatures import MirrorSignatures

if TYPE_CHECKING:
    from .cache import PullThroughCache

__all__ = ["MirrorApp", "RedirectPolicy"]

log = logging.getLogger("ollama_seed.mirror")
access_log = logging.getLogger("ollama_seed.mirror.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RedirectPolicy = Callable[[Mapping[str, Any]], "str | None"]
"""``scope -> base URL`` (``http://localhost:8080``) for a blob GET's 307, or None to serve it here."""

CHUNK = 1024 * 1024
MAX_PATH = 1024
MAX_PAGE = 10_000
_DIGITS = re.compile(r"[0-9]*")  # ASCII only: str.isdigit() also takes superscripts, which int() refuses
DIRECT = "direct=1"  # the query that marks a request sent by our own 307: serve the bytes
_API = [(b"docker-distribution-api-version", b"registry/2.0")]
_ALLOW = [(b"allow", b"GET, HEAD")]


class _Reply(Exception):
    """An error response; raised anywhere below the handler."""

    def __init__(self, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


class _Ctx:
    """Wraps ``send`` to remember the status and count body bytes for the access log."""

    def __init__(self, send: Send) -> None:
        self._send, self.status, self.sent = send, 0, 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        else:
            self.sent += len(message.get("body", b""))
        await self._send(message)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` as ``(start, end)`` with *end* exclusive.

    None means "ignore Range, send everything" (absent, malformed, or several ranges, as RFC 9110
    allows). Raises ``_Reply(416)`` when the range cannot be satisfied.
    """
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not _DIGITS.fullmatch(first) or not _DIGITS.fullmatch(last) or len(first + last) > 19:
        return None
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
        if last and int(last) < start:
            return None
    elif last:
        start, end = max(0, size - int(last)), size
        if int(last) == 0:
            start = size
    else:
        return None
    if start >= size:
        raise _Reply(
            416,
            "RANGE_INVALID",
            f"range {header!r} is outside the blob's {size} bytes",
            [(b"content-range", f"bytes */{size}".encode())],
        )
    return start, end


def _segment(raw: bytes) -> str:
    try:
        text = urllib.parse.unquote(raw.decode("ascii"), errors="strict")
    except UnicodeError:
        raise ValueError("not ASCII") from None
    if not SEGMENT.fullmatch(text):
        raise ValueError(f"bad path segment {text[:80]!r}")
    return text


def _repo(parts: list[str]) -> Repo:
    if len(parts) == 2:
        host, (ns, model) = None, parts
    elif len(parts) == 3:
        host, ns, model = parts
    else:
        raise _Reply(404, "NAME_UNKNOWN", "a repository is <namespace>/<model> or <host>/<namespace>/<model>")
    _check_name(host or "h", ns, model)
    return Repo(host, ns, model)


def _check_name(host: str, ns: str, model: str, tag: str = "latest") -> None:
    """Raise 400 unless the parts parse back to exactly themselves as a model name."""
    try:
        ModelName.from_parts(host, ns, model, tag)
    except InvalidName as exc:
        raise _Reply(400, "NAME_INVALID", str(exc)) from None


def _page(items: list[str], query: dict[str, list[str]], path: str) -> tuple[list[str], list[tuple[bytes, bytes]]]:
    last = query.get("last", [""])[0]
    n_text = query.get("n", [""])[0]
    n = int(n_text) if n_text and _DIGITS.fullmatch(n_text) and len(n_text) < 10 else MAX_PAGE
    n = max(0, min(n, MAX_PAGE))
    items = [i for i in items if i > last] if last else items
    headers: list[tuple[bytes, bytes]] = []
    if len(items) > n:
        items = items[:n]
        link = f'<{path}?{urllib.parse.urlencode({"last": items[-1] if items else last, "n": n})}>; rel="next"'
        headers.append((b"link", link.encode()))
    return items, headers


class MirrorApp:
    """A read-only Docker Registry v2 API over a models directory (an ASGI 3 application).

    Args:
        store: the models directory to serve.
        cache: a pull-through cache; misses are fetched from its upstream (see :mod:`mirror.cache`).
        redirect: decides whether a blob GET answers 307 to another address of this server
            (see :class:`~ollama_seed.mirror.redirect.BlobRedirect`); the bytes are then served at that address.
        hosts: registry hosts a two-part repository is looked up under, in order.
        chunk_size: bytes per read and per write of a blob body.
    """

    def __init__(
        self,
        store: ModelStore,
        *,
        cache: PullThroughCache | None = None,
        redirect: RedirectPolicy | None = None,
        hosts: Sequence[str] | None = None,
        chunk_size: int = CHUNK,
    ) -> None:
        self.store = store
        self.cache = cache
        self.redirect = redirect
        self.hosts = tuple(hosts) if hosts else None
        self.chunk_size = chunk_size
        self.log_access = True  # off when a wrapper (mirror.site) logs the requests itself
        self.index = MirrorIndex(store, hosts=self.hosts, first_host=cache.host if cache is not None else None)
        self.signatures = MirrorSignatures(store, self.index)

    async def __aenter__(self) -> MirrorApp:
        if self.cache is not None:
            await self.cache.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.cache is not None:
            await self.cache.__aexit__(None, None, None)

    # -- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        ctx, started = _Ctx(send), time.monotonic()
        try:
            await self._handle(scope, receive, ctx)
        except _Reply as reply:
            await self._error(ctx, scope, reply)
        except Exception as exc:
            if ctx.status:
                raise
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await self._error(ctx, scope, _Reply(500, "UNKNOWN", f"internal error: {type(exc).__name__}"))
        finally:
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                self._log(scope, ctx, time.monotonic() - started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()
        try:
            async with self:
                await send({"type": "lifespan.startup.complete"})
                await receive()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    @staticmethod
    def _log(scope: Scope, ctx: _Ctx, seconds: float) -> None:
        client = scope.get("client") or ("-", 0)
        query = scope.get("query_string", b"").decode("latin-1")
        headers = dict(scope.get("headers", []))
        agent = headers.get(b"user-agent", b"-").decode("latin-1")
        access_log.info(
            '%s "%s %s%s" %d %d %.3fs "%s"',
            client[0],
            scope.get("method"),
            scope.get("path"),
            f"?{query}" if query else "",
            ctx.status,
            ctx.sent,
            seconds,
            agent,
        )

    async def _error(self, send: _Ctx, scope: Scope, reply: _Reply) -> None:
        body = json.dumps({"errors": [{"code": reply.code, "message": reply.message}]}).encode()
        body_out = b"" if scope.get("method") == "HEAD" else body
        await self._start(
            send,
            reply.status,
            [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *reply.headers],
        )
        await send({"type": "http.response.body", "body": body_out})

    @staticmethod
    async def _start(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [*_API, *headers]})

    async def _json(self, send: Send, scope: Scope, doc: object, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        body = json.dumps(doc).encode()
        await self._start(
            send, 200, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
        )
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    # -- routing -------------------------------------------------------------------------
    async def _handle(self, scope: Scope, receive: Receive, send: _Ctx) -> None:
        raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        raw = raw.split(b"?", 1)[0]
        if len(raw) > MAX_PATH:
            raise _Reply(414, "NAME_INVALID", f"the path is longer than {MAX_PATH} bytes")
        parts = raw.split(b"/")
        if parts[:2] != [b"", b"v2"]:
            raise _Reply(404, "NOT_FOUND", "this server only answers the registry API under /v2/")
        if scope["method"] not in ("GET", "HEAD"):
            raise _Reply(405, "UNSUPPORTED", "this mirror is read-only: only GET and HEAD are allowed", _ALLOW)
        segs = parts[2:]
        if segs in ([], [b""]):
            await self._json(send, scope, {})
            return
        try:
            path = [_segment(s) for s in segs]
        except ValueError as exc:
            raise _Reply(400, "NAME_INVALID", f"invalid path: {exc}") from None
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if path == ["_catalog"]:
            items, links = _page(self.index.catalog(), query, "/v2/_catalog")
            await self._json(send, scope, {"repositories": items}, links)
            return
        if len(path) >= 4 and path[-2:] == ["tags", "list"]:
            await self._tags(send, scope, _repo(path[:-2]), query)
            return
        if len(path) >= 4 and path[-2] == "manifests":
            await self._manifest(send, scope, _repo(path[:-2]), path[-1])
            return
        if len(path) >= 4 and path[-2] == "blobs":
            await self._blob(send, scope, receive, _repo(path[:-2]), path[-1], DIRECT in query_flags(scope))
            return
        if len(path) >= 4 and path[-2] == "referrers":
            try:
                found = self.signatures.referrers_of(_repo(path[:-2]), path[-1], query.get("artifactType", [None])[0])
            except InvalidName as exc:
                raise _Reply(400, "DIGEST_INVALID", str(exc)) from None
            if found is None:
                raise _Reply(404, "MANIFEST_UNKNOWN", f"manifest unknown: {path[-1]}")
            await self._document(send, scope, found)
            return
        raise _Reply(404, "NOT_FOUND", "unknown registry API path")

    # -- handlers --------------------------------------------------------------------------
    async def _tags(self, send: Send, scope: Scope, repo: Repo, query: dict[str, list[str]]) -> None:
        tags = set(self.index.tags(repo))
        if self.cache is not None and repo.host in (None, self.cache.host):
            tags.update(self.cache.known_tags(repo.namespace, repo.model))
        if not tags:
            raise _Reply(404, "NAME_UNKNOWN", f"repository {repo.path} is not in this mirror")
        items, links = _page(sorted(tags), query, f"/v2/{repo.path}/tags/list")
        await self._json(send, scope, {"name": repo.path, "tags": items}, links)

    async def _manifest(self, send: Send, scope: Scope, repo: Repo, ref: str) -> None:
        if ref.startswith("sha256:"):
            try:
                Digest.parse(ref)
            except InvalidName as exc:
                raise _Reply(400, "DIGEST_INVALID", str(exc)) from None
        else:
            _check_name(repo.host or "h", repo.namespace, repo.model, ref)
        manifest = self.index.find_manifest(repo, ref)
        if manifest is None and self.cache is not None and repo.host in (None, self.cache.host):
            try:
                manifest = await self.cache.manifest(repo.namespace, repo.model, ref)
            except ModelNotFound:
                manifest = None
            except SeedError as exc:
                raise _Reply(502, "UNKNOWN", f"upstream: {exc}") from None
        if manifest is None:
            signature = self.signatures.manifest(repo, ref)
            if signature is None:
                raise _Reply(404, "MANIFEST_UNKNOWN", f"manifest unknown: {repo.path}:{ref}")
            await self._document(send, scope, signature)
            return
        await self._start(
            send,
            200,
            [
                (b"content-type", (manifest.media_type or MANIFEST_MEDIA_TYPE).encode()),
                (b"content-length", str(len(manifest.raw)).encode()),
                (b"docker-content-digest", str(manifest.digest).encode()),
                (b"etag", f'"{manifest.digest}"'.encode()),
            ],
        )
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else manifest.raw})

    async def _blob(self, send: _Ctx, scope: Scope, receive: Receive, repo: Repo, ref: str, direct: bool) -> None:
        try:
            digest = Digest.parse(ref)
        except InvalidName as exc:
            raise _Reply(400, "DIGEST_INVALID", str(exc)) from None
        if not ref.startswith("sha256:"):
            raise _Reply(400, "DIGEST_INVALID", "a digest is written sha256:<hex>")
        layer = self.index.repo_layers(repo).get(digest)
        cache = self.cache if self.cache is not None and repo.host in (None, self.cache.host) else None
        try:
            if layer is None and cache is not None:
                layer = await cache.layer(repo.namespace, repo.model, digest)
        except ModelNotFound:
            layer = None
        except SeedError as exc:
            raise _Reply(502, "UNKNOWN", f"upstream: {exc}") from None
        if layer is None:
            data = self.signatures.blob(repo, digest)
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
        if self.store.blob_size(digest) != layer.size:
            if cache is None:
                log.warning("%s is listed by %s but missing or damaged in %s", digest, repo.path, self.store.root)
                raise _Reply(404, "BLOB_UNKNOWN", f"blob {digest} is missing from this mirror's store")
            if scope["method"] == "HEAD":
                await self._blob_head(send, layer, 200, layer.size, [])
                return
            try:
                await cache.fetch_blob(repo.namespace, repo.model, layer)
            except InsufficientSpace as exc:  # --max-cache-size reached, or the disk is full
                raise _Reply(507, "UNAVAILABLE", str(exc)) from None
            except SeedError as exc:
                raise _Reply(502, "UNKNOWN", f"upstream: {exc}") from None
        await self._send_blob(send, scope, receive, layer)

    async def _document(self, send: Send, scope: Scope, doc: tuple[str, bytes, list[tuple[bytes, bytes]]]) -> None:
        """A small signature document (a referrers list, a manifest or a blob) with its digest."""
        media_type, body, extra = doc
        digest = f"sha256:{hashlib.sha256(body).hexdigest()}".encode()
        headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
        await self._start(send, 200, [*headers, (b"docker-content-digest", digest), *extra])
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def _blob_head(
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
        await send({"type": "http.response.body", "body": b""})

    async def _send_blob(self, send: Send, scope: Scope, receive: Receive, layer: Layer) -> None:
        try:
            fd = open_nofollow(self.store.layout.blob(layer.digest), os.O_RDONLY)
        except OSError:
            raise _Reply(404, "BLOB_UNKNOWN", f"blob {layer.digest} is not in this mirror") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != layer.size:
                raise _Reply(404, "BLOB_UNKNOWN", f"blob {layer.digest} is damaged in this mirror")
            headers = dict(scope.get("headers", []))
            rng = headers.get(b"range", b"").decode("latin-1") or None
            if_range = headers.get(b"if-range", b"").decode("latin-1")
            if if_range and if_range != f'"{layer.digest}"':
                rng = None
            span = parse_range(rng, layer.size)
            start, end = span if span is not None else (0, layer.size)
            extra = [(b"content-range", f"bytes {start}-{end - 1}/{layer.size}".encode())] if span else []
            status = 206 if span else 200
            if scope["method"] == "HEAD" or start == end:
                await self._blob_head(send, layer, status, end - start, extra)
                return
            await self._start(
                send,
                status,
                [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(end - start).encode()),
                    (b"accept-ranges", b"bytes"),
                    (b"docker-content-digest", str(layer.digest).encode()),
                    (b"etag", f'"{layer.digest}"'.encode()),
                    (b"cache-control", b"max-age=31536000, immutable"),
                    *extra,
                ],
            )
            await self._stream(send, receive, fd, start, end)
        finally:
            os.close(fd)

    async def _stream(self, send: Send, receive: Receive, fd: int, start: int, end: int) -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    await anyio.lowlevel.checkpoint()  # a well-behaved server blocks in receive() anyway
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            pos = start
            while pos < end:
                data = await anyio.to_thread.run_sync(_platform.current.pread, fd, min(self.chunk_size, end - pos), pos)
                if not data:
                    raise OSError(f"blob file shrank while it was being sent (at byte {pos})")
                pos += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": pos < end})
            tg.cancel_scope.cancel()


def query_flags(scope: Scope) -> set[str]:
    """The ``key=value`` items of the query string, as written."""
    return set(scope.get("query_string", b"").decode("latin-1").split("&")) - {""}
