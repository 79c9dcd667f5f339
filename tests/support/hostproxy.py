"""A proxy that sends named hosts to loopback servers, so commands written for real hosts run offline.

Set ``HTTPS_PROXY`` and ``HTTP_PROXY`` to :attr:`HostProxy.url` and ``registry.ollama.ai``,
``mirror:8080`` or ``ollama:11434`` reach the server the test put behind that name: a ``CONNECT
host:443`` is tunnelled to it (TLS end to end: the server needs a certificate for the name and the
client ``SSL_CERT_FILE`` its CA), an absolute-form ``GET http://host:port/path`` is forwarded to it
in origin form, one request per connection (``Connection: close`` is added). Unknown names are
refused with 502, so nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Mapping
from types import TracebackType

__all__ = ["HostProxy"]


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        line, _, rest = head.partition(b"\r\n")
        method, target, version = line.decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            backend = self.server.routes.get(target)
            if backend is None:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection(("127.0.0.1", backend))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _splice(client, upstream, rest.partition(b"\r\n\r\n")[2])
            return
        scheme, _, after = target.partition("://")
        hostport, slash, path = after.partition("/")
        if ":" not in hostport:
            hostport += ":443" if scheme == "https" else ":80"
        backend = self.server.routes.get(hostport)
        if backend is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection(("127.0.0.1", backend))
        headers = b"\r\n".join(
            h for h in rest.split(b"\r\n") if not h.lower().startswith((b"connection:", b"proxy-connection:"))
        )
        request = f"{method} {slash}{path} {version}\r\nConnection: close\r\n".encode("latin-1") + headers
        _splice(client, upstream, request)


def _splice(client: socket.socket, upstream: socket.socket, first: bytes) -> None:
    """Copy both ways until either side closes; *first* goes upstream first."""
    if first:
        upstream.sendall(first)

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join(10)
    upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    routes: Mapping[str, int]


class HostProxy:
    """``with HostProxy({"registry.ollama.ai:443": tls_port, "mirror:8080": port}) as p: ...p.url``"""

    def __init__(self, routes: Mapping[str, int]) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.routes = dict(routes)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostProxy:
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
