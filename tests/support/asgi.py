"""The in-process FakeRegistry (with its faults and bearer tokens) served over a real socket, and a
raw ASGI call for the paths no HTTP client would send.

``RegistryServer(reg, certs=...)`` runs uvicorn in a thread on 127.0.0.1 (or *host*), with TLS when given a
:class:`~tests.support.tls.CertFiles`, so subprocesses (the CLI) can pull from it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

import anyio
import httpx

from tests.support.fake_registry import FakeRegistry
from tests.support.tls import CertFiles

__all__ = ["RegistryASGI", "RegistryServer", "raw_asgi_call"]


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class RegistryASGI:
    """An ASGI app that hands each request to *handler* (``FakeRegistry.handle``, or a wrapper of it)
    and streams its answer."""

    def __init__(self, handler: FakeRegistry | Handler) -> None:
        self.handler: Handler = handler.handle if isinstance(handler, FakeRegistry) else handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        host = next((v for k, v in headers if k.lower() == "host"), "127.0.0.1")
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string") or b""
        url = f"{scope['scheme']}://{host}{path.decode('latin-1')}" + (f"?{query.decode('latin-1')}" if query else "")
        resp = await self.handler(httpx.Request(scope["method"], url, headers=headers))
        await send(
            {
                "type": "http.response.start",
                "status": resp.status_code,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.multi_items()],
            }
        )
        try:
            body = resp.content  # answers built with content= are already read
        except httpx.ResponseNotRead:
            try:
                async for chunk in resp.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.ReadError:
                return  # an injected drop: end without completing the body; uvicorn closes the connection
            body = b""
        await send({"type": "http.response.body", "body": body, "more_body": False})


class RegistryServer:
    """``with RegistryServer(reg, certs=None) as srv: srv.url, srv.host``."""

    def __init__(self, reg: FakeRegistry | Handler, *, certs: CertFiles | None = None, host: str = "127.0.0.1") -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = int(self.sock.getsockname()[1])
        self.host = f"{host}:{self.port}"
        self.url = f"{'https' if certs else 'http'}://{self.host}"
        tls: dict[str, Any] = {"ssl_certfile": str(certs.cert), "ssl_keyfile": str(certs.key)} if certs else {}
        config = uvicorn.Config(
            RegistryASGI(reg),
            log_level="critical",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
            **tls,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: self.server.run(sockets=[self.sock]), name=f"fake-registry-{self.port}", daemon=True
        )

    def __enter__(self) -> RegistryServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake registry server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self.sock.close()


async def raw_asgi_call(
    app: Any, raw_path: bytes, method: str = "GET", headers: Sequence[tuple[bytes, bytes]] = (), query: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Call an ASGI app with exactly this raw path (no client-side normalisation), as a client that stays
    connected until the answer is complete: (status, headers, body). A hang fails after 10 s."""
    out: dict[str, Any] = {"status": None, "headers": {}, "body": b""}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": [(b"host", b"mirror.test"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], dict(message["headers"])
        else:
            out["body"] += message.get("body", b"")

    with anyio.fail_after(10):
        await app(scope, receive, send)
    return out["status"], out["headers"], out["body"]
