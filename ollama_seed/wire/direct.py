"""Blob range requests over blocking sockets, one worker thread per connection.

Why: through httpx, every 64 KiB of a body crosses h11, httpcore, httpx and asyncio on the
event-loop thread, so a pull tops out near one core's worth of Python (~300 MB/s on the
project's 2-core test machine) however fast the link. Here a worker thread sends the Range
request with :mod:`http.client` and reads the body with ``readinto`` straight into a
``READ_SIZE`` (256 KiB) buffer (``recv_into``, the GIL released), then ``pwrite``-s it. Python
runs once per 256 KiB, and the copies spread over the cores.

Only for *direct* connections: http or https, no proxy in the environment, no injected
transport (see :meth:`DirectPool.usable`). The request logic (auth challenges, redirects,
retries, what a status means) stays in :mod:`wire.transfer`; this module sends one request and
hands back one response.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio

from ..core.plan import Run, Scheduler
from ..store.fsutil import pwrite_all
from .errors import describe_transport_error, httpx_transport_errors
from .urls import shown_url as _shown

if TYPE_CHECKING:
    import httpx

__all__ = [
    "READ_SIZE",
    "DirectPool",
    "DirectResponse",
    "LinkError",
    "LowSpeed",
    "drain",
    "error_text",
    "open_in_thread",
    "proxied",
    "read_body",
    "run_in_thread",
]

DRAIN_LIMIT, DRAIN_TIMEOUT = 64 * 1024, 1.0  # the unwanted bodies read to keep a connection (see drain)
READ_SIZE = 256 * 1024  # <= the smallest piece (core.plan.MIN_PIECE); small enough that a kill loses little
log = logging.getLogger("ollama_seed.direct")
_PROXY_VARS = frozenset({"http_proxy", "https_proxy", "all_proxy"})
_Key = tuple[str, str, int]


class LinkError(Exception):
    """A network failure on a direct connection, described in one line (retried by the caller)."""


def proxied(scheme: str, environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment names a proxy that httpx could use for *scheme* URLs.

    Deliberately coarse: with any such proxy set (even if NO_PROXY might exempt the host),
    requests stay on httpx, which owns the proxy rules.
    """
    env = os.environ if environ is None else environ
    names = {k.lower() for k, v in env.items() if v and k.lower() in _PROXY_VARS}
    return f"{scheme}_proxy" in names or "all_proxy" in names


