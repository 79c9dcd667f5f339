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
import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import anyio

from ..core.digest import Digest
from ..core.errors import InvalidName
from .app import FILTER, MirrorApp
from .asgi import NOSNIFF, Counting, Message, Receive, Scope, Send, clean, log_access, reply_error, run_lifespan
from .auth import Authenticator, Principal
from .budget import CacheBudget
from .metrics import CONTENT_TYPE, MirrorMetrics, begin_request, end_request
from .routes import DIRECT, Route, query_flags, route

__all__ = ["SiteApp"]

log = logging.getLogger("ollama_seed.mirror")
auth_log = logging.getLogger("ollama_seed.mirror.auth")
SIGNED_FOR = 600  # seconds a signed blob redirect stays valid
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # metric labels; others: "other"


def _claimed_user(header: bytes | None) -> str:
    """The user name of a Basic header, for the log (the password is never decoded into a log)."""
    scheme, _, value = (header or b"").strip().partition(b" ")
    if scheme.lower() != b"basic":
        return "-"
    try:
        user = base64.b64decode(value.strip(), validate=True).split(b":", 1)[0].decode("utf-8")
    except (binascii.Error, UnicodeError):
        return "-"
    return clean(repr(user[:64]))


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

    # -- ASGI -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(self, receive, send)
            return
        if scope["type"] != "http":
            return
        raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        where = route(raw)
        ctx = Counting(send, self._signer() if self.auth is not None else None)
        started = time.monotonic()
        note, token = begin_request()
        self.metrics.in_flight.inc()
        user: str | None = None
        try:
            if where.kind in ("healthz", "readyz", "metrics"):
                user = await self._ops(where.kind, scope, ctx)
            else:
                user = await self._v2(scope, receive, ctx, raw, where)
        finally:
            end_request(token)
            self.metrics.in_flight.dec()
            seconds = time.monotonic() - started
            method = str(scope.get("method", ""))
            label = method if method in METHODS else "other"
            self.metrics.requests.labels(where.kind, label, str(ctx.status)).inc()
            self.metrics.response_bytes.labels(where.kind).inc(ctx.sent)
            self.metrics.duration.labels(where.kind).observe(seconds)
            if where.kind in ("manifest", "blob") and self.mirror.cache is not None and 200 <= ctx.status < 300:
                self.metrics.pullthrough.labels(where.kind, "miss" if note.miss else "hit").inc()
            log_access(scope, ctx.status, ctx.sent, seconds, where.kind, user)

    # -- login --------------------------------------------------------------------------------
    async def _login(self, scope: Scope, send: Send) -> Principal | None:
        """The caller's principal; None after a 401 or 429 was sent."""
        assert self.auth is not None
        address = str((scope.get("client") or ("unknown",))[0])
        header = dict(scope.get("headers", [])).get(b"authorization")
        result = await self.auth.authenticate(header, address)
        if isinstance(result, Principal):
            return result
        self.metrics.auth_failures.labels(result.reason).inc()
        if result.reason == "rate-limited":
            wait = result.retry_after or 1.0
            await reply_error(
                send,
                scope,
                429,
                "TOOMANYREQUESTS",
                f"too many failed logins; try again in {wait:.0f} s",
                [(b"retry-after", str(int(wait + 0.999)).encode())],
            )
            return None
        if result.reason != "missing":
            auth_log.warning(
                "failed login from %s: %s (user %s)",
                clean(address),
                result.reason.replace("-", " "),
                _claimed_user(header),
            )
        await reply_error(
            send, scope, 401, "UNAUTHORIZED", "authentication required", [(b"www-authenticate", self.auth.challenge)]
        )
        return None

    def _signer(self) -> Callable[[Message], Message]:
        def sign(message: Message) -> Message:
            if int(message["status"]) != 307:
                return message
            return {
                **message,
                "headers": [(k, self._sign(v) if k == b"location" else v) for k, v in message.get("headers", [])],
            }

        return sign

    def _sign(self, location: bytes) -> bytes:
        expires = str(int(time.time()) + SIGNED_FOR)
        path = urllib.parse.urlsplit(location.decode("latin-1")).path
        mac = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
        return location + f"&expires={expires}&signature={mac}".encode()

    def _signed(self, scope: Scope, raw: bytes) -> bool:
        """True if the request carries a valid, unexpired signature for its own path."""
        flags = query_flags(scope.get("query_string", b""))
        if DIRECT not in flags:
            return False
        values = dict(f.split("=", 1) for f in flags if "=" in f)
        expires, mac = values.get("expires", ""), values.get("signature", "")
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or int(expires) < time.time():
            return False
        path = raw.split(b"?", 1)[0].decode("latin-1")
        want = hmac.new(self._key, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, mac)

    # -- /v2/ ---------------------------------------------------------------------------------
    async def _v2(self, scope: Scope, receive: Receive, send: Counting, raw: bytes, where: Route) -> str | None:
        user: str | None = None
        if self.auth is not None and not (where.kind == "blob" and self._signed(scope, raw)):
            principal = await self._login(scope, send)
            if principal is None:
                return None
            user = principal.user
            access = self.auth.access
            if access is not None:
                if not self._may_read(user, where):
                    codes = {"manifest": "MANIFEST_UNKNOWN", "blob": "BLOB_UNKNOWN"}
                    await reply_error(
                        send, scope, 404, codes.get(where.kind, "NAME_UNKNOWN"), "repository not known to this mirror"
                    )
                    return user
                reader = user
                scope = {**scope, FILTER: lambda name: access.allows(reader, self._names(tuple(name.split("/"))))}
        repo = where.repo
        digest = None
        if where.kind == "blob" and repo is not None:
            try:
                digest = Digest.parse(where.ref or "")
            except InvalidName:
                digest = None
        if self.budget is not None and digest is not None:
            with self.budget.pinned([digest]):
                await self.mirror(scope, receive, send)
        else:
            await self.mirror(scope, receive, send)
        if self.budget is not None and repo is not None and 200 <= send.status < 300:
            host = repo[0] if len(repo) == 3 else None
            if where.kind == "manifest" and where.ref is not None and not where.ref.startswith("sha256:"):
                self.budget.touch(host, repo[-2], repo[-1], tag=where.ref)
            elif where.kind == "blob" and digest is not None:
                self.budget.touch(host, repo[-2], repo[-1], digest=digest)
        return user

    def _names(self, repo: tuple[str, ...]) -> list[str]:
        """The names a repository of a request is known by, for the access rules."""
        if len(repo) == 2:
            return ["/".join(repo)]
        search = {h.lower() for h in self.mirror.index.search_hosts()}
        return ["/".join(repo)] + (["/".join(repo[1:])] if repo[0].lower() in search else [])

    def _may_read(self, user: str, where: Route) -> bool:
        assert self.auth is not None and self.auth.access is not None
        if where.kind in ("base", "catalog"):
            return True
        if where.repo is None or where.kind not in ("manifest", "blob", "tags", "referrers"):
            return False  # anything the rules cannot name is refused
        return self.auth.access.allows(user, self._names(where.repo))

    # -- health and metrics ------------------------------------------------------------------
    async def _ops(self, route: str, scope: Scope, send: Send) -> str | None:
        user = None
        if route == "metrics" and self.metrics_auth and self.auth is not None:
            principal = await self._login(scope, send)
            if principal is None:
                return None
            user = principal.user
        if scope.get("method") not in ("GET", "HEAD"):
            await reply_error(send, scope, 405, "UNSUPPORTED", "only GET and HEAD", [(b"allow", b"GET, HEAD")])
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
                    NOSNIFF,
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
