"""The direct path's connections (wire.direct.DirectPool, DirectResponse, open_in_thread) against a
tiny keep-alive server: bodies, keep-alive, failures, aborts, giving up, and draining (on both
paths); and pwrite_all, which both paths write with."""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from ollama_seed.store import oscalls
from ollama_seed.store.fsutil import pwrite_all
from ollama_seed.wire.direct import DRAIN_LIMIT, DRAIN_TIMEOUT, DirectPool, LinkError, drain, open_in_thread
from ollama_seed.wire.tls import LazyTrustContext

BLOB = bytes(range(256)) * 4096  # 1 MiB


# --------------------------------------------------------------------------- a tiny keep-alive server


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.paths.append(self.path)
            srv.headers.append(dict(self.headers))
        if self.path.startswith("/challenge"):  # a 401 with a chunked body, as uvicorn sends one
            size = 200 if self.path == "/challenge" else 4 * DRAIN_LIMIT
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Bearer realm="https://auth.test/token"')
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"x" * (size // 2), b"y" * (size - size // 2)):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/redirect"):  # a 307 with a small body, or one that stalls half-way
            body = b"<a href=/elsewhere>Temporary Redirect</a>.\n"
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/redirect-stall":
                self.wfile.write(body[:10])
                self.wfile.flush()
                srv.release.wait(10)
                return
            self.wfile.write(body)
            return
        if srv.stall_after is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BLOB)))
            self.end_headers()
            self.wfile.write(BLOB[: srv.stall_after])
            self.wfile.flush()
            srv.release.wait(10)
            return
        start, end = 0, len(BLOB)
        rng = self.headers.get("Range")
        if rng:
            a, b = rng.removeprefix("bytes=").split("-")
            start, end = int(a), int(b) + 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(BLOB)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        self.wfile.write(BLOB[start:end])
        if srv.close_after_response:
            self.close_connection = True  # closes without saying so (no Connection: close)

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.close_after_response = False
        self.stall_after: int | None = None
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return  # a client that went away, as several tests have it do on purpose
        super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def pool() -> Iterator[DirectPool]:
    p = DirectPool(timeout=5.0, user_agent="ollama-seed-test", context=LazyTrustContext())
    try:
        yield p
    finally:
        p.close()


def _read_all(pool: DirectPool, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    resp = pool.open(url, headers)
    buf = bytearray(64 * 1024)
    out = bytearray()
    try:
        while n := resp.readinto(memoryview(buf)):
            out += buf[:n]
    finally:
        resp.release()
    return resp.status_code, bytes(out)


def test_range_bodies_arrive_exactly_and_one_connection_is_kept_alive(server: _Server, pool: DirectPool) -> None:
    for start, end in [(0, 1000), (1000, 300_000), (300_000, len(BLOB))]:
        status, body = _read_all(pool, f"{server.url}/blob", {"Range": f"bytes={start}-{end - 1}"})
        assert status == 206
        assert body == BLOB[start:end]
    assert server.connections == 1
    assert server.headers[0]["User-Agent"] == "ollama-seed-test"


def test_a_kept_alive_connection_the_server_closed_is_replaced_transparently(server: _Server, pool: DirectPool) -> None:
    server.close_after_response = True
    for _ in range(3):
        assert _read_all(pool, f"{server.url}/blob", {"Range": "bytes=0-99"}) == (206, BLOB[:100])
    assert server.connections == 3


def test_a_body_not_read_to_its_end_closes_its_connection(server: _Server, pool: DirectPool) -> None:
    resp = pool.open(f"{server.url}/blob", {})
    buf = bytearray(1000)
    assert resp.readinto(memoryview(buf)) > 0
    resp.release()  # 1 MiB still unread: the connection cannot carry another request
    assert _read_all(pool, f"{server.url}/blob", {"Range": "bytes=5-9"}) == (206, BLOB[5:10])
    assert server.connections == 2


def test_refused_connection_is_a_link_error_naming_the_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        p = DirectPool(timeout=2.0, user_agent="t", context=LazyTrustContext())
        with pytest.raises(LinkError, match=rf"cannot connect to http://127.0.0.1:{port}/v2/x/blobs/y") as info:
            p.open(f"http://127.0.0.1:{port}/v2/x/blobs/y?X-Signature=secret", {})
    assert "secret" not in str(info.value)


def test_a_stalled_body_is_a_link_error_after_the_timeout(server: _Server) -> None:
    """A read fills its whole buffer or fails: bytes it held when the link stalled are fetched again."""
    server.stall_after = 1000
    p = DirectPool(timeout=0.3, user_agent="t", context=LazyTrustContext())
    resp = p.open(f"{server.url}/blob?sig=secret", {})
    buf = bytearray(len(BLOB))
    started = time.monotonic()
    try:
        with pytest.raises(LinkError, match=r"stalled: no data for 0\.3 s from http://127\.0\.0\.1:\d+/blob$") as info:
            resp.readinto(memoryview(buf))
        assert time.monotonic() - started < 3
        assert "secret" not in str(info.value)
    finally:
        resp.release()
        p.close()


def test_abort_ends_a_read_blocked_in_another_thread_at_once(server: _Server, pool: DirectPool) -> None:
    server.stall_after = 10
    resp = pool.open(f"{server.url}/blob", {})
    results: list[int] = []

    def reader() -> None:
        buf = bytearray(len(BLOB))
        total = 0
        while n := resp.readinto(memoryview(buf)[total:]):
            total += n
        results.append(total)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.2)
    assert t.is_alive()  # blocked: the server sent 10 bytes and waits
    started = time.monotonic()
    resp.abort()
    t.join(2)
    assert not t.is_alive()
    assert time.monotonic() - started < 1
    assert results == [10]
    resp.release()


