"""The mirror's ASGI plumbing: message types, the lifespan, one counting ``send``, one access log, replies.

Every response of the mirror goes through :class:`Counting` (its status and body bytes, for the
access log and the metrics) and ends in one :func:`log_access` line. Text that came from the
client (the path, the query, the User-Agent, a user name) is escaped before it reaches a log
line: a control character is written ``\\xNN``, so a request cannot forge lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

__all__ = [
    "ASGIApp",
    "ClientGone",
    "Counting",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "clean",
    "log_access",
    "reply_error",
    "reply_json",
    "run_lifespan",
]

access_log = logging.getLogger("ollama_seed.mirror.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
NOSNIFF = (b"x-content-type-options", b"nosniff")
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


class ClientGone(OSError):
    """``send`` after the client went away; ``sent`` is how many body bytes of the message it took."""

    sent: int = 0


def clean(text: object, limit: int = 2048) -> str:
    """*text* for a log line: control characters as ``\\xNN``, at most *limit* characters."""
    value = str(text)
    if len(value) > limit:
        value = value[:limit] + "..."
    return value.translate(_ESCAPES)


class Counting:
    """Wraps ``send``: remembers the status, counts body bytes (zero-copy bodies too).

    *on_start* may rewrite the ``http.response.start`` message (the site signs 307 locations).
    """

    def __init__(self, send: Send, on_start: Callable[[Message], Message] | None = None) -> None:
        self._send, self._on_start, self.status, self.sent = send, on_start, 0, 0

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            if self._on_start is not None:
                message = self._on_start(message)
            await self._send(message)
            return
        try:
            await self._send(message)
        except ClientGone as exc:
            self.sent += exc.sent
            raise
        if kind == "http.response.zerocopysend":
            self.sent += int(message.get("count", 0))
        else:
            self.sent += len(message.get("body", b""))


async def run_lifespan(app: contextlib.AbstractAsyncContextManager[Any], receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol over an async context manager (entered at startup, left at shutdown)."""
    await receive()
    try:
        async with app:
            await send({"type": "lifespan.startup.complete"})
            await receive()
    except Exception as exc:
        await send({"type": "lifespan.startup.failed", "message": str(exc)})
        return
    await send({"type": "lifespan.shutdown.complete"})


async def reply_json(
    send: Send, scope: Scope, status: int, doc: object, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON response (no body for HEAD), with the registry's API version header."""
    body = json.dumps(doc).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                API_VERSION,
                NOSNIFF,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})


async def reply_error(
    send: Send, scope: Scope, status: int, code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """An error in the registry's shape: ``{"errors": [{"code", "message", "detail"}]}``."""
    await reply_json(send, scope, status, {"errors": [{"code": code, "message": message, "detail": None}]}, headers)


def log_access(scope: Scope, status: int, sent: int, seconds: float, route: str, user: str | None) -> None:
    """One line per request on ``ollama_seed.mirror.access``; the fields also as ``record.access``."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client") or ("-", 0)
    query = clean(scope.get("query_string", b"").decode("latin-1").split("&expires=", 1)[0])
    agent = clean(dict(scope.get("headers", [])).get(b"user-agent", b"-").decode("latin-1"), 512)
    method, path = clean(scope.get("method", ""), 32), clean(scope.get("path", ""))
    shown_user = clean(user, 128) if user else None
    fields = {
        "client": clean(client[0]),
        "method": method,
        "path": path,
        "query": query,
        "status": status,
        "bytes": sent,
        "seconds": round(seconds, 6),
        "user_agent": agent,
        "user": shown_user,
        "route": route,
    }
    access_log.info(
        '%s "%s %s%s" %d %d %.3fs "%s"%s',
        fields["client"],
        method,
        path,
        f"?{query}" if query else "",
        status,
        sent,
        seconds,
        agent,
        f" user={shown_user}" if shown_user else "",
        extra={"access": fields},
    )
