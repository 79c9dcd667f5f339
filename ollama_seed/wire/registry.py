"""The registry client: manifests, blob requests, bearer tokens. httpx underneath, loaded on demand.

- Manifests: ``GET /v2/<ns>/<model>/manifests/<tag>`` with the Docker v2 Accept header (Docker
  Distribution answers 400 without it); the raw bytes are kept.
- Blobs: the caller sends ranged GETs through :meth:`RegistryClient.send`; redirects are
  never followed by httpx, so the transfer code sees a registry's 307 to its CDN and decides.
- Authorization goes only to the registry's own host, never to a redirect target.
- Proxies (``HTTPS_PROXY``, ``NO_PROXY``) and ``SSL_CERT_FILE`` come from the environment
  through httpx's ``trust_env``; TLS is always verified, ``insecure`` means plain http.
- On a direct link (no proxy, no injected transport) the manifest is fetched over
  :mod:`wire.direct`'s blocking connections, as the blobs are, and httpx is imported only when
  something needs it: a 401 challenge, a proxy, a push. Importing httpx and httpcore cost
  ~0.15 CPU-seconds per process on the project's 2-core machine, 8 % of a 512 MiB pull's CPU,
  and under a Kubernetes ``limits.cpu: 500m`` twice that in wall time.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import platform
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from .. import __about__ as __about__
from ..core.auth import parse_challenge, token_url
from ..core.errors import (
    AuthenticationError,
    ModelNotFound,
    RegistryError,
    RegistryProtocolError,
    SeedError,
    TransferError,
)
from ..core.imageref import ImageRef
from ..core.manifest import MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES, OCI_MANIFEST_MEDIA_TYPE, Manifest
from ..core.ranges import backoff, parse_retry_after
from ..core.reference import ModelName
from .credentials import DockerCredentials
from .direct import DirectPool, LinkError, drain, open_in_thread
from .errors import describe_transport_error, httpx_transport_errors, permanent
from .signing import OllamaKeySigner
from .tls import LazyTrustContext
from .urls import origin

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Credentials",
    "RegistryClient",
    "RepoName",
    "credentials_refused",
    "describe_transport_error",
    "user_agent",
]

log = logging.getLogger("ollama_seed")

Credentials = Callable[[str], "tuple[str, str] | None"]
RepoName = ModelName | ImageRef  # a model's repository, or a container image's (bundle.image_*)
Content = bytes | Callable[[], AsyncIterator[bytes]] | None
MANIFEST_ATTEMPTS = 4
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def user_agent() -> str:
    # registry.ollama.ai gates models on the client version in the User-Agent; "0.0.0" is
    # the development version Ollama itself sends, which the registry lets through.
    machine = platform.machine().lower().replace("x86_64", "amd64").replace("aarch64", "arm64")
    return f"ollama/0.0.0 ({machine} {platform.system().lower()}) ollama-seed/{__about__.__version__}"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def credentials_refused(asked: str, realm: str, *, insecure: bool) -> str | None:
    """Why a password must not go to the token endpoint *realm* that the registry named in its
    answer to *asked* (None: it may). Over https the registry vouches for the realm, wherever it
    is, and the realm must be https too. Over plain http anyone on the path could have named it:
    the realm must then be on the registry's own host (any port). A plain-http realm only for an
    ``--insecure`` registry, on its own host."""
    own, host = (urllib.parse.urlsplit(u).hostname or "" for u in (asked, realm))
    if host != own and origin(asked)[0] != "https":
        return (
            f"a token endpoint on another host than {own}, named over plain http (anyone on the path could have "
            "named it); credentials go there only when the registry answers over https"
        )
    if origin(realm)[0] != "https" and (host != own or not insecure):
        return "a plain-http token endpoint; credentials go over https only" + (
            ", or over http to an --insecure registry's own host" if host == own else ""
        )
    return None


def _excerpt(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace").strip().replace("\n", " ")
    return text if text.isprintable() else repr(body[:120])


class RegistryClient:
    """One httpx client for one pull (or several), with per-host bearer tokens."""

    def __init__(
        self,
        *,
        insecure: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        credentials: Credentials | None = None,
        max_connections: int = 64,
        connect_timeout: float = 30.0,
        read_timeout: float = 30.0,
        signer: OllamaKeySigner | None = None,
    ) -> None:
        self.insecure = insecure
        # Without explicit credentials: the environment, then ~/.docker/config.json (read on a 401 only).
        self.credentials = credentials if credentials is not None else DockerCredentials()
        # Ollama's key (~/.ollama/id_ed25519) signs token requests to Ollama's own registry.
        self.signer = signer if signer is not None else OllamaKeySigner()
        self._tokens: dict[tuple[str, str], str] = {}
        self._own_hosts: dict[tuple[str, str, str], bool] = {}  # see _own_host
        self._custom_transport = transport is not None
        self.tls = LazyTrustContext()  # shared with the direct path; CAs load on the first handshake
        self._transport, self._max_connections = transport, max_connections
        self._timeouts = (connect_timeout, read_timeout)
        self._http: httpx.AsyncClient | None = None  # made (and httpx imported) on first use: see _client
        # Manifests on direct links (blobs have the transfer engine's own pool).
        use_direct = transport is None and os.environ.get("OLLAMA_SEED_DIRECT", "1") != "0"
        self._direct = (
            DirectPool(timeout=read_timeout, user_agent=user_agent(), context=self.tls) if use_direct else None
        )
        self._direct_threads = anyio.CapacityLimiter(4)

    @property
    def direct_pool(self) -> DirectPool | None:
        """The kept-alive direct connections of this client (None: direct requests are off), shared
        with the transfer engine so that the manifest's connection carries the first blob range."""
        return self._direct

    @property
    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            connect_timeout, read_timeout = self._timeouts
            self._http = httpx.AsyncClient(
                verify=self.tls,
                transport=self._transport,
                timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=None),
                limits=httpx.Limits(
                    max_connections=self._max_connections, max_keepalive_connections=self._max_connections
                ),
                follow_redirects=False,
                trust_env=True,
                headers={"User-Agent": user_agent()},
            )
        return self._http

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._direct is not None:
            self._direct.close()
        if self._http is not None:
            with anyio.CancelScope(shield=True):
                await self._http.aclose()

    # -- URLs -------------------------------------------------------------------------
    @staticmethod
    def at(name: RepoName, base: str | None) -> RepoName:
        """*name* as the mirror at *base* serves it: requests there are answered with that host's own
        credentials and tokens (a mirror that asks for a login), never with the registry's."""
        if not base:
            return name
        scheme, host = origin(base)
        return dataclasses.replace(name, host=host, scheme=scheme)

    def base(self, name: RepoName) -> str:
        return name.base_url(insecure=self.insecure)

    def manifest_url(self, name: ModelName, reference: str | None = None, *, base: str | None = None) -> str:
        return f"{base or self.base(name)}/v2/{name.repository}/manifests/{reference or name.tag}"

    def blob_url(self, name: RepoName, digest: str, *, base: str | None = None) -> str:
        """The blob's URL at the registry, or at the mirror *base* (``scheme://host[:port]``)."""
        return f"{base or self.base(name)}/v2/{name.repository}/blobs/{digest}"

    # -- requests ---------------------------------------------------------------------
    @property
    def custom_transport(self) -> bool:
        """True when requests go through an injected transport (tests, embedding apps)."""
        return self._custom_transport

    def _own_host(self, name: RepoName, url: str) -> bool:
        """*url* is on the registry's own host, and not downgraded to plain http from an https registry.

        Remembered per (registry, URL): every range request of a blob asks again, and parsing two
        URLs cost more than the rest of preparing the request."""
        key = (self.base(name), name.host, url)
        known = self._own_hosts.get(key)
        if known is None:
            scheme, host = origin(url)
            known = host == name.host and scheme in ("https", origin(key[0])[0])
            if len(self._own_hosts) >= 256:
                self._own_hosts.clear()
            self._own_hosts[key] = known
        return known

    def with_token(self, name: RepoName, url: str, headers: dict[str, str], scope: str | None = None) -> dict[str, str]:
        """*headers* plus the Authorization a request to *url* carries (only on the registry's own host)."""
        hdrs = dict(headers)
        if self._own_host(name, url):
            token = self._tokens.get((name.host, scope or f"repository:{name.repository}:pull"))
            if token:
                hdrs["Authorization"] = token
        return hdrs

    async def send(
        self,
        name: RepoName,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        content: Content = None,
        scope: str | None = None,
    ) -> httpx.Response:
        """Send a streaming request; answers a 401 challenge once with a token.

        Authorization is attached only when *url* is on the registry's own host. The
        caller closes the response. httpx transport errors propagate (the caller retries).
        *content* is a request body, or a function returning a fresh async iterator of it
        (called again if the request is repeated after a 401). *scope* defaults to pulling
        *name*'s repository (``repository:<ns>/<model>:pull``); pushes ask for ``pull,push``.
        """
        own_host = self._own_host(name, url)
        scope = scope or f"repository:{name.repository}:pull"
        for attempt in range(2):
            hdrs = self.with_token(name, url, headers, scope)
            body = content() if callable(content) else content
            request = self._client.build_request(method, url, headers=hdrs, content=body)
            resp = await self._client.send(request, stream=True)
            if resp.status_code != 401 or not own_host or attempt == 1:
                return resp
            challenge = resp.headers.get("www-authenticate")
            await resp.aclose()
            self._tokens[(name.host, scope)] = await self._authorize(name, challenge, scope, url)
        raise AssertionError("unreachable")

    async def _authorize(self, name: RepoName, header: str | None, scope: str, url: str) -> str:
        challenge = parse_challenge(header)
        if challenge is None:
            raise AuthenticationError(
                f"{name.host} asks for credentials (401) but sent no usable WWW-Authenticate challenge",
                url=url,
                status=401,
            )
        creds = self.credentials(name.host)
        if challenge.scheme == "basic":
            if creds is None:
                raise AuthenticationError(
                    f"{name.host} wants a user name and password; none are configured for it", url=url, status=401
                )
            return _basic(*creds)
        import httpx  # loaded already: the challenge came through self._client

        signed: dict[str, str] = {}
        if creds is None and self.signer.applies(name.host):
            turl, signed = self.signer.token_request(challenge, name.host, scope)
        else:
            turl = token_url(challenge, scope)
        auth = httpx.BasicAuth(*creds) if creds else None
        why = credentials_refused(url, turl, insecure=self.insecure) if auth else None
        if why:
            raise AuthenticationError(f"refusing to send the credentials for {name.host} to {challenge.realm}: {why}")
        try:
            resp = await self._client.get(turl, auth=auth if auth else httpx.USE_CLIENT_DEFAULT, headers=signed)
        except httpx.TransportError as exc:
            raise TransferError(describe_transport_error(exc, turl)) from exc
        if resp.status_code != 200:
            raise AuthenticationError(
                f"token endpoint {challenge.realm} refused {scope} (HTTP {resp.status_code}): "
                f"{_excerpt(resp.content)}"
                + (f"; is {self.signer.key_path}.pub added to your ollama.com account?" if signed else ""),
                url=challenge.realm,
                status=resp.status_code,
            )
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"token endpoint {challenge.realm} answered without a token")
        return f"Bearer {token}"

    @staticmethod
    async def _retry_manifest(name: ModelName, why: str, wait: float, attempt: int, attempts: int) -> None:
        """Wait before the next manifest attempt, saying so in the log (``-v``): a retry is never silent."""
        log.info(
            "%s: pulling manifest: %s; retrying in %.1f s (attempt %d of %d)",
            name.display,
            why,
            wait,
            attempt + 2,
            attempts,
        )
        await anyio.sleep(wait)

    async def fetch_manifest(
        self, name: ModelName, *, base: str | None = None, attempts: int = MANIFEST_ATTEMPTS
    ) -> Manifest:
        """GET the manifest of *name* (from the mirror *base* if given); retries transient failures
        (*attempts* in all: a mirror gets one, so a dead one costs no backoff before the registry).

        Raises:
            ModelNotFound: 404.
            AuthenticationError: 401/403 after a token.
            RegistryError: other refusals, with status and an excerpt of the body.
            RegistryProtocolError: the bytes are not a valid manifest.
            TransferError: the registry could not be reached after retries.
        """
        url = self.manifest_url(name, base=base)
        where = origin(url)[1]
        asked = self.at(name, base)
        headers = {"Accept": f"{MANIFEST_MEDIA_TYPE}, {OCI_MANIFEST_MEDIA_TYPE}", "Accept-Encoding": "identity"}
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                status, retry_after, body = await self._get_small(asked, url, headers)
            except LinkError as exc:  # the direct path's network failure, already described
                if last or permanent(exc):  # an untrusted certificate stays untrusted, plain http stays plain
                    raise TransferError(f"pull model manifest: {exc}") from exc
                await self._retry_manifest(name, str(exc), backoff(attempt), attempt, attempts)
                continue
            except httpx_transport_errors() as exc:
                if last or permanent(exc):
                    raise TransferError(f"pull model manifest: {describe_transport_error(exc, url)}") from exc
                await self._retry_manifest(
                    name, describe_transport_error(exc, url), backoff(attempt), attempt, attempts
                )
                continue
            if status == 200:
                return Manifest.parse(body, source=f"the manifest of {name.display} from {name.host}")
            if status in RETRY_STATUSES and not last:
                wait = parse_retry_after(retry_after)  # "Retry-After: 0" means now, not the backoff
                wait = backoff(attempt) if wait is None else wait
                await self._retry_manifest(name, f"GET {url} answered HTTP {status}", wait, attempt, attempts)
                continue
            if status == 404:
                raise ModelNotFound(
                    f"model {name.display!r} not found at {where} (GET {url} answered 404); check the name and tag",
                    url=url,
                    status=404,
                )
            if status in (401, 403):
                raise AuthenticationError(
                    f"{name.host} refused access to {name.repository} (HTTP {status}): {_excerpt(body)}",
                    url=url,
                    status=status,
                )
            if 300 <= status < 400:
                raise RegistryProtocolError(
                    f"manifest request answered a {status} redirect; not supported", url=url, status=status
                )
            raise RegistryError(f"pull model manifest: {status}: {_excerpt(body)}", url=url, status=status)
        raise AssertionError("unreachable")

    async def get_small(self, name: RepoName, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """GET a small document or range (image manifests, configs, a layer's tar header): status and
        body, on a direct connection when the link allows (no httpx), else through httpx.

        Raises:
            TransferError: the network failed. RegistryProtocolError: a body over 4 MiB.
        """
        try:
            status, _, body = await self._get_small(name, url, headers)
        except LinkError as exc:
            raise TransferError(str(exc)) from exc
        except httpx_transport_errors() as exc:
            raise TransferError(describe_transport_error(exc, url)) from exc
        return status, body

    async def _get_small(self, name: RepoName, url: str, headers: dict[str, str]) -> tuple[int, str | None, bytes]:
        """GET a small document (a manifest): status, Retry-After, the body (at most
        ``MAX_MANIFEST_BYTES``). Over a direct connection when the link allows; through httpx
        for a proxy, an injected transport, or a 401 challenge (whose token later requests reuse).

        Raises:
            LinkError: a direct request failed on the network.
            httpx.TransportError: an httpx request did.
            RegistryProtocolError: the body is larger than the limit.
        """
        pool = self._direct
        if pool is not None and pool.usable(url):
            resp = await open_in_thread(pool, url, self.with_token(name, url, headers), self._direct_threads)
            try:
                if resp.status_code != 401 or not self._own_host(name, url):
                    body = await anyio.to_thread.run_sync(
                        resp.read_all, MAX_MANIFEST_BYTES, limiter=self._direct_threads
                    )
                    if len(body) > MAX_MANIFEST_BYTES:
                        raise RegistryProtocolError(
                            f"manifest at {url} is larger than {MAX_MANIFEST_BYTES} bytes", url=url
                        )
                    return resp.status_code, resp.headers.get("retry-after"), body
                await drain(resp, self._direct_threads)  # the 401's small body: the connection is kept
            finally:
                resp.release()
        resp2 = await self.send(name, "GET", url, headers)
        try:
            return resp2.status_code, resp2.headers.get("retry-after"), await self._read_limited(resp2, url)
        finally:
            await resp2.aclose()

    @staticmethod
    async def _read_limited(resp: httpx.Response, url: str) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in resp.aiter_bytes():
            total += len(chunk)
            if total > MAX_MANIFEST_BYTES:
                raise RegistryProtocolError(f"manifest at {url} is larger than {MAX_MANIFEST_BYTES} bytes", url=url)
            chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def map_errors(url: str) -> Iterator[None]:
    """Turn stray httpx errors into :class:`TransferError`."""
    try:
        yield
    except SeedError:
        raise
    except httpx_transport_errors() as exc:
        raise TransferError(describe_transport_error(exc, url)) from exc