def test_a_caller_that_gave_up_during_the_connect_sends_no_request(server: _Server) -> None:
    """A cancelled pull returns without waiting for a slow connect (1 s here); once it completes,
    the worker thread closes it instead of sending a request the pull no longer wants."""

    class SlowConnect(http.client.HTTPConnection):
        def connect(self) -> None:
            time.sleep(1.0)
            super().connect()

    p = DirectPool(timeout=5.0, user_agent="t", context=LazyTrustContext())
    p._new = lambda key: SlowConnect(key[1], key[2], timeout=5.0)  # type: ignore[method-assign]

    async def give_up() -> float:
        started = time.monotonic()
        with anyio.move_on_after(0.05):
            await open_in_thread(p, f"{server.url}/blob", {}, anyio.CapacityLimiter(4))
        return time.monotonic() - started

    try:
        assert anyio.run(give_up) < 0.8  # did not wait for the connect
        deadline = time.monotonic() + 3
        while server.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # a request, had one been sent, would have reached the server by now
        assert server.connections == 1
        assert server.paths == []
    finally:
        p.close()


def test_a_small_unwanted_body_is_drained_so_its_connection_is_kept(server: _Server, pool: DirectPool) -> None:
    resp = pool.open(f"{server.url}/redirect", {})
    assert resp.status_code == 307
    resp.drain()
    resp.release()
    assert _read_all(pool, f"{server.url}/blob", {"Range": "bytes=0-9"}) == (206, BLOB[:10])
    assert server.connections == 1


@pytest.mark.parametrize(("path", "connections"), [("/challenge", 1), ("/challenge-large", 2)])
def test_a_chunked_unwanted_body_is_drained_if_small(
    server: _Server, pool: DirectPool, path: str, connections: int
) -> None:
    """A 401 challenge's body comes chunked (no length) from some servers: a small one is read, so
    the connection is kept (closing it mid-body left the TLS server's transport dangling)."""
    resp = pool.open(f"{server.url}{path}", {})
    assert resp.status_code == 401
    resp.drain()
    resp.release()
    assert _read_all(pool, f"{server.url}/blob", {"Range": "bytes=0-9"}) == (206, BLOB[:10])
    assert server.connections == connections


def test_a_large_unwanted_body_is_not_read_and_its_connection_is_closed(server: _Server, pool: DirectPool) -> None:
    resp = pool.open(f"{server.url}/blob", {})  # 200 with the whole blob: far over DRAIN_LIMIT
    assert len(BLOB) > DRAIN_LIMIT
    resp.drain()
    resp.release()
    assert _read_all(pool, f"{server.url}/blob", {"Range": "bytes=0-9"}) == (206, BLOB[:10])
    assert server.connections == 2


def test_a_stalled_unwanted_body_is_given_up_after_the_drain_timeout(server: _Server, pool: DirectPool) -> None:
    resp = pool.open(f"{server.url}/redirect-stall", {})
    started = time.monotonic()
    resp.drain()
    waited = time.monotonic() - started
    resp.release()
    assert DRAIN_TIMEOUT * 0.9 <= waited < DRAIN_TIMEOUT + 2  # not the pool's 5 s timeout
    assert _read_all(pool, f"{server.url}/blob", {"Range": "bytes=0-9"}) == (206, BLOB[:10])
    assert server.connections == 2  # the half-read connection was closed, not reused


# --------------------------------------------------------------------------- the httpx side of drain


class _SlowBody(httpx.AsyncByteStream):
    def __init__(self, first: bytes, then_wait: float) -> None:
        self.first, self.then_wait = first, then_wait

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        await anyio.sleep(self.then_wait)
        yield b"never wanted"


def test_httpx_drain_reads_a_small_body_whole() -> None:
    resp = httpx.Response(503, headers={"Content-Length": "12"}, stream=_SlowBody(b"unavailable!", 0))
    anyio.run(drain, resp, anyio.CapacityLimiter(1))
    assert resp.is_stream_consumed
    assert resp.content.startswith(b"unavailable!")


def test_httpx_drain_leaves_a_large_body_unread() -> None:
    resp = httpx.Response(200, headers={"Content-Length": str(DRAIN_LIMIT + 1)}, stream=_SlowBody(b"x", 0))
    anyio.run(drain, resp, anyio.CapacityLimiter(1))
    assert not resp.is_stream_consumed


def test_httpx_drain_gives_up_on_a_stalled_body_after_the_drain_timeout() -> None:
    resp = httpx.Response(503, headers={"Content-Length": "100"}, stream=_SlowBody(b"half", 30))
    started = time.monotonic()
    anyio.run(drain, resp, anyio.CapacityLimiter(1))
    assert DRAIN_TIMEOUT * 0.9 <= time.monotonic() - started < DRAIN_TIMEOUT + 2


def test_pwrite_all_finishes_what_a_short_pwrite_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwrite
    calls: list[int] = []

    def short(fd: int, data: bytes | memoryview, pos: int) -> int:  # at most 3 bytes a call
        calls.append(pos)
        return real(fd, bytes(data[:3]), pos)

    monkeypatch.setattr(oscalls, "host", oscalls.Platform("linux", os_pwrite=short))
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        pwrite_all(fd, b"0123456789", 5)
        assert os.pread(fd, 20, 0) == b"\0" * 5 + b"0123456789"
    finally:
        os.close(fd)
    assert calls == [5, 8, 11, 14]
