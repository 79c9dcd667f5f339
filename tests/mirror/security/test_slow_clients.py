"""F1 (slow clients took every connection slot: a site-wide 503, /healthz too) and F14 (ambiguous framing)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tests.mirror.security.conftest import get, request, status
from tests.support.mirror import serving
from tests.support.model import BuiltModel


@contextlib.contextmanager
def opened(port: int, count: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """*count* connections, each sent *first* (nothing: idle; a partial head: slow-header)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if first:
                s.sendall(first)
            held.append(s)
        yield held
    finally:
        for s in held:
            s.close()


def test_idle_and_slow_header_connections_do_not_shut_others_out(store: Path) -> None:
    # before: uvicorn never closed them, and past --limit-concurrency every request (/healthz too) got 503
    with serving(store, limit_concurrency=8, header_timeout=30.0) as info:
        with opened(info.port, 12) as _idle, opened(info.port, 12, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: ") as _slow:
            time.sleep(1.5)  # older than the grace a new connection's head gets
            for path in ("/healthz", "/v2/", "/v2/library/small/manifests/latest"):
                started = time.monotonic()
                reply = get(info.port, path)
                assert status(reply) == 200, reply[:200]
                assert time.monotonic() - started < 5  # no waiting for the attackers' timeouts


def test_a_request_head_must_arrive_in_time(store: Path) -> None:
    with serving(store, header_timeout=0.5) as info:
        for first in (b"", b"GET /v2/ HTTP/1.1\r\n"):  # idle, then slow-header
            with socket.create_connection(("127.0.0.1", info.port), timeout=10) as s:
                s.sendall(first)
                started = time.monotonic()
                reply = s.recv(4096)
                while reply and (chunk := s.recv(4096)):
                    reply += chunk
                assert time.monotonic() - started < 5
                assert reply == b"" or status(reply) == 408, reply[:100]


def test_a_reader_that_stops_is_dropped_and_probes_answer_meanwhile(store: Path, small: BuiltModel) -> None:
    blob = small.model_layer
    with serving(store, limit_concurrency=3, write_timeout=2.0) as info:
        stalled = []
        for _ in range(3):  # every connection busy with a response nobody reads
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", info.port))
            s.sendall(
                f"GET /v2/library/small/blobs/{blob.digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            stalled.append(s)
        try:
            time.sleep(0.3)
            assert status(get(info.port, "/healthz")) == 200  # the reserve, at once
            assert status(get(info.port, "/metrics")) == 200
            deadline = time.monotonic() + 20
            while status(get(info.port, "/v2/")) != 200:  # before: 503 until the attacker let go
                assert time.monotonic() < deadline, "stalled readers were never dropped"
                time.sleep(0.2)
            received = []
            for s in stalled:  # the server gave up on one at least: it ends short of the blob
                s.settimeout(30)
                got = 0
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
                received.append(got)
            assert min(received) < blob.size, received
        finally:
            for s in stalled:
                s.close()


def test_content_length_with_transfer_encoding_is_refused(store: Path) -> None:
    smuggle = (
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with serving(store) as info:
        reply = request(info.port, smuggle)
    assert status(reply) == 400, reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1  # the smuggled request was not answered


def test_a_request_with_a_body_closes_its_connection(store: Path) -> None:
    raw = b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(store) as info:
        reply = request(info.port, raw)
    assert status(reply) == 405 and reply.count(b"HTTP/1.1 ") == 1  # the body is never parsed as a request
