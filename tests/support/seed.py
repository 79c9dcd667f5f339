"""Push blobs and manifests to a registry with the Docker Registry HTTP API v2 (plain httpx).

Upload: ``HEAD`` the blob (skip if present) -> ``POST /v2/<repo>/blobs/uploads/`` (202 + Location)
-> either ``PUT <Location>&digest=`` with the whole body (monolithic, streamed with an explicit
Content-Length) or ``PATCH`` pieces with ``Content-Range: a-b`` then ``PUT ...&digest=`` empty.
Manifests go with ``PUT /v2/<repo>/manifests/<tag>`` and the manifest media type as Content-Type.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.model import MANIFEST_V2, BlobInfo, BuiltModel, file_digest, sha256_digest

DEFAULT_CHUNK = 8 << 20


def _add_query(url: str, **params: str) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + urllib.parse.urlencode(params)


def _expect(r: httpx.Response, status: int, what: str) -> httpx.Response:
    if r.status_code != status:
        raise RuntimeError(f"{what}: HTTP {r.status_code} (wanted {status}): {r.text[:1000]}")
    return r


def _pieces(data: bytes | Path, size: int) -> Iterator[bytes]:
    if isinstance(data, Path):
        with data.open("rb") as f:
            while piece := f.read(size):
                yield piece
    else:
        for i in range(0, len(data), size):
            yield data[i : i + size]


@contextlib.contextmanager
def _client(client: httpx.Client | None) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
    else:
        with httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0), trust_env=False) as c:
            yield c


def push_blob(
    url: str,
    repo: str,
    data: bytes | Path | BlobInfo,
    *,
    chunked: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    digest: str | None = None,
    client: httpx.Client | None = None,
) -> str:
    """Upload one blob to ``repo``; return its digest. Skips blobs the registry already has.

    Monolithic: POST uploads/ then PUT ``?digest=`` with the whole (streamed) body.
    Chunked: PATCH ``chunk_size`` pieces with Content-Range, then PUT ``?digest=`` empty.
    """
    if isinstance(data, BlobInfo):
        digest, data = data.digest, data.source
    if isinstance(data, str):
        data = Path(data)
    if digest is None:
        digest = file_digest(data) if isinstance(data, Path) else sha256_digest(data)
    size = data.stat().st_size if isinstance(data, Path) else len(data)
    base = url.rstrip("/")
    with _client(client) as c:
        if c.head(f"{base}/v2/{repo}/blobs/{digest}").status_code == 200:
            return digest
        r = _expect(c.post(f"{base}/v2/{repo}/blobs/uploads/"), 202, "POST blobs/uploads/")
        location = urllib.parse.urljoin(base + "/", r.headers["Location"])
        octet = {"Content-Type": "application/octet-stream"}
        if not chunked:
            r = c.put(
                _add_query(location, digest=digest),
                content=_pieces(data, 1 << 20),
                headers={**octet, "Content-Length": str(size)},
            )
        else:
            offset = 0
            for piece in _pieces(data, chunk_size):
                end = offset + len(piece) - 1
                r = c.patch(location, content=piece, headers={**octet, "Content-Range": f"{offset}-{end}"})
                _expect(r, 202, f"PATCH {offset}-{end}")
                location = urllib.parse.urljoin(base + "/", r.headers["Location"])
                offset = end + 1
            r = c.put(_add_query(location, digest=digest), content=b"")
        _expect(r, 201, f"PUT blob {digest}")
        got = r.headers.get("Docker-Content-Digest")
        if got != digest:
            raise RuntimeError(f"registry stored {got}, expected {digest}")
    return digest


def push_manifest(
    url: str,
    repo: str,
    tag: str,
    manifest_bytes: bytes,
    *,
    media_type: str = MANIFEST_V2,
    client: httpx.Client | None = None,
) -> str:
    """PUT a manifest under ``tag``; return the registry's Docker-Content-Digest (checked)."""
    digest = sha256_digest(manifest_bytes)
    with _client(client) as c:
        r = c.put(
            f"{url.rstrip('/')}/v2/{repo}/manifests/{tag}",
            content=manifest_bytes,
            headers={"Content-Type": media_type},
        )
        _expect(r, 201, f"PUT manifest {repo}:{tag}")
    got = r.headers.get("Docker-Content-Digest")
    if got != digest:
        raise RuntimeError(f"registry says manifest is {got}, expected {digest}")
    return digest


def seed_registry(
    registry_url: str,
    repo: str,
    tag: str,
    model: BuiltModel,
    chunked: bool = False,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Push every distinct blob, then the manifest; GET it back and check it is byte-identical."""
    t0 = time.monotonic()
    with _client(client) as c:
        for b in model.blobs:
            push_blob(registry_url, repo, b, chunked=chunked, chunk_size=chunk_size, client=c)
        digest = push_manifest(registry_url, repo, tag, model.manifest, client=c)
        r = c.get(f"{registry_url.rstrip('/')}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_V2})
        if _expect(r, 200, "GET manifest").content != model.manifest:
            raise RuntimeError("manifest read back differs from the one pushed")
    return {
        "url": registry_url,
        "repo": repo,
        "tag": tag,
        **model.summary(),
        "manifest_digest": digest,
        "push_seconds": round(time.monotonic() - t0, 3),
    }
