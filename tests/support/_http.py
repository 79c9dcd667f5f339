"""Small HTTP/1.1 helpers for the shaping proxy: raw heads, token buckets, thread-safe stats."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 64 * 1024
CHUNK = 256 * 1024

Send = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class Head:
    """A request or response head, kept as the exact bytes received (``raw``, ending in CRLFCRLF)."""

    raw: bytes

    @property
    def lines(self) -> list[bytes]:
        return self.raw[:-4].split(b"\r\n")

    @property
    def start_line(self) -> str:
        return self.lines[0].decode("latin-1")

    @property
    def headers(self) -> list[tuple[str, str]]:
        out = []
        for line in self.lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                out.append((name.strip().lower(), value.strip()))
        return out

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def tokens(self, name: str) -> set[str]:
        name = name.lower()
        return {t.strip().lower() for k, v in self.headers if k == name for t in v.split(",") if t.strip()}

    @property
    def chunked(self) -> bool:
        return "chunked" in self.tokens("transfer-encoding")

    @property
    def content_length(self) -> int | None:
        v = self.get("content-length")
        return int(v) if v is not None else None

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ", 2)[1])

    @property
    def wants_close(self) -> bool:
        conn = self.tokens("connection")
        if self.start_line.startswith("HTTP/1.0") or self.start_line.endswith("HTTP/1.0"):
            return "keep-alive" not in conn
        return "close" in conn

    def without(self, *names: str) -> Head:
        """The same head minus every header line called one of ``names`` (other bytes untouched)."""
        drop = {n.lower().encode() for n in names}
        kept = [self.lines[0]] + [ln for ln in self.lines[1:] if ln.split(b":", 1)[0].strip().lower() not in drop]
        return Head(b"\r\n".join(kept) + b"\r\n\r\n")

    def with_start_line(self, start_line: str) -> Head:
        return Head(b"\r\n".join([start_line.encode("latin-1"), *self.lines[1:]]) + b"\r\n\r\n")


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """Read one head; None on a clean EOF before any byte."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise
    if len(raw) > MAX_HEAD:
        raise ValueError("head too large")
    return Head(raw)


async def _copy(r: asyncio.StreamReader, n: int, out: Send) -> None:
    while n > 0:
        data = await r.read(min(CHUNK, n))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        await out(data)


async def relay_body(r: asyncio.StreamReader, head: Head, payload: Send, framing: Send) -> bool:
    """Relay a message body framed as ``head`` says (chunked, Content-Length or until EOF).

    ``payload`` gets the body bytes proper, ``framing`` the chunk-size lines and trailers.
    Returns True if the body was close-delimited. Callers handle HEAD / 1xx / 204 / 304.
    """
    if head.chunked:
        while True:
            line = await r.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            await framing(line)
            if size == 0:
                while (trailer := await r.readuntil(b"\r\n")) != b"\r\n":
                    await framing(trailer)
                await framing(b"\r\n")
                return False
            await _copy(r, size, payload)
            await framing(await r.readexactly(2))
    if (n := head.content_length) is not None:
        await _copy(r, n, payload)
        return False
    if head.start_line.startswith("HTTP/"):
        while data := await r.read(CHUNK):
            await payload(data)
        return True
    return False  # a request without Content-Length or chunked has no body


class TokenBucket:
    """Rate limiter in bytes/s with a small burst; callers may go into debt and then sleep it off.

    Starts empty, so ``n`` bytes through a fresh bucket take at least ``n / rate`` seconds.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = 0.0
        self.stamp = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


class Stats:
    """Counters shared between the proxy's event loop and other threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.bytes_down = 0  # response body bytes sent to clients (relayed and synthetic)
        self.redirects = 0
        self.upstream_errors = 0
        self.per_path: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.started = time.monotonic()
        # the link phase: first blob request to the last blob body byte sent, for any client
        self.blob_first: float | None = None
        self.blob_last: float | None = None
        self.blob_bytes = 0

    def blob_request(self) -> None:
        with self._lock:
            if self.blob_first is None:
                self.blob_first = time.monotonic()

    def blob_sent(self, n: int) -> None:
        with self._lock:
            self.blob_last = time.monotonic()
            self.blob_bytes += n

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def body(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_down += n
            self.per_path[path] += n

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connections": self.connections,
                "requests": self.requests,
                "bytes_down": self.bytes_down,
                "redirects": self.redirects,
                "upstream_errors": self.upstream_errors,
                "faults": dict(self.faults),
                "fault_total": sum(self.faults.values()),
                "per_path": dict(self.per_path),
                "seconds": round(time.monotonic() - self.started, 3),
                "blob_bytes": self.blob_bytes,
                "blob_phase_s": (
                    round(self.blob_last - self.blob_first, 4)
                    if self.blob_first is not None and self.blob_last is not None
                    else None
                ),
            }


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
