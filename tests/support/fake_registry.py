"""An in-process registry for behaviour tests: an httpx ``MockTransport`` handler with faults.

It serves models (``BuiltModel``) under ``http(s)://<host>/v2/<ns>/<model>/...`` for any host,
answers ranged blob GETs with 206, and can be told to misbehave:

- ``drop_after``: end a blob body with ``httpx.ReadError`` after N bytes (``drops`` times);
- ``ignore_range``: answer 200 with the whole body;
- ``corrupt_at``: flip the byte at this blob offset (``corruptions`` times);
- ``statuses``: a queue of statuses (e.g. ``[503, 429]``) answered to the next blob GETs;
- ``retry_after``: the Retry-After header sent with a 429/503;
- ``stall``: sleep this long before the first body byte (``stalls`` times);
- ``cdn_host``: answer blob GETs with 307 to ``https://<cdn_host>/blob/<hex>?sig=<n>``;
  ``cdn_expire_after``: a signature stops working (403) after this many uses;
- ``token``: require ``Authorization: Bearer <token>`` on registry requests (401 challenge
  with a realm on the same host, which hands the token out);
- ``wrong_length``: send a Content-Length (on 200) that disagrees with the blob.

Every request is recorded in ``requests`` as ``(method, url, headers)``, and body bytes sent in
``bytes_sent``, so tests can prove what was (not) asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import httpx

from .model import BuiltModel


@dataclass
class Faults:
    drop_after: int | None = None
    drops: int = 1
    ignore_range: bool = False
    corrupt_at: int | None = None
    corruptions: int = 1
    statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    stall: float = 0.0
    stalls: int = 1
    cdn_host: str | None = None
    cdn_expire_after: int | None = None
    token: str | None = None
    wrong_length: bool = False
    blob_filter: str | None = None  # only blobs whose digest contains this are faulted


class FakeRegistry:
    """Serve models from memory (or their files) through an httpx MockTransport."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self.repos: dict[tuple[str, str], bytes] = {}  # (repo, tag or digest) -> manifest
        self.blobs: dict[str, Any] = {}  # hex -> BlobInfo
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.bytes_sent = 0
        self._sig = 0
        self._sig_uses: dict[str, int] = {}

    def add(self, repo: str, tag: str, model: BuiltModel) -> None:
        self.repos[(repo, tag)] = model.manifest
        self.repos[(repo, model.manifest_digest)] = model.manifest
        for b in model.blobs:
            self.blobs[b.hex] = b

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def blob_requests(self) -> list[str]:
        return [u for m, u, _ in self.requests if "/blobs/" in u or "/blob/" in u]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append((request.method, str(url), headers))
        f = self.faults
        path = url.path
        if f.cdn_host and url.host == f.cdn_host:
            return await self._cdn(request, path)
        if path == "/token":
            return httpx.Response(200, json={"token": f.token})
        if f.token and headers.get("authorization") != f"Bearer {f.token}":
            realm = f"{url.scheme}://{url.netloc.decode()}/token"
            return httpx.Response(
                401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"'}
            )
        if not path.startswith("/v2/"):
            return httpx.Response(404)
        if path == "/v2/":
            return httpx.Response(200, json={})
        rest = path[len("/v2/") :]
        if "/manifests/" in rest:
            repo, _, ref = rest.rpartition("/manifests/")
            body = self.repos.get((repo, ref))
            if body is None:
                return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})
            return httpx.Response(
                200, content=body, headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}
            )
        if "/blobs/" in rest:
            _repo, _, digest = rest.rpartition("/blobs/")
            hexd = digest.removeprefix("sha256:")
            if hexd not in self.blobs:
                return httpx.Response(404)
            if f.cdn_host and self._faulted(hexd):
                self._sig += 1
                return httpx.Response(307, headers={"Location": f"https://{f.cdn_host}/blob/{hexd}?sig={self._sig}"})
            return await self._serve_blob(request, hexd)
        return httpx.Response(404)

    def _faulted(self, hexd: str) -> bool:
        return self.faults.blob_filter is None or self.faults.blob_filter in hexd

    async def _cdn(self, request: httpx.Request, path: str) -> httpx.Response:
        f = self.faults
        sig = request.url.params.get("sig", "")
        self._sig_uses[sig] = self._sig_uses.get(sig, 0) + 1
        if f.cdn_expire_after is not None and self._sig_uses[sig] > f.cdn_expire_after:
            return httpx.Response(403, text="<Error>Request has expired</Error>")
        return await self._serve_blob(request, path.rsplit("/", 1)[-1])

    async def _serve_blob(self, request: httpx.Request, hexd: str) -> httpx.Response:
        f = self.faults
        blob = self.blobs[hexd]
        data: bytes = blob.read_bytes()
        size = len(data)
        faulted = self._faulted(hexd)
        if faulted and f.statuses:
            status = f.statuses.pop(0)
            hdrs = {"Retry-After": f.retry_after} if f.retry_after else {}
            return httpx.Response(status, headers=hdrs, json={"errors": [{"code": "UNAVAILABLE"}]})
        start, end = 0, size
        rng = request.headers.get("range")
        status = 200
        if rng and not (faulted and f.ignore_range):
            spec = rng.removeprefix("bytes=")
            a, _, b = spec.partition("-")
            start = int(a)
            end = int(b) + 1 if b else size
            if start >= size or end > size or start >= end:
                return httpx.Response(416, headers={"Content-Range": f"bytes */{size}"})
            status = 206
        body = bytearray(data[start:end])
        if faulted and f.corrupt_at is not None and f.corruptions > 0 and start <= f.corrupt_at < end:
            f.corruptions -= 1
            body[f.corrupt_at - start] ^= 0xFF
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Content-Length": str(len(body)),
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        elif faulted and f.wrong_length:
            headers["Content-Length"] = str(size + 1)
        if request.method == "HEAD":
            return httpx.Response(status, headers=headers)
        drop = None
        if faulted and f.drop_after is not None and f.drops > 0:
            f.drops -= 1
            drop = f.drop_after
        stall = 0.0
        if faulted and f.stall and f.stalls > 0:
            f.stalls -= 1
            stall = f.stall
        return httpx.Response(status, headers=headers, stream=_Body(self, bytes(body), drop, stall))


class _Body(httpx.AsyncByteStream):
    def __init__(self, reg: FakeRegistry, data: bytes, drop: int | None, stall: float) -> None:
        self.reg, self.data, self.drop, self.stall = reg, data, drop, stall

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.stall:
            await anyio.sleep(self.stall)
        step = 64 * 1024
        limit = len(self.data) if self.drop is None else min(self.drop, len(self.data))
        for i in range(0, limit, step):
            chunk = self.data[i : min(i + step, limit)]
            self.reg.bytes_sent += len(chunk)
            yield chunk
            await anyio.lowlevel.checkpoint()
        if self.drop is not None and self.drop < len(self.data):
            raise httpx.ReadError("connection dropped by fault injection")
