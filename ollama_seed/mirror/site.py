"""The mirror as a site runs it: an ASGI layer in front of :class:`~ollama_seed.mirror.app.MirrorApp`.

It adds, in this order for each request:

- ``/healthz`` (the process answers), ``/readyz`` (the store is readable and, with an upstream,
  the upstream answers ``/v2/``) and ``/metrics`` (Prometheus text); none needs a login unless
  ``metrics_auth`` (then ``/metrics`` does);
- with an :class:`~ollama_seed.mirror.auth.Authenticator`: every other path needs HTTP Basic
  (or a static bearer token); without it, or with wrong ones, ``401`` with
  ``WWW-Authenticate: Basic realm="..."`` as Docker Distribution answers. Failed logins are
  logged (the user name, never the password) and, past the limiter's count, answered ``429``;
- per-repository rules: a repository the user may not read is ``404``, as one that does not
  exist; the catalog lists only what the user may read;
- a blob being sent is *pinned* (the cache budget never evicts its model), and each manifest
  or blob served marks its model as recently served;
- metrics per route and status, and one access-log line per request on
  ``ollama_seed.mirror.access`` with the fields also attached as ``record.access`` (for
  ``--log-format json``).

A blob redirect (the 307 stock Ollama needs) goes to a URL the client fetches without its
credentials, so with a login the location is signed (HMAC of the path and an expiry, a key made
at start) and a request carrying a valid signature for its own path needs no login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from ..core.digest import Digest
from ..core.errors import InvalidName
from .app import DIRECT, Message, MirrorApp, Receive, Scope, Send, query_flags
from .auth import Authenticator, Principal
from .budget import CacheBudget
from .index import SEGMENT
from .metrics import CONTENT_TYPE, MirrorMetrics, begin_request, end_request

__all__ = ["SiteApp", "route_of"]

log = logging.getLogger("ollama_seed.mirror")
auth_log = logging.getLogger("ollama_seed.mirror.auth")
access_log = logging.getLogger("ollama_seed.mirror.access")
_API = (b"docker-distribution-api-version", b"registry/2.0")
_OPS = {"/healthz": "healthz", "/readyz": "readyz", "/metrics": "metrics"}
SIGNED_FOR = 600  # seconds a signed blob redirect stays valid


def route_of(parts: Sequence[str]) -> str:
    """The metrics label of a ``/v2/`` request: base, catalog, tags, manifest, blob or other."""
    if parts in ([], [""]):
        return "base"
    if parts == ["_catalog"]:
        return "catalog"
    if len(parts) >= 4 and parts[-2:] == ["tags", "list"]:
        return "tags"
    if len(parts) >= 4 and parts[-2] == "manifests":
        return "manifest"
    if len(parts) >= 4 and parts[-2] == "blobs":
        return "blob"
    if len(parts) >= 4 and parts[-2] == "referrers":
        return "referrers"
    return "other"


def _decode(raw: bytes) -> list[str] | None:
    """The segments after ``/v2/``, decoded as the mirror app decodes them; None if it would refuse them."""
    parts = raw.split(b"?", 1)[0].split(b"/")
    if parts[:2] != [b"", b"v2"]:
        return None
    segs = parts[2:]
    if segs in ([], [b""]):
        return []
    out = []
    for s in segs:
        try:
            text = urllib.parse.unquote(s.decode("ascii"), errors="strict")
        except UnicodeError:
            return None
        if not SEGMENT.fullmatch(text):
            return None
        out.append(text)
    return out


def _claimed_user(header: bytes | None) -> str:
    """The user name of a Basic header, for the log (the password is never decoded into a log)."""
    scheme, _, value = (header or b"").strip().partition(b" ")
    if scheme.lower() != b"basic":
        return "-"
    try:
        user = base64.b64decode(value.strip(), validate=True).split(b":", 1)[0].decode("utf-8")
    except (binascii.Error, UnicodeError):
        return "-"
    return repr(user[:64])


class _Counting:
    """Wraps ``send``: remembers the status, counts body bytes, signs 307 locations when asked."""

    def __init__(self, send: Send, sign: Callable[[bytes], bytes] | None = None) -> None:
        self._send, self._sign, self.status, self.sent = send, sign, 0, 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            if self.status == 307 and self._sign is not None:
                message = {
                    **message,
                    "headers": [(k, self._sign(v) if k == b"location" else v) for k, v in message.get("headers", [])],
                }
        else:
            self.sent += len(message.get("body", b""))
        await self._send(message)


class SiteApp:
    """The mirror with login, per-repository access, health, metrics and cache accounting (ASGI 3).

    Args:
        mirror: the registry application.
        auth: logins and access rules; None serves everyone.
        metrics: where requests are counted; a new :class:`MirrorMetrics` if None.
        budget: the cache budget (last-served times, pins); None without pull-through.
        metrics_auth: ``/metrics`` needs a login too.
    """

    def __init__(
        self,
        mirror: MirrorApp,
        *,
        auth: Authenticator | None = None,
        metrics: MirrorMetrics | None = None,
        budget: CacheBudget | None = None,
        metrics_auth: bool = False,
    ) -> None:
        self.mirror = mirror
        self.auth = auth
        self.metrics = metrics or MirrorMetrics()
        self.budget = budget
        self.metrics_auth = metrics_auth
        mirror.log_access = False
        self._key = secrets.token_bytes(32)
        self._ready: tuple[float, str | None] = (0.0, None)

    @property
    def store(self) -> Any:
        return self.mirror.store

    async def __aenter__(self) -> SiteApp:
        if self.budget is not None:
            self.budget.start()
        await self.mirror.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.mirror.__aexit__(None, None, None)
        finally:
            if self.budget is not None:
                self.budget.flush(force=True)

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

    # -- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        parts = _decode(raw)
        route = _OPS.get(raw.split(b"?", 1)[0].decode("latin-1"), "other") if parts is None else route_of(parts)
        ctx = _Counting(send, self._signer(scope) if self.auth is not None else None)
        started = time.monotonic()
        note, token = begin_request()
        self.metrics.in_flight.inc()
        user: str | None = None
        try:
            if route in ("healthz", "readyz", "metrics"):
                user = await self._ops(route, scope, ctx)
            else:
                user = await self._v2(scope, receive, ctx, raw, parts, route)
        finally:
            end_request(token)
            self.metrics.in_flight.dec()
            seconds = time.monotonic() - started
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(route, method, str(ctx.status)).inc()
            self.metrics.response_bytes.labels(route).inc(ctx.sent)
            self.metrics.duration.labels(route).observe(seconds)
            if route in ("manifest", "blob") and self.mirror.cache is not None and 200 <= ctx.status < 300:
                self.metrics.pullthrough.labels(route, "miss" if note.miss else "hit").inc()
            if access_log.isEnabledFor(logging.INFO):
                self._log(scope, ctx, seconds, route, user)

    @staticmethod
    def _log(scope: Scope, ctx: _Counting, seconds: float, route: str, user: str | None) -> None:
        client = scope.get("client") or ("-", 0)
        query = scope.get("query_string", b"").decode("latin-1").split("&expires=", 1)[0]
        agent = dict(scope.get("headers", [])).get(b"user-agent", b"-").decode("latin-1")
        fields = {
            "client": client[0],
            "method": scope.get("method"),
            "path": scope.get("path"),
            "query": query,
            "status": ctx.status,
            "bytes": ctx.sent,
            "seconds": round(seconds, 6),
            "user_agent": agent,
            "user": user,
            "route": route,
        }
        access_log.info(
            '%s "%s %s%s" %d %d %.3fs "%s"%s',
            client[0],
            scope.get("method"),
            scope.get("path"),
            f"?{query}" if query else "",
            ctx.status,
            ctx.sent,
            seconds,
            agent,
            f" user={user}" if user else "",
            extra={"access": fields},
        )

    async def _reply(
        self,
        send: Send,
        status: int,
        code: str,
        message: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        scope: Scope | None = None,
    ) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    _API,
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        head = scope is not None and scope.get("method") == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})

    # -- login --------------------------------------------------------------------------------
    async def _login(self, scope: Scope, send: Send) -> Principal | None:
        """The caller's principal; None after a 401 or 429 was sent."""
        assert self.auth is not None
        address = str((scope.get("client") or ("unknown",))[0])
        header = dict(scope.get("headers", [])).get(b"authorization")
        wait = self.auth.limiter.retry_after(address)
        if wait is not None:
            self.metrics.auth_failures.labels("rate-limited").inc()
            await self._reply(
                send,
                429,
                "TOOMANYREQUESTS",
                f"too many failed logins from this address; try again in {wait:.0f} s",
                [(b"retry-after", str(int(wait + 0.999)).encode())],
                scope,
            )
            return None
        result = await self.auth.authenticate(header)
        if isinstance(result, Principal):
            return result
        self.metrics.auth_failures.labels(result).inc()
        if result != "missing":
            self.auth.limiter.failed(address)
            auth_log.warning(
                "failed login from %s: %s (user %s)", address, result.replace("-", " "), _claimed_user(header)
            )
        await self._reply(
            send, 401, "UNAUTHORIZED", "authentication required", [(b"www-authenticate", self.auth.challenge)], scope
        )
        return None

    def _signer(self, scope: Scope) -> Callable[[bytes], bytes]:
        def sign(location: bytes) -> bytes:
            expires = str(int(time.time()) + SIGNED_FOR)
            path = urllib.parse.urlsplit(location.decode("latin-1")).path
            mac = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
            return location + f"&expires={expires}&signature={mac}".encode()

        return sign

    def _signed(self, scope: Scope, raw: bytes) -> bool:
        """True if the request carries a valid, unexpired signature for its own path."""
        flags = query_flags(scope)
        if DIRECT not in flags:
            return False
        values = dict(f.split("=", 1) for f in flags if "=" in f)
        expires, mac = values.get("expires", ""), values.get("signature", "")
        if not (expires.isascii() and expires.isdigit()) or int(expires) < time.time():
            return False
        path = raw.split(b"?", 1)[0].decode("latin-1")
        want = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, mac)

    # -- /v2/ ---------------------------------------------------------------------------------
    async def _v2(
        self, scope: Scope, receive: Receive, send: _Counting, raw: bytes, parts: list[str] | None, route: str
    ) -> str | None:
        user: str | None = None
        if self.auth is not None and not (route == "blob" and self._signed(scope, raw)):
            principal = await self._login(scope, send)
            if principal is None:
                return None
            user = principal.user
            if self.auth.access is not None and not self._may_read(user, parts, route):
                codes = {"manifest": "MANIFEST_UNKNOWN", "blob": "BLOB_UNKNOWN"}
                await self._reply(
                    send, 404, codes.get(route, "NAME_UNKNOWN"), "repository not known to this mirror", scope=scope
                )
                return user
            if route == "catalog" and self.auth.access is not None:
                await self._filtered_catalog(scope, receive, send, user)
                return user
        repo = parts[:-2] if parts is not None and route in ("manifest", "blob", "tags") else None
        digest = None
        if route == "blob" and repo is not None and parts is not None:
            try:
                digest = Digest.parse(parts[-1])
            except InvalidName:
                digest = None
        if self.budget is not None and digest is not None:
            with self.budget.pinned([digest]):
                await self.mirror(scope, receive, send)
        else:
            await self.mirror(scope, receive, send)
        if self.budget is not None and repo is not None and len(repo) in (2, 3) and 200 <= send.status < 300:
            host = repo[0] if len(repo) == 3 else None
            if route == "manifest" and parts is not None and not parts[-1].startswith("sha256:"):
                self.budget.touch(host, repo[-2], repo[-1], tag=parts[-1])
            elif route == "blob" and digest is not None:
                self.budget.touch(host, repo[-2], repo[-1], digest=digest)
        return user

    def _names(self, repo: list[str]) -> list[str]:
        """The names a repository of a request is known by, for the access rules."""
        if len(repo) == 2:
            return ["/".join(repo)]
        search = {h.lower() for h in self.mirror.index.search_hosts()}
        return ["/".join(repo)] + (["/".join(repo[1:])] if repo[0].lower() in search else [])

    def _may_read(self, user: str, parts: list[str] | None, route: str) -> bool:
        assert self.auth is not None and self.auth.access is not None
        if route in ("base", "catalog"):
            return True
        if parts is None or route not in ("manifest", "blob", "tags", "referrers") or len(parts) - 2 not in (2, 3):
            return False  # anything the rules cannot name is refused
        return self.auth.access.allows(user, self._names(parts[:-2]))

    async def _filtered_catalog(self, scope: Scope, receive: Receive, send: Send, user: str) -> None:
        """The mirror's catalog page with only the repositories *user* may read."""
        assert self.auth is not None and self.auth.access is not None
        start: dict[str, Any] = {}
        body = bytearray()

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                body.extend(message.get("body", b""))

        await self.mirror(scope, receive, keep)
        status = int(start.get("status", 500))
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        if status == 200 and body:
            doc = json.loads(bytes(body))
            doc["repositories"] = [
                r for r in doc.get("repositories", []) if self.auth.access.allows(user, self._names(r.split("/")))
            ]
            body = bytearray(json.dumps(doc).encode())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else bytes(body)})

    # -- health and metrics ------------------------------------------------------------------
    async def _ops(self, route: str, scope: Scope, send: Send) -> str | None:
        user = None
        if route == "metrics" and self.metrics_auth and self.auth is not None:
            principal = await self._login(scope, send)
            if principal is None:
                return None
            user = principal.user
        if scope.get("method") not in ("GET", "HEAD"):
            await self._reply(send, 405, "UNSUPPORTED", "only GET and HEAD", [(b"allow", b"GET, HEAD")], scope)
            return user
        if route == "metrics":
            body, status, kind = self.metrics.render(), 200, CONTENT_TYPE.encode()
        else:
            problem = await self._not_ready() if route == "readyz" else None
            status, kind = (503 if problem else 200), b"text/plain; charset=utf-8"
            body = f"not ready: {problem}\n".encode() if problem else b"ok\n"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})
        return user

    async def _not_ready(self) -> str | None:
        """Why the mirror cannot serve now; the upstream's answer is kept for 10 s."""
        manifests = self.mirror.store.layout.manifests_dir
        try:
            await anyio.to_thread.run_sync(os.listdir, manifests)
        except OSError as exc:
            return f"the store {self.mirror.store.root} is not readable: {exc.strerror or exc}"
        cache = self.mirror.cache
        if cache is None:
            return None
        checked, problem = self._ready
        if time.monotonic() - checked > 10.0:
            problem = await cache.unreachable()
            self._ready = (time.monotonic(), problem)
        return f"upstream: {problem}" if problem else None
