"""The registry upload protocol (distribution-spec "push"), for ``push`` and ``image build --push``.

For each blob:

1. ``HEAD /v2/<repo>/blobs/<digest>``: 200 means the registry has it; nothing is sent.
2. If another repository on that registry is known to hold it, a cross-repository mount:
   ``POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>``. 201 means mounted; 202 means
   the registry declined and opened an ordinary upload instead.
3. Otherwise ``POST /v2/<repo>/blobs/uploads/`` (202 and a ``Location``).
4. A blob of at most *chunk_size* bytes goes in one ``PUT <Location>&digest=<digest>``; a bigger
   one as ``PATCH`` requests of *chunk_size* bytes with ``Content-Range`` (each answer names the
   next ``Location``), then an empty ``PUT``. A blob whose digest is known only at its end (an
   image layer being built) is sent as one streaming ``PATCH`` and the ``PUT`` names the digest
   computed on the way (:meth:`Uploader.stream`). Bodies are never held whole.

Manifests: ``PUT /v2/<repo>/manifests/<reference>`` with the exact bytes and their media type; the
registry's ``Docker-Content-Digest`` must equal ours. Blob uploads and manifests failing with
5xx/429 or a network error start again (three tries, :func:`with_retries`); a failure no retry can
cure (plain http answering a TLS hello, an untrusted certificate: :func:`wire.errors.permanent`)
ends the push at once. Tokens come from the registry client's challenge logic with scope
``repository:<repo>:pull,push`` (and ``pull`` on a mount's source repository).

Signing (issue 21) hooks in at :meth:`Uploader.manifest`: every manifest and index a push writes
goes through it, models and images alike.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import httpx

from ..core.digest import Digest
from ..core.errors import AuthenticationError, IntegrityError, RegistryError, RegistryProtocolError, TransferError
from ..core.ranges import backoff
from .errors import permanent
from .registry import RegistryClient, RepoName, map_errors

__all__ = ["ATTEMPTS", "DEFAULT_CHUNK", "Retry", "Uploader", "with_retries"]

DEFAULT_CHUNK = 32 * 1024 * 1024
ATTEMPTS = 3
Body = Callable[[int, int], AsyncIterator[bytes]]  # (start, length) -> a fresh iterator over those bytes
T = TypeVar("T")


class Retry(Exception):
    """A transient failure (5xx, 429): the caller may try the whole blob again."""


async def with_retries(attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """*attempt* until it succeeds, at most :data:`ATTEMPTS` times while it fails transiently (a 5xx or
    429, a network error), with backoff between.

    Raises:
        TransferError: "*what* failed ...": after the last try, or at once for a failure no retry can
            cure (plain http answering TLS, an untrusted certificate: the same every time).
    """
    for n in range(ATTEMPTS):
        try:
            return await attempt()
        except (Retry, TransferError) as exc:
            if permanent(exc):
                raise TransferError(f"{what} failed: {exc}") from None
            if n == ATTEMPTS - 1:
                raise TransferError(f"{what} failed {ATTEMPTS} times: {exc}") from None
            await anyio.sleep(backoff(n))
    raise AssertionError("unreachable")


def _excerpt(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
    return text or "(no body)"


def _with_digest(location: str, digest: Digest) -> str:
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    return f"{location}{sep}{urllib.parse.urlencode({'digest': str(digest)})}"


class Uploader:
    """Uploads into one repository of one registry."""

    def __init__(self, client: RegistryClient, target: RepoName, *, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.client, self.target = client, target
        self.chunk_size = max(1, chunk_size)
        self.base = client.base(target)
        self.repo = target.repository
        self.scope = f"repository:{self.repo}:pull,push"
        self.uploads = f"{self.base}/v2/{self.repo}/blobs/uploads/"
        self._first_done = anyio.Event()
        self._first_sent = False

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        content: Any = None,
        ok: Sequence[int] = (200, 201, 202, 204),
    ) -> httpx.Response:
        with map_errors(url):
            resp = await self._send(method, url, headers or {}, content)
            try:
                body = await resp.aread()
            finally:
                await resp.aclose()
        status = resp.status_code
        if status in ok:
            return resp
        shown = url.split("?", 1)[0]
        if status in (401, 403):
            raise AuthenticationError(
                f"{self.target.host} refused {method} {shown} (HTTP {status}): {_excerpt(body)}; pushing needs "
                "credentials with push rights: docker login, or OLLAMA_SEED_REGISTRY_USER/PASSWORD",
                url=shown,
                status=status,
            )
        if status == 429 or status >= 500:
            raise Retry(f"{method} {shown}: HTTP {status}: {_excerpt(body)}")
        if status == 405:
            raise RegistryError(
                f"{self.target.host} does not accept uploads ({method} {shown} answered 405); "
                "it may be a read-only mirror or proxy",
                url=shown,
                status=status,
            )
        raise RegistryError(f"{method} {shown} answered HTTP {status}: {_excerpt(body)}", url=shown, status=status)

    async def _send(self, method: str, url: str, headers: dict[str, str], content: Any) -> httpx.Response:
        """Send one request; the first one goes alone.

        Concurrent callers wait until the first request has an answer, so a registry that cannot be
        reached at all (plain http answering a TLS hello, an untrusted certificate, a refused login)
        fails on one connection. Several connections cancelled mid-handshake would be left to the
        garbage collector: httpcore 1.0 closes a TLS stream on an error, not on a cancellation.
        """
        first, self._first_sent = not self._first_sent, True
        if not first:
            await self._first_done.wait()
        try:
            return await self.client.send(self.target, method, url, headers, content=content, scope=self.scope)
        finally:
            if first:
                self._first_done.set()

    async def exists(self, digest: Digest, repo: str | None = None) -> bool:
        resp = await self.request(
            "HEAD",
            f"{self.base}/v2/{repo or self.repo}/blobs/{digest}",
            ok=(200, 404, 401, 403) if repo else (200, 404),
        )
        return resp.status_code == 200

    async def mount(self, digest: Digest, source: str) -> str | None:
        """Mount *digest* from the repository *source*; None when mounted, else the upload the registry opened."""
        query = urllib.parse.urlencode({"mount": str(digest), "from": source})
        resp = await self.request("POST", f"{self.uploads}?{query}", ok=(201, 202))
        if resp.status_code == 201:
            return None
        return str(resp.headers.get("location") or await self._open())

    async def _open(self) -> str:
        resp = await self.request("POST", self.uploads, ok=(202,))
        location = resp.headers.get("location")
        if not location:
            raise RegistryProtocolError(f"POST {self.uploads} answered 202 without a Location", url=self.uploads)
        return str(location)

    def _check(self, resp: httpx.Response, digest: Digest) -> None:
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != str(digest):
            raise IntegrityError(f"the registry stored {stored} for {digest}", expected=str(digest), actual=stored)

    async def upload(self, digest: Digest, size: int, body: Body, location: str | None = None) -> None:
        """Send a blob whose digest is known (its bytes from *body*), in one PUT or in PATCH chunks."""
        location = urllib.parse.urljoin(self.uploads, location or await self._open())
        octet = {"Content-Type": "application/octet-stream"}
        if size <= self.chunk_size:
            resp = await self.request(
                "PUT",
                _with_digest(location, digest),
                {**octet, "Content-Length": str(size)},
                lambda: body(0, size),
                ok=(201, 204),
            )
            self._check(resp, digest)
            return
        pos = 0
        while pos < size:
            n = min(self.chunk_size, size - pos)
            resp = await self.request(
                "PATCH",
                location,
                {**octet, "Content-Range": f"{pos}-{pos + n - 1}", "Content-Length": str(n)},
                lambda p=pos, n=n: body(p, n),
                ok=(202, 204),
            )
            got = resp.headers.get("range")
            if got and got.removeprefix("bytes=") != f"0-{pos + n - 1}":
                raise Retry(f"the registry holds {got} of {digest} after sending bytes 0-{pos + n - 1}")
            location = urllib.parse.urljoin(location, resp.headers.get("location") or location)
            pos += n
        resp = await self.request("PUT", _with_digest(location, digest), {"Content-Length": "0"}, b"", ok=(201, 204))
        self._check(resp, digest)

    async def stream(self, chunks: AsyncIterator[bytes], digest_of: Callable[[], Digest]) -> Digest:
        """Send a blob whose digest is computed while it is sent: one streaming PATCH, then the PUT
        naming *digest_of()* (called once *chunks* is exhausted). Not retried: *chunks* runs once."""
        location = urllib.parse.urljoin(self.uploads, await self._open())
        resp = await self.request(
            "PATCH", location, {"Content-Type": "application/octet-stream"}, chunks, ok=(202, 204)
        )
        location = urllib.parse.urljoin(location, resp.headers.get("location") or location)
        digest = digest_of()
        resp = await self.request("PUT", _with_digest(location, digest), {"Content-Length": "0"}, b"", ok=(201, 204))
        self._check(resp, digest)
        return digest

    async def manifest(self, reference: str, media_type: str, raw: bytes, digest: Digest) -> str | None:
        """PUT a manifest or index under *reference* (a tag or a digest); the registry must keep its bytes.

        Returns the answer's ``OCI-Subject`` header: a registry with the referrers API names there the
        subject of a manifest that has one (see :mod:`.cosign_attach`)."""
        url = f"{self.base}/v2/{self.repo}/manifests/{reference}"
        resp = await with_retries(
            lambda: self.request("PUT", url, {"Content-Type": media_type}, raw, ok=(200, 201, 202, 204)),
            f"pushing the manifest to {self.target.host}",
        )
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != str(digest):
            raise IntegrityError(
                f"{self.target.host} stored the manifest as {stored}, not {digest}: it rewrote the bytes",
                expected=str(digest),
                actual=stored,
            )
        subject = resp.headers.get("oci-subject")
        return str(subject) if subject else None
