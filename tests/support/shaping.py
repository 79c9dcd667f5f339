"""The engine of :mod:`tests.support.proxy`: ``ProxyOptions`` and the asyncio ``ShapingProxy``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
import struct
import threading
import urllib.parse
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from tests.support._http import CHUNK, MAX_HEAD, Head, Stats, TokenBucket, is_loopback, read_head, relay_body

CDN_MARK, CDN_TOKEN = "seed_cdn", "seed_token"
BLOB_RE = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")
EXPIRED = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"


def mbit(mbps: float) -> float:
    """Mbit/s (1e6 bit/s) -> bytes/s."""
    return mbps * 1e6 / 8


@dataclass
class ProxyOptions:
    per_conn_bps: float = 0.0  # bytes/s per client connection, 0 = unlimited
    total_bps: float = 0.0  # bytes/s shared by all connections
    latency_ms: float = 0.0  # wait before forwarding each request
    drop_after_bytes: int | None = None  # cut GET bodies after exactly N bytes ...
    drop_prob: float = 1.0  # ... with this probability
    drop_style: str = "fin"  # fin (close) | rst (SO_LINGER 0 abort) | stall (silence, then close)
    stall_s: float = 30.0
    fail_rate: float = 0.0  # answer a registry-style 5xx instead of forwarding
    fail_statuses: tuple[int, ...] = (503,)
    max_faults: int | None = None  # bound on fail + drop + corrupt faults together
    fault_path: str = "/blobs/"  # faults only where this is a substring of the path
    seed: int | None = None
    ignore_range: bool = False  # strip Range/If-Range: upstream answers 200 with the full body
    corrupt_byte_at: int | None = None  # flip the byte at this offset of GET response bodies
    redirect_blobs_to: str | None = None  # BASE URL for 307s; "{port}" = this proxy's port
    cdn_expire_after: int | None = None  # marked requests per token; later ones with it get 403
    hold_blobs: threading.Event | None = None  # blob GETs wait here until the test sets it


class _Cut(Exception):
    pass


@dataclass
class _Conn:
    r: asyncio.StreamReader
    w: asyncio.StreamWriter
    bucket: TokenBucket | None
    ur: asyncio.StreamReader | None = None
    uw: asyncio.StreamWriter | None = None


@dataclass
class _Body:
    path: str
    cut_at: int | None
    corrupt_at: int | None
    offset: int = 0


class ShapingProxy:
    """``async with ShapingProxy(upstream_url, per_conn_bps=..., ...) as p: p.url``."""

    def __init__(
        self,
        upstream_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        options: ProxyOptions | None = None,
        **opts: Any,
    ) -> None:
        self.o = options or ProxyOptions(**opts)
        if self.o.drop_style not in ("fin", "rst", "stall"):
            raise ValueError(f"drop_style must be fin, rst or stall, not {self.o.drop_style!r}")
        up = urllib.parse.urlsplit(upstream_url)
        if up.scheme != "http" or not is_loopback(up.hostname or "") or not is_loopback(host):
            raise ValueError("loopback http only")
        self.up_host, self.up_port = up.hostname or "127.0.0.1", up.port or 80
        self.host, self.port = host, port
        self.stats = Stats()
        self.rng = random.Random(self.o.seed)
        rates = [r for r in (self.o.per_conn_bps, self.o.total_bps) if r > 0]
        self.piece = max(1024, min(CHUNK, int(min(rates) * 0.01))) if rates else CHUNK  # ~10 ms
        self.total = self._bucket(self.o.total_bps)
        self._cdn_gen = self._cdn_served = self._faults_taken = 0
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _bucket(self, rate: float) -> TokenBucket | None:
        return TokenBucket(rate, max(self.piece, rate * 0.02)) if rate > 0 else None

    async def start(self) -> ShapingProxy:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Register the connection before its handler first runs, so that close() finds it."""
        task = asyncio.get_running_loop().create_task(self._handle(r, w))
        self._conns[task] = w
        task.add_done_callback(lambda t: self._conns.pop(t, None))

    async def close(self) -> None:
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        # Stop accepting while the server is still open, then give the sockets already accepted
        # a few loop steps to become connections (two are enough). On 3.11, a socket accepted just
        # before Server.close() is refused its transport by the closed server (Server._attach
        # asserts) and left for the GC: a ResourceWarning in some later test.
        for sock in self._server.sockets:
            loop.remove_reader(sock.fileno())
        for _ in range(20):
            await asyncio.sleep(0)
        self._server.close()
        conns = dict(self._conns)
        for t in conns:
            t.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        for w in conns.values():  # a handler cancelled before its first step never closed it
            w.transport.abort()
        await self._server.wait_closed()
        for _ in range(3):  # the aborted transports' connection_lost callbacks
            await asyncio.sleep(0)
        self._server = None

    async def __aenter__(self) -> ShapingProxy:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ sending
    def _take_fault(self, kind: str) -> bool:
        """Count a budgeted fault (fail / drop / corrupt) unless ``max_faults`` is used up."""
        if self.o.max_faults is not None and self._faults_taken >= self.o.max_faults:
            return False
        self._faults_taken += 1
        self.stats.fault(kind)
        return True

    async def _send(self, c: _Conn, data: bytes | memoryview) -> None:
        if c.bucket is None and self.total is None:
            c.w.write(data)
            await c.w.drain()
            return
        mv = memoryview(data)
        for i in range(0, len(mv), self.piece):
            part = mv[i : i + self.piece]
            if c.bucket is not None:
                await c.bucket.take(len(part))
            if self.total is not None:
                await self.total.take(len(part))
            c.w.write(part)
            await c.w.drain()

    async def _payload(self, c: _Conn, b: _Body, data: bytes) -> None:
        """Send response body bytes: corrupt or cut at body offsets, count, shape."""
        off, n = b.offset, len(data)
        if b.corrupt_at is not None and off <= b.corrupt_at < off + n:
            if self._take_fault("corrupt"):
                buf = bytearray(data)
                buf[b.corrupt_at - off] ^= 0xFF
                data = bytes(buf)
            b.corrupt_at = None
        if b.cut_at is not None and off + n > b.cut_at:  # a byte past N would go out
            if self._take_fault("drop"):
                keep = data[: b.cut_at - off]
                self.stats.body(b.path, len(keep))
                await self._send(c, keep)
                raise _Cut
            b.cut_at = None
        b.offset += n
        self.stats.body(b.path, n)
        await self._send(c, data)
        if BLOB_RE.match(b.path):
            self.stats.blob_sent(n)

    async def _reply(self, c: _Conn, status: int, reason: str, body: bytes, extra: str, req: Head) -> bool:
        """Answer without asking upstream. Keep the connection as a registry would, unless the
        request has a body (left unread here) or asked to close; return True if kept."""
        keep = not (req.chunked or req.content_length or req.wants_close)
        close = "" if keep else "Connection: close\r\n"
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
        head += f"Docker-Distribution-Api-Version: registry/2.0\r\n{close}{extra}\r\n"
        await self._send(c, head.encode("latin-1"))
        if not req.start_line.startswith("HEAD "):
            self.stats.body(urllib.parse.urlsplit(req.start_line.split(" ")[1]).path, len(body))
            await self._send(c, body)
        return keep

    # ------------------------------------------------------------------ one request
    async def _request(self, c: _Conn) -> bool:
        """Serve one request; return True to keep the client connection open."""
        req = await read_head(c.r)
        if req is None:
            return False
        self.stats.incr("requests")
        method, target, version = req.start_line.split(" ", 2)
        url = urllib.parse.urlsplit(target)
        path, query = url.path, urllib.parse.parse_qs(url.query)
        if method == "GET" and BLOB_RE.match(path):
            self.stats.blob_request()  # before the added latency: the link phase includes it
            while self.o.hold_blobs is not None and not self.o.hold_blobs.is_set():  # noqa: ASYNC110 - a threading.Event the test thread sets
                await asyncio.sleep(0.01)
        if self.o.latency_ms > 0:
            await asyncio.sleep(self.o.latency_ms / 1000)
        marked = CDN_MARK in query
        if self.o.redirect_blobs_to and method in ("GET", "HEAD") and BLOB_RE.match(path) and not marked:
            loc = self.o.redirect_blobs_to.format(port=self.port).rstrip("/") + f"{path}?{CDN_MARK}=1"
            if self.o.cdn_expire_after:
                loc += f"&{CDN_TOKEN}={self._cdn_gen}"
            self.stats.incr("redirects")
            return await self._reply(c, 307, "Temporary Redirect", b"", f"Location: {loc}\r\n", req)
        if marked:
            if self.o.cdn_expire_after and not self._cdn_admit(query.get(CDN_TOKEN, [""])[0]):
                self.stats.fault("cdn_expired")
                return await self._reply(c, 403, "Forbidden", EXPIRED, "Content-Type: application/xml\r\n", req)
            kept = [(k, v) for k, v in urllib.parse.parse_qsl(url.query) if k not in (CDN_MARK, CDN_TOKEN)]
            rest = urllib.parse.urlencode(kept)
            req = req.with_start_line(f"{method} {path}{'?' + rest if rest else ''} {version}")
        faultable = self.o.fault_path in path
        fail = faultable and self.o.fail_rate > 0 and self.rng.random() < self.o.fail_rate
        if fail and self._take_fault("fail"):
            status = self.rng.choice(self.o.fail_statuses)
            err = {"code": "UNAVAILABLE", "message": "injected fault", "detail": status}
            body = json.dumps({"errors": [err]}).encode()
            ctype = "Content-Type: application/json\r\n"
            return await self._reply(c, status, "Injected Fault", body, ctype, req)
        get = faultable and method == "GET"
        cut_at = None
        if get and self.o.drop_after_bytes is not None and self.rng.random() < self.o.drop_prob:
            cut_at = self.o.drop_after_bytes
        if self.o.ignore_range:
            req = req.without("range", "if-range")
        resp, body_task = await self._forward(c, req)
        if resp is None or c.ur is None:
            self.stats.incr("upstream_errors")
            return await self._reply(c, 502, "Bad Gateway", b"upstream failed", "", req)
        await self._send(c, resp.raw)  # the response head, untouched
        status = resp.status
        close_delimited = False
        if not (method == "HEAD" or status < 200 or status in (204, 304)):
            b = _Body(path, cut_at, self.o.corrupt_byte_at if get and status in (200, 206) else None)
            try:
                close_delimited = await relay_body(
                    c.ur, resp, lambda d: self._payload(c, b, d), lambda d: self._send(c, d)
                )
            except _Cut:
                await self._drop(c)
                return False
        if body_task is not None:
            if not body_task.done():  # upstream answered before reading the whole request body
                body_task.cancel()
                return False
            body_task.result()
        return not (req.wants_close or resp.wants_close or close_delimited)

    async def _forward(self, c: _Conn, req: Head) -> tuple[Head | None, asyncio.Task[bool] | None]:
        """Send the request upstream (reusing the connection); relay 1xx; return the final head."""
        has_body = req.chunked or bool(req.content_length)
        for attempt in range(2):
            fresh = c.uw is None or c.uw.is_closing()
            if fresh:
                try:
                    c.ur, c.uw = await asyncio.open_connection(self.up_host, self.up_port, limit=4 * CHUNK)
                except OSError:
                    return None, None
            ur, uw = c.ur, c.uw
            assert ur is not None
            assert uw is not None
            uw.write(req.raw)
            task = None
            if has_body:

                async def up(d: bytes, uw: asyncio.StreamWriter = uw) -> None:
                    uw.write(d)
                    await uw.drain()

                task = asyncio.create_task(relay_body(c.r, req, up, up))
            try:
                resp = await read_head(ur)
                while resp is not None and 100 <= resp.status < 200 and resp.status != 101:
                    await self._send(c, resp.raw)  # interim response, e.g. 100 Continue
                    resp = await read_head(ur)
            except (OSError, asyncio.IncompleteReadError):
                resp = None
            if resp is not None and resp.status != 101:
                return resp, task
            if task is not None:
                task.cancel()
            uw.close()
            c.ur = c.uw = None
            if fresh or has_body or attempt:
                break  # else it was a stale keep-alive connection: retry once on a fresh one
        return None, None

    def _cdn_admit(self, token: str) -> bool:
        if token != str(self._cdn_gen):
            return False
        self._cdn_served += 1
        if self.o.cdn_expire_after and self._cdn_served >= self.o.cdn_expire_after:
            self._cdn_gen, self._cdn_served = self._cdn_gen + 1, 0
        return True

    async def _drop(self, c: _Conn) -> None:
        with contextlib.suppress(OSError):
            await c.w.drain()
        if self.o.drop_style == "rst":
            for _ in range(200):  # let the bytes before the cut leave the transport buffer first
                if c.w.transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.005)
            sock = c.w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.w.transport.abort()
        elif self.o.drop_style == "stall":
            await asyncio.sleep(self.o.stall_s)
        # fin: the caller closes the connection after the buffered bytes

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.stats.incr("connections")
        w.transport.set_write_buffer_limits(high=4 * CHUNK)
        c = _Conn(r, w, self._bucket(self.o.per_conn_bps))
        try:
            while await self._request(c):
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            for wr in (c.uw, c.w):
                if wr is not None:
                    wr.close()