def describe(exc: BaseException, url: str, timeout: float) -> str:
    """One line for a failure of *url* (no query string: signed URLs stay out of logs): a stall
    here, everything else worded as on the httpx path (``describe_transport_error``)."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"stalled: no data for {timeout:g} s from {_shown(url)}"
    return describe_transport_error(exc, url)


class DirectResponse:
    """One response; its body is read by one thread. :meth:`abort` may be called from another."""

    def __init__(
        self, pool: DirectPool, key: _Key, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, url: str
    ) -> None:
        self._pool, self._key, self._conn, self._resp, self.url = pool, key, conn, resp, url
        self.status_code = resp.status
        self.headers: dict[str, str] = {k.lower(): v for k, v in resp.getheaders()}
        self._aborted = False

    def readinto(self, view: memoryview) -> int:
        """Bytes read into *view*; 0 at the end of the body (or after an abort)."""
        try:
            return self._resp.readinto(view)
        except (OSError, http.client.HTTPException) as exc:
            if self._aborted:
                return 0
            raise LinkError(describe(exc, self.url, self._pool.timeout)) from exc

    def read_all(self, limit: int) -> bytes:
        """In a worker thread: the whole (small) body, or its first ``limit + 1`` bytes if it is
        longer than *limit* (then the rest stays unread, and :meth:`release` closes the connection).

        Raises:
            LinkError: the network failed.
        """
        try:
            data = self._resp.read(limit + 1)
        except (OSError, http.client.HTTPException) as exc:
            self._aborted = True
            raise LinkError(describe(exc, self.url, self._pool.timeout)) from exc
        if len(data) > limit:
            self._aborted = True
        return data

    def abort(self) -> None:
        """Stop a read in progress in another thread (the socket is shut down)."""
        self._aborted = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drain(self) -> None:
        """In a worker thread: read a small body that nobody wants (a redirect's, an error's), so
        that :meth:`release` can keep the connection. Bounded: a body of known length up to
        ``DRAIN_LIMIT`` bytes, or a chunked one (a 401 challenge's, from some servers) that ends
        within ``DRAIN_LIMIT``, waiting at most ``DRAIN_TIMEOUT``; otherwise left for release to
        close."""
        resp, sock = self._resp, self._conn.sock
        sized = resp.length is not None and resp.length <= DRAIN_LIMIT
        if resp.isclosed() or resp.will_close or sock is None or not (sized or resp.chunked):
            return
        try:
            sock.settimeout(min(DRAIN_TIMEOUT, self._pool.timeout))
            resp.read(DRAIN_LIMIT + 1)  # a chunked body may be longer: then it is left for release to close
            sock.settimeout(self._pool.timeout)
        except (OSError, http.client.HTTPException):
            self._aborted = True  # a partial read: release() closes the connection

    def release(self) -> None:
        """Back to the pool if the body was read to its end, else closed."""
        if self._resp.isclosed() and not self._aborted and not self._resp.will_close:
            self._pool.give_back(self._key, self._conn)
        else:
            self._resp.close()
            self._conn.close()


class DirectPool:
    """Kept-alive http.client connections per (scheme, host, port), shared by worker threads."""

    def __init__(self, *, timeout: float, user_agent: str, context: ssl.SSLContext) -> None:
        self.timeout = timeout
        self._user_agent = user_agent
        self._context = context  # the registry client's: one trust, loaded once, for both paths
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def usable(url: str) -> bool:
        """http(s), no proxy, and a URL http.client sends as it is: anything it would refuse
        (a control character, a space, non-ASCII, a bad port, e.g. in a hostile redirect) stays
        on httpx, which quotes or rejects it as before."""
        if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
            return False
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a port out of range)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and bool(parts.hostname) and not proxied(parts.scheme)

    def _new(self, key: _Key) -> http.client.HTTPConnection:
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._context)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def _take(self, key: _Key) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give_back(self, key: _Key, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(key, []).append(conn)
                return
        conn.close()

    def open(
        self, url: str, headers: Mapping[str, str], cancelled: Callable[[], bool] = lambda: False
    ) -> DirectResponse:
        """Send ``GET url`` and read the response head (blocking; call it in a worker thread).

        *cancelled* is asked once connected, before the request goes out: a caller that has
        given up meanwhile sends nothing (the connection is closed; LinkError).

        Raises:
            LinkError: the request could not be sent, no response head came back, or *cancelled*.
        """
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme
        host = parts.hostname or ""
        key = (scheme, host, parts.port or (443 if scheme == "https" else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        hdrs = {"User-Agent": self._user_agent, **headers}
        for fresh in (False, True):
            conn = None if fresh else self._take(key)
            reused = conn is not None
            if conn is None:
                conn = self._new(key)
            try:
                if conn.sock is None:
                    conn.connect()
                if cancelled():
                    conn.close()
                    raise LinkError(f"request to {_shown(url)} cancelled")
                conn.request("GET", target, headers=hdrs)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and isinstance(exc, (ConnectionError, http.client.RemoteDisconnected)):
                    continue  # a kept-alive connection the server had closed meanwhile: once more, fresh
                raise LinkError(describe(exc, url, self.timeout)) from exc
            except ValueError as exc:  # http.client refusing the request line or a header (see usable)
                conn.close()
                raise LinkError(f"cannot request {_shown(url)}: {exc}") from exc
            # as httpx logs its requests (-vv); the redacting log filter strips signed queries
            log.debug(
                'HTTP Request: GET %s "HTTP/1.1 %d %s" (direct%s)',
                url,
                resp.status,
                resp.reason,
                ", kept-alive" if reused else "",
            )
            return DirectResponse(self, key, conn, resp, url)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


# -- running them from the event loop ----------------------------------------------------


async def open_in_thread(
    pool: DirectPool, url: str, headers: Mapping[str, str], limiter: anyio.CapacityLimiter
) -> DirectResponse:
    """``pool.open`` in a worker thread. A cancelled wait does not wait for the connect (that
    could take the whole timeout): if the connect completes later, no request is sent, and a
    response already on its way is closed when it comes."""
    lock = threading.Lock()
    abandoned = False
    opened: list[DirectResponse] = []

    def run() -> DirectResponse:
        resp = pool.open(url, headers, lambda: abandoned)
        with lock:
            opened.append(resp)
            if abandoned:
                resp.release()
        return resp

    try:
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=limiter)
    except anyio.get_cancelled_exc_class():
        with lock:
            abandoned = True
            for resp in opened:
                resp.release()
        raise


async def drain(resp: DirectResponse | httpx.Response, limiter: anyio.CapacityLimiter) -> None:
    """Read a small unwanted body (a redirect's, a retryable error's) on either path, so that its
    connection is kept: a registry that sends every blob to storage on another host then costs
    no new TCP and TLS handshake per blob. Bounded as :meth:`DirectResponse.drain` is."""
    if isinstance(resp, DirectResponse):
        await anyio.to_thread.run_sync(resp.drain, limiter=limiter)
        return
    length = resp.headers.get("content-length", "")
    if length.isdigit() and int(length) <= DRAIN_LIMIT:
        with anyio.move_on_after(DRAIN_TIMEOUT):
            await resp.aread()


async def error_text(resp: DirectResponse | httpx.Response, limiter: anyio.CapacityLimiter) -> str:
    """What a refusal's body says (a registry's ``errors[].message``, else its first 300 characters),
    as ``": <text>"``, or "" when it says nothing; at most 4 KiB read, for at most ``DRAIN_TIMEOUT``."""
    body = b""
    failures: tuple[type[BaseException], ...] = (LinkError, *httpx_transport_errors())
    with anyio.move_on_after(DRAIN_TIMEOUT):
        try:
            if isinstance(resp, DirectResponse):
                body = await anyio.to_thread.run_sync(resp.read_all, 4096, limiter=limiter)
            else:
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > 4096:
                        break
        except failures:
            return ""
    try:
        doc = json.loads(body)
        said = "; ".join(str(e.get("message") or e.get("code")) for e in doc["errors"] if isinstance(e, dict))
    except (ValueError, KeyError, TypeError):
        said = body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
    said = "".join(c for c in said if c.isprintable())[:300]
    return f": {said}" if said else ""


async def run_in_thread(func: Callable[[], None], abort: Callable[[], None], limiter: anyio.CapacityLimiter) -> None:
    """Run *func* in a worker thread. On cancellation, *abort* it and wait until it has
    returned: a thread must never outlive the staging file descriptor it writes to.

    A cancellation can also land before the thread has started (anyio checks for one on the
    way in): then *func* must never start, and there is nothing to wait for.
    """
    lock = threading.Lock()
    finished = threading.Event()
    state = {"started": False, "cancelled": False}

    def run() -> None:
        with lock:
            if state["cancelled"]:
                return
            state["started"] = True
        try:
            func()
        finally:
            finished.set()

    try:
        await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=limiter)
    except anyio.get_cancelled_exc_class():
        with lock:
            state["cancelled"] = True
            started = state["started"]
        if started:
            abort()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(finished.wait)  # prompt: the abort ends its read
        raise


class LowSpeed:
    """curl's ``--speed-limit``/``--speed-time``: a body that brings fewer than *rate* bytes a second
    over *window* seconds is stalled, however steadily it trickles (a 1 byte/s body would never
    trip a "no byte for N seconds" watchdog)."""

    def __init__(self, rate: float, window: float) -> None:
        self.rate, self.window = rate, window
        self.start, self.got = time.monotonic(), 0

    def add(self, n: int) -> None:
        """*n* more bytes arrived. Raises :class:`TimeoutError` when the last window was too slow."""
        self.got += n
        now = time.monotonic()
        took = now - self.start
        if took >= self.window:
            if self.got < self.rate * took:
                raise TimeoutError(f"slower than {self.rate:g} bytes/s for {took:.0f} s")
            self.start, self.got = now, 0


def read_body(
    resp: DirectResponse,
    fd: int,
    sched: Scheduler,
    run: Run,
    view: memoryview,
    on_recorded: Callable[[int, memoryview], None] | None = None,
    slow: LowSpeed | None = None,
) -> None:
    """In a worker thread: read *resp*'s body into file *fd* until *run* ends (or the body does).

    *on_recorded(pos, data)* hears of every write once it is recorded (for hashing it inline).

    A read is at most ``len(view)`` (<= one piece), and a steal never takes the piece being
    written nor the next one (see core.plan.Scheduler._steal), so every byte read lands in pieces
    this run still owns; ``record_upto`` checks it all the same. A body slower than *slow* allows
    raises :class:`TimeoutError` (a trickle is a stall).
    """
    plan = sched.plan
    while True:
        pos = run.pos  # only this thread moves it
        room = run.limit(plan) - pos
        if room <= 0:
            return
        n = resp.readinto(view[: min(len(view), room)])
        if n <= 0:
            return
        if slow is not None:
            slow.add(n)
        pwrite_all(fd, view[:n], pos)
        kept = sched.record_upto(run, n)
        if on_recorded is not None and kept > 0:
            on_recorded(pos, view[:kept])
        if kept < n:
            return
