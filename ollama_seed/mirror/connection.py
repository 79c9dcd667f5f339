"""One client connection of the mirror's HTTP/1.1 server: reading request heads, writing responses.

See :mod:`~ollama_seed.mirror.http11` for the server around it. A connection's thread reads a
request head with h11 (within the head's deadline), hands the request to the application on the
event loop, and writes the ASGI messages the application sends, as they come: a response head
written by hand (h11 parses requests only, so a body sent by ``sendfile`` needs no bookkeeping),
then the body, with ``write_timeout`` for each step.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import select
import socket
import ssl
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import h11

from ..store import oscalls
from .asgi import ClientGone, Message
from .routes import OPS

if TYPE_CHECKING:
    from .http11 import Http11Server

__all__ = ["DONE", "Connection", "Refusal", "Writer", "plain_response", "send_file"]

log = logging.getLogger("ollama_seed.mirror")
BUFFER = int(os.environ.get("OLLAMA_SEED_SEND_BUFFER", 1 << 20))  # bytes per read-and-send (TLS); benchmarks vary it
DONE = object()
_REASONS = {
    200: b"OK",
    206: b"Partial Content",
    307: b"Temporary Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    414: b"URI Too Long",
    416: b"Range Not Satisfiable",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    507: b"Insufficient Storage",
}


class Refusal(Exception):
    """A request the connection answers itself (400, 408, 503), then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Connection:
    """One client connection, served by its own thread."""

    def __init__(self, server: Http11Server, sock: socket.socket, client: tuple[Any, ...]) -> None:
        self.server = server
        self.sock: socket.socket = sock
        self.client = client
        self.busy = False  # a request is being answered
        self.idle_since = time.monotonic()
        self.reserved = False
        self.leaving = False  # chosen to make room: closing
        self.closed = False
        self.writing = False  # inside a write: a client that reads nothing shows here
        self.progress = time.monotonic()  # when a write last moved

    # -- the thread ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._serve()
        except (OSError, Refusal, h11.ProtocolError) as exc:
            log.debug("connection from %s ended: %s", self.client[0] if self.client else "-", exc)
        except Exception:
            log.exception("connection from %s failed", self.client[0] if self.client else "-")
        finally:
            self.close()
            self.server._forget(self)

    def pending(self) -> bool:
        """Bytes the client sent wait unread (a request its thread has not read yet)."""
        if self.busy or self.closed:
            return False
        try:
            if hasattr(select, "poll"):  # any descriptor number (select() stops at FD_SETSIZE)
                poller = select.poll()
                poller.register(self.sock.fileno(), select.POLLIN)
                return bool(poller.poll(0))
            readable, _, _ = select.select([self.sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def stalled(self, now: float, after: float) -> bool:
        """Writing a response that has not moved for *after* seconds (its client stopped reading)."""
        return self.writing and now - self.progress > after

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake()
        with contextlib.suppress(OSError):
            self.sock.close()

    def wake(self) -> None:
        """Make a blocked read or write return (another thread closes this connection).

        The plain socket's ``shutdown``, also for TLS: ``SSLSocket.shutdown`` drops the TLS object
        under the thread that may be using it.
        """
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def _serve(self) -> None:
        limits = self.server.limits
        deadline = time.monotonic() + limits.header_timeout
        if self.server.tls is not None:
            self.sock.settimeout(max(0.01, limits.header_timeout))
            tls = self.server.tls.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
            self.sock = tls
            try:
                tls.do_handshake()
            except (OSError, ssl.SSLError) as exc:
                raise Refusal(400, f"TLS handshake: {exc}") from None
        leftover = b""
        first = True
        while not self.server.stopping:
            parsed = self._read_head(leftover, deadline if first else None)
            if parsed is None:
                return
            request, leftover, has_body = parsed
            first = False
            keep = self._answer(request, has_body)
            if not keep or has_body:
                return
            self.busy = False
            self.idle_since = time.monotonic()
            if self.reserved:  # a reserve connection that finished its request: an ordinary one if there is room
                self.server.promote(self)

    def _read_head(self, data: bytes, deadline: float | None) -> tuple[h11.Request, bytes, bool] | None:
        """The next request head; None when the client closed or idled out between requests.

        *deadline* is when the head must be complete (a new connection); None between requests,
        where the connection may idle ``keep_alive`` seconds, then has ``header_timeout`` from
        the head's first byte.
        """
        limits = self.server.limits
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_size)
        if data:
            parser.receive_data(data)
            if deadline is None:
                deadline = time.monotonic() + limits.header_timeout
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                raise self._refuse(400, f"bad request: {exc}") from None
            if isinstance(event, h11.Request):
                self.busy = True
                break
            if isinstance(event, h11.ConnectionClosed) or self.closed or self.server.stopping:
                return None
            if deadline is None:
                wait = limits.keep_alive
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise self._refuse(408, "the request head did not arrive in time")
            self.sock.settimeout(wait)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if deadline is None:
                    return None  # an idle keep-alive connection: closed quietly
                raise self._refuse(408, "the request head did not arrive in time") from None
            if chunk and deadline is None:
                deadline = time.monotonic() + limits.header_timeout
            parser.receive_data(chunk)
        names = [k for k, _ in event.headers]
        if b"transfer-encoding" in names and b"content-length" in names:
            raise self._refuse(400, "a request with both Content-Length and Transfer-Encoding is ambiguous")
        has_body = b"transfer-encoding" in names or any(k == b"content-length" and v != b"0" for k, v in event.headers)
        rest = b""
        if not has_body:
            nxt = parser.next_event()
            if isinstance(nxt, h11.EndOfMessage):
                rest = parser.trailing_data[0]
            else:  # pragma: no cover - h11 ends a bodiless request at once
                has_body = True
        return event, rest, has_body

    def _refuse(self, status: int, message: str) -> Refusal:
        with contextlib.suppress(OSError, ValueError):
            self.sock.settimeout(1.0)
            self.sock.sendall(plain_response(status, message))
        return Refusal(status, message)

    # -- one request -------------------------------------------------------------------------------
    def _answer(self, request: h11.Request, has_body: bool) -> bool:
        target = bytes(request.target)
        raw_path, _, query = target.partition(b"?")
        if self.reserved and raw_path not in OPS and not self.server.promote(self):
            raise self._refuse(503, "the server is at its connection limit; try again")
        scope = self.server.scope(self, request, raw_path, query)
        keep = request.http_version == b"1.1" and not _has_token(request.headers, b"connection", b"close")
        outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        writer = Writer(self, scope["method"] == "HEAD", keep and not has_body)
        finished = self.server.start_app(scope, outbox, writer)
        self.sock.settimeout(self.server.limits.write_timeout)
        while True:
            item = outbox.get()
            if item is DONE:
                break
            message, future = item
            try:
                writer.write(message)
            except BaseException as exc:
                writer.broken = True
                self.server.resolve(future, _gone(exc, writer.body_sent))
            else:
                self.server.resolve(future, None)
        finished.wait()
        if not writer.started and not writer.broken:
            with contextlib.suppress(OSError):
                writer.write({"type": "http.response.start", "status": 500, "headers": []})
                writer.write({"type": "http.response.body", "body": b""})
        return writer.complete and writer.keep and not writer.broken


def _gone(exc: BaseException, sent: int) -> BaseException:
    if isinstance(exc, (OSError, ValueError)):
        gone = ClientGone(f"the client is gone: {exc}")
        gone.sent = sent
        return gone
    return exc


def _has_token(headers: Iterable[tuple[bytes, bytes]], name: bytes, token: bytes) -> bool:
    return any(k == name and token in [t.strip().lower() for t in v.split(b",")] for k, v in headers)


def plain_response(status: int, message: str) -> bytes:
    """A whole short text response that closes the connection."""
    body = (message + "\n").encode()
    return _head(status, [(b"content-type", b"text/plain"), (b"connection", b"close")], len(body)) + body


def _head(status: int, headers: Iterable[tuple[bytes, bytes]], length: int | None) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Status"))]
    for name, value in headers:
        if any(c in value or c in name for c in (b"\r", b"\n", b"\0")):
            raise ValueError(f"a response header {name!r} holds a line break")
        lines.append(name + b": " + value)
    if length is not None:
        lines.append(b"content-length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Writer:
    """Writes one response on the connection's socket, from ASGI messages."""

    def __init__(self, conn: Connection, head_only: bool, keep: bool) -> None:
        self.conn, self.head_only, self.keep = conn, head_only, keep
        self.started = self.complete = self.broken = False
        self.length: int | None = None
        self.body_sent = 0
        self._pending = b""

    def write(self, message: Message) -> None:
        self.conn.writing, self.conn.progress = True, time.monotonic()
        try:
            self._write(message)
        finally:
            self.conn.writing = False

    def _write(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            status = int(message["status"])
            headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", [])]
            lengths = [v for k, v in headers if k == b"content-length"]
            self.length = int(lengths[0]) if lengths else None
            headers = [(k, v) for k, v in headers if k not in (b"content-length", b"connection")]
            if self.length is None and not self.head_only and status not in (204, 304):
                self.keep = False  # no length: the body ends when the connection does
            if self.conn.server.stopping:
                self.keep = False
            headers.append((b"connection", b"keep-alive" if self.keep else b"close"))
            self._pending = _head(status, headers, self.length)
            return
        if not self.started:
            raise RuntimeError(f"{kind} before http.response.start")
        if self.complete:
            return
        more = bool(message.get("more_body", False))
        if kind == "http.response.body":
            body = b"" if self.head_only else bytes(message.get("body", b""))
            self._flush(body)
            self.body_sent += len(body)
        elif kind == "http.response.zerocopysend":
            self._flush(b"")
            if not self.head_only:
                fd = message["file"] if isinstance(message["file"], int) else message["file"].fileno()
                count = int(message["count"])
                server = self.conn.server
                send_file(
                    self.conn.sock,
                    fd,
                    int(message.get("offset", 0)),
                    count,
                    self,
                    server.zero_copy,
                    server.limits.write_timeout,
                )
        else:
            raise RuntimeError(f"unknown ASGI message {kind!r}")
        if not more:
            self.complete = True
            if self.length is not None and not self.head_only and self.body_sent != self.length:
                self.keep = False  # the body did not match its length: the connection cannot be reused
                raise OSError(errno.EPIPE, f"the response sent {self.body_sent} of {self.length} bytes")

    def _flush(self, body: bytes) -> None:
        data, self._pending = self._pending + body, b""
        if data:
            self.conn.sock.sendall(data)
            self.conn.progress = time.monotonic()


def send_file(
    sock: socket.socket, fd: int, offset: int, count: int, writer: Writer, zero_copy: bool, timeout: float
) -> None:
    """*count* bytes of *fd* from *offset* to *sock*: ``sendfile`` over plain http, else read and send."""
    end = offset + count
    pos = offset
    if zero_copy:
        out = sock.fileno()
        poller = select.poll()
        poller.register(out, select.POLLOUT)
        timeout_ms = int(timeout * 1000)
        while pos < end:
            try:
                n = os.sendfile(out, fd, pos, min(end - pos, 1 << 30))
            except BlockingIOError:
                if not poller.poll(timeout_ms):
                    raise TimeoutError("the client read nothing for the write timeout") from None
                continue
            if n == 0:
                raise OSError(errno.EIO, f"the file ended at byte {pos} of {end}")
            pos += n
            writer.body_sent += n
            writer.conn.progress = time.monotonic()
        return
    buf = bytearray(min(BUFFER, max(count, 1)))
    view = memoryview(buf)
    while pos < end:
        n = oscalls.host.preadinto(fd, view[: min(len(buf), end - pos)], pos)
        if n <= 0:
            raise OSError(errno.EIO, f"the file ended at byte {pos} of {end}")
        sock.sendall(view[:n])
        pos += n
        writer.body_sent += n
        writer.conn.progress = time.monotonic()
