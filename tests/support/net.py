"""Loopback ports for tests: one free to listen on, one that refuses every connection, one nobody may use;
and a stdlib HTTP server on one, for a test's own handler."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["free_port", "http_server", "refused_port", "unasked"]


@contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[http.server.ThreadingHTTPServer]:
    """*handler* served on 127.0.0.1 (``server.server_port``) in a thread, for as long as the block runs."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (bind, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def refused_port() -> Iterator[int]:
    """A port that is bound but never listens, for as long as the block runs: every connection is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@contextmanager
def unasked(host: str = "127.0.0.1") -> Iterator[str]:
    """``HOST:PORT`` where something listens (a connection would succeed) for as long as the block
    runs; leaving the block fails the test if anybody connected."""
    with socket.create_server((host, 0)) as listener:
        listener.settimeout(0)
        where = f"{host}:{listener.getsockname()[1]}"
        yield where
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.close()
        raise AssertionError(f"something connected to {where}, which nobody may ask")
