"""The mirror's HTTP/1.1 server: a thread per connection, the ASGI application on the event loop.

Why not uvicorn: a connection that never finished its request head, or a client that stopped
reading mid-body, was never closed, so a few dozen of them took every ``--limit-concurrency``
slot and answered the whole site 503 (``/healthz`` too); and every blob byte was copied through
Python, on one core. Here:

- **Bytes.** Each connection has its own thread. Request heads are parsed with h11 (a new parser
  per request: the trailing bytes of one carry over to the next). The application runs on the
  event loop; what it sends is written by the connection's thread, so the blocking work (the
  socket write, TLS encryption, the file read) runs outside the GIL and on every core. A blob
  body comes as the ASGI ``http.response.zerocopysend`` message: over plain http the kernel copies
  it from the page cache to the socket (``sendfile``); over TLS it is read into a 1 MiB buffer and
  encrypted by OpenSSL in that thread.
- **Time.** A request head must arrive whole within ``header_timeout`` of the connection (the TLS
  handshake included) or of its first byte; a keep-alive connection may idle ``keep_alive``
  seconds between requests; a response that cannot send a byte for ``write_timeout`` seconds is
  abandoned (the client stopped reading). Each ends in closing the connection.
- **Room.** At most ``limit`` connections are open. A new one when all are taken closes the one
  that has been idle longest (waiting for a request head, or between requests), else one whose
  response has not moved for a second (its client stopped reading), so idle, slow-header and
  stalled connections cannot shut others out. If every one is answering a request, a
  ``reserve`` of further connections answers only ``/healthz``, ``/readyz`` and ``/metrics``
  (others get 503), so probes and scrapes work while the limit is reached.
- **Framing.** A request with both ``Content-Length`` and ``Transfer-Encoding`` (a smuggling
  risk behind a proxy that reads the other one), or that h11 cannot parse, gets 400 and the
  connection is closed. Request bodies are not read (the mirror is read-only): after a request
  that had one, the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import h11

from ..store import oscalls
from .asgi import ASGIApp, ClientGone, Message, Scope
from .connection import DONE, Connection, Writer, plain_response

__all__ = ["Http11Server", "ServerLimits"]

log = logging.getLogger("ollama_seed.mirror")
PRESSED_WRITE = 1.0  # at the limit, a response that has not moved for this long gives its connection up


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """How much the server takes from each client, and from all of them.

    Args:
        limit: connections open at once (None: no limit).
        reserve: connections beyond *limit* that answer only the probes and ``/metrics``.
        max_header_size: bytes of a request head (its request line and headers).
        header_timeout: seconds for a request head to arrive whole.
        keep_alive: seconds a connection may wait for its next request.
        write_timeout: seconds a response may go without sending a byte.
        shutdown_timeout: on stop, seconds the responses in flight may take to finish.
    """

    limit: int | None = 1024
    reserve: int = 16
    max_header_size: int = 16 * 1024
    header_timeout: float = 10.0
    keep_alive: float = 30.0
    write_timeout: float = 60.0
    shutdown_timeout: float = 30.0


def _refuse(sock: socket.socket) -> None:
    """Answer 503 and close, having read what the client sent (closing on unread data is a reset)."""
    with contextlib.suppress(OSError):
        sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError):
            sock.recv(16384)
        sock.sendall(plain_response(503, "the server is at its connection limit; try again"))
        socket.socket.shutdown(sock, socket.SHUT_WR)
        with contextlib.suppress(TimeoutError):
            sock.recv(16384)
    with contextlib.suppress(OSError):
        sock.close()


class Http11Server:
    """Serves an ASGI application on a listening socket (see the module docstring).

    Args:
        app: the ASGI 3 application (run on *loop*).
        sock: a bound, listening socket.
        loop: the event loop the application runs on.
        tls: a server-side TLS context, or None for plain http.
        limits: timeouts and connection limits.
    """

    def __init__(
        self,
        app: ASGIApp,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        *,
        tls: ssl.SSLContext | None = None,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        self.app, self.listener, self.loop, self.tls, self.limits = app, sock, loop, tls, limits
        self.stopping = False
        self._lock = threading.Lock()
        self._conns: dict[Connection, threading.Thread] = {}
        self._acceptor: threading.Thread | None = None
        self.zero_copy = (
            hasattr(os, "sendfile")
            and oscalls.host.kind in ("linux", "macos")
            and tls is None
            and os.environ.get("OLLAMA_SEED_SENDFILE", "1") != "0"  # benchmarks measure without it
        )
        self._tasks: set[asyncio.Future[None]] = set()

    # -- accepting ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.listener.settimeout(0.2)
        self._acceptor = threading.Thread(target=self._accept_loop, name="mirror-accept", daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self.stopping:
            try:
                sock, client = self.listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self.stopping:
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("cannot accept a connection: %s; raise the open-files limit (LimitNOFILE=)", exc)
                    time.sleep(0.1)
                continue
            self._admit(sock, client)

    def _admit(self, sock: socket.socket, client: Any) -> None:
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn: Connection | None = Connection(self, sock, tuple(client) if isinstance(client, tuple) else ("-", 0))
        limit = self.limits.limit
        victim: Connection | None = None
        with self._lock:
            staying = [c for c in self._conns if not c.leaving]
            if limit is not None and len(staying) >= limit:
                now, after = time.monotonic(), min(self.limits.write_timeout, PRESSED_WRITE)
                idle = sorted((c for c in staying if not c.busy), key=lambda c: c.idle_since)
                stuck = [c for c in staying if c.busy and c.stalled(now, after)]
                # waiting for a request head (slow or none) or between requests: the longest goes, unless
                # a request of it waits to be read (its thread has not run yet: that is a client, served next)
                victim = next((c for c in idle if not c.pending()), None)
                if victim is None and stuck:  # under pressure a reader that stopped loses its slot before write_timeout
                    victim = min(stuck, key=lambda c: c.progress)
                if victim is not None:
                    victim.leaving = True
                    conn.reserved = victim.reserved  # type: ignore[union-attr]
                elif len(staying) < limit + self.limits.reserve:
                    conn.reserved = True  # type: ignore[union-attr]
                else:
                    conn = None
            if conn is not None:
                thread = threading.Thread(target=conn.run, name="mirror-conn", daemon=True)
                self._conns[conn] = thread
        if victim is not None:
            victim.wake()  # its thread sees the end of the stream and leaves
        if conn is None:
            threading.Thread(target=_refuse, args=(sock,), name="mirror-refuse", daemon=True).start()
            return
        thread.start()

    def promote(self, conn: Connection) -> bool:
        """Make a reserve connection an ordinary one if there is room now; True if it is one."""
        with self._lock:
            if conn.reserved and (
                self.limits.limit is None
                or sum(1 for c in self._conns if not c.reserved and not c.leaving) < self.limits.limit
            ):
                conn.reserved = False
            return not conn.reserved

    def _forget(self, conn: Connection) -> None:
        with self._lock:
            self._conns.pop(conn, None)

    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # -- the application, on the loop --------------------------------------------------------------
    def scope(self, conn: Connection, request: h11.Request, raw_path: bytes, query: bytes) -> Scope:
        try:
            server = conn.sock.getsockname()
        except OSError:
            server = ("-", 0)
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "https" if self.tls is not None else "http",
            "path": urllib.parse.unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(bytes(k), bytes(v)) for k, v in request.headers],
            "client": conn.client[:2],
            "server": tuple(server[:2]),
            "extensions": {"http.response.zerocopysend": {}},
        }

    def start_app(self, scope: Scope, outbox: queue.SimpleQueue[Any], writer: Writer) -> threading.Event:
        """Run the application for one request on the loop; its messages go to *outbox*."""
        finished = threading.Event()
        disconnected: list[asyncio.Event] = []

        async def receive() -> Message:
            if not disconnected:
                disconnected.append(asyncio.Event())
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnected[0].wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            future = self.loop.create_future()
            outbox.put((message, future))
            await future

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except ClientGone:
                pass
            except Exception:
                log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            finally:
                if disconnected:
                    disconnected[0].set()
                outbox.put(DONE)
                finished.set()

        def begin() -> None:
            task = self.loop.create_task(run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        try:
            self.loop.call_soon_threadsafe(begin)
        except RuntimeError:  # the loop is closed: the server is going away
            outbox.put(DONE)
            finished.set()
        return finished

    def resolve(self, future: asyncio.Future[None], error: BaseException | None) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(settle)

    # -- stopping --------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop accepting, close idle connections, wait for responses in flight, then close the rest."""
        self.stopping = True
        if self._acceptor is not None:
            self._acceptor.join(5)
        with contextlib.suppress(OSError):
            self.listener.close()
        deadline = time.monotonic() + self.limits.shutdown_timeout
        while True:
            with self._lock:
                conns = list(self._conns.items())
            for conn, _ in conns:
                if not conn.busy:
                    conn.wake()
            if not conns:
                return
            if time.monotonic() > deadline:
                for conn, _ in conns:
                    conn.wake()
                for _, thread in conns:
                    thread.join(2)
                return
            time.sleep(0.05)
