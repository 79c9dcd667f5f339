"""Pull-through for the mirror: what the store does not have is fetched from an upstream registry.

- A manifest miss (by tag or by digest) is fetched from the upstream with the pull engine's
  registry client and validated; a digest reference must match the bytes. It is kept in memory
  (the most recent ``remember`` of them) and written to the store, under the upstream's host, as
  soon as every blob it lists is there, so it is still served after a restart.
- A blob miss is downloaded by :class:`~ollama_seed.pulling.session.PullSession` (ranged, resumable, sha256-verified,
  installed atomically into ``blobs/``) and only then served from the file.
- Concurrent requests for one manifest or one blob share a single upstream fetch. Fetches run in
  the cache's own task group, so a client that hangs up does not cancel one that others wait on.
- A tag already in the store is served as stored; it is not checked against the upstream again.
  Remove the model from the mirror's store to refresh it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import httpx
from anyio.abc import TaskGroup

from ..core.digest import Digest
from ..core.errors import ConfigError, IntegrityError, ModelNotFound, RegistryError, SeedError
from ..core.groups import collapse
from ..core.manifest import Layer, Manifest
from ..core.reference import ModelName
from ..pulling.options import PullOptions, PullSettings
from ..pulling.session import PullSession
from ..store.store import ModelStore
from ..wire.redirects import RedirectRule
from ..wire.registry import Credentials, map_errors
from ..wire.urls import origin
from .budget import CacheBudget, discard_staging
from .metrics import MirrorMetrics, note_miss

__all__ = ["PullThroughCache", "parse_upstream"]

log = logging.getLogger("ollama_seed.mirror")
T = TypeVar("T")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def parse_upstream(url: str) -> tuple[str, str]:
    """``https://registry.ollama.ai`` as ``("https", "registry.ollama.ai")``; a bare host means https.

    Raises:
        ConfigError: not ``http(s)://host[:port]`` (a path, query or user name is refused).
    """
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urllib.parse.urlsplit(text)
    bad = (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or parts.netloc.endswith(":")
    )
    if not bad:
        try:
            _ = parts.port
            ModelName.parse(f"{parts.netloc}/ns/model")
        except (SeedError, ValueError):
            bad = True
    if bad:
        raise ConfigError(
            f"--upstream {url!r} is not a registry address; write it as https://host[:port] "
            "(for example https://registry.ollama.ai or http://10.0.0.5:5000)"
        )
    return parts.scheme, parts.netloc


@dataclass(eq=False)
class _Shared(Generic[T]):
    done: anyio.Event = field(default_factory=anyio.Event)
    value: T | None = None
    error: BaseException | None = None


class PullThroughCache:
    """Fetches misses of a mirror from its upstream registry into the mirror's store.

    Use as an async context manager (the mirror app does this in its ASGI lifespan).

    Args:
        store: the mirror's store; fetched models land under the upstream's host.
        upstream: ``https://host[:port]`` or ``http://host[:port]``.
        credentials: ``host -> (user, password)`` for an upstream that asks.
        transport: an httpx transport (tests).
        connections: range requests per blob; *stall_timeout*: seconds without a byte.
        remember: how many fetched manifests to keep in memory.
        private_redirects: follow the upstream's redirects to loopback, link-local and private
            addresses too (by default only to public ones, or to the upstream itself).
        budget: keeps the store under a size by evicting models before a blob is fetched.
        metrics: misses, upstream bytes, errors and running downloads are counted there.

    Raises:
        ConfigError: *upstream* is not a registry address.
    """

    def __init__(
        self,
        store: ModelStore,
        upstream: str,
        *,
        credentials: Credentials | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        connections: int = 16,
        max_connections: int = 64,
        stall_timeout: float = 30.0,
        remember: int = 256,
        private_redirects: bool = False,
        budget: CacheBudget | None = None,
        metrics: MirrorMetrics | None = None,
    ) -> None:
        self.store = store
        self.scheme, self.host = parse_upstream(upstream)
        self._session_args = PullOptions(
            credentials=credentials,
            transport=transport,
            connections=connections,
            max_connections=max_connections,
            stall_timeout=stall_timeout,
            insecure=self.scheme == "http",  # an http:// upstream is the operator's explicit choice
        )
        PullSettings.of(self._session_args, caller="PullThroughCache")  # out of range: ConfigError now
        self.remember = remember
        self.redirects = RedirectRule(private=private_redirects)
        self.origin = origin(self.upstream)[1]  # where redirects are always followed
        self.budget = budget
        self.metrics = metrics
        if budget is not None:
            budget.pending = self.pending_digests
        self._manifests: OrderedDict[tuple[str, str, str], Manifest] = OrderedDict()
        self._written: set[tuple[str, str, str, Digest]] = set()
        self._inflight: dict[tuple[Any, ...], _Shared[Any]] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._session: PullSession | None = None

    @property
    def upstream(self) -> str:
        return f"{self.scheme}://{self.host}"

    async def __aenter__(self) -> PullThroughCache:
        self.store.prepare()
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            session = PullSession(self.store, redirects=self.redirects, **self._session_args)
            self._session = await stack.enter_async_context(session)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        stack, self._stack, self._tg = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def name(self, namespace: str, model: str, tag: str = "latest") -> ModelName:
        """The upstream name of ``namespace/model:tag``."""
        return ModelName(self.host, namespace, model, tag, self.scheme)

    def known_tags(self, namespace: str, model: str) -> list[str]:
        """Tags of this repository fetched since start (not yet all in the store, maybe)."""
        return [t for (ns, m, t) in self._manifests if (ns, m) == (namespace, model) and not t.startswith("sha256:")]

    def pending_digests(self) -> set[Digest]:
        """Blobs of fetched manifests not yet written to the store (an eviction must not take them)."""
        return {
            layer.digest
            for (ns, m, t), manifest in self._manifests.items()
            if (ns, m, t, manifest.digest) not in self._written
            for layer in manifest.blobs
        }

    # -- shared fetches --------------------------------------------------------------------
    async def _shared(self, key: tuple[Any, ...], fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        entry = self._inflight.get(key)
        if entry is None:
            if self._tg is None:
                raise RuntimeError("the pull-through cache is not running; use 'async with' on it (or the app)")
            entry = self._inflight[key] = _Shared()
            self._tg.start_soon(self._run, key, entry, fn, args)
        await entry.done.wait()
        if entry.error is not None:
            raise entry.error
        value: T = entry.value  # type: ignore[assignment]
        return value

    async def _run(
        self, key: tuple[Any, ...], entry: _Shared[Any], fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            entry.value = await fn(*args)
        except Exception as exc:
            entry.error = collapse(exc)
            if self.metrics is not None and not isinstance(entry.error, ModelNotFound):
                self.metrics.upstream_errors.labels(str(key[0])).inc()
        except BaseException:
            entry.error = SeedError("the mirror is shutting down")
            raise
        finally:
            self._inflight.pop(key, None)
            entry.done.set()

    def _session_or_fail(self) -> PullSession:
        if self._session is None:
            raise RuntimeError("the pull-through cache is not running; use 'async with' on it (or the app)")
        return self._session

    async def unreachable(self, within: float = 5.0) -> str | None:
        """None if the upstream answers ``GET /v2/`` (any status below 500, a login prompt too), else why not."""
        client = self._session_or_fail().client
        url = f"{self.upstream}/v2/"
        try:
            with anyio.fail_after(within):
                resp = await client.send(self.name("library", "ready"), "GET", url, {"Accept-Encoding": "identity"})
                await resp.aclose()
        except RegistryError:  # it answered, with a login we could not complete: reachable
            return None
        except TimeoutError:
            return f"{self.upstream} did not answer within {within:g} s"
        except (httpx.HTTPError, OSError) as exc:
            return f"{self.upstream}: {type(exc).__name__}: {exc}"
        return None if resp.status_code < 500 else f"{self.upstream}/v2/ answered HTTP {resp.status_code}"

    # -- manifests ------------------------------------------------------------------------
    async def manifest(self, namespace: str, model: str, reference: str) -> Manifest:
        """The upstream manifest of ``namespace/model`` at a tag or ``sha256:`` digest.

        Raises:
            ModelNotFound: the upstream does not have it.
            SeedError: the upstream failed (RegistryError, TransferError, IntegrityError, ...).
        """
        key = (namespace, model, reference)
        found = self._manifests.get(key)
        if found is None and reference.startswith("sha256:"):
            found = next(
                (
                    m
                    for (ns, mo, _), m in self._manifests.items()
                    if (ns, mo) == (namespace, model) and str(m.digest) == reference
                ),
                None,
            )
        if found is not None:
            if key in self._manifests:
                self._manifests.move_to_end(key)
            return found
        note_miss()
        return await self._shared(("manifest", *key), self._fetch_manifest, namespace, model, reference)

    async def _fetch_manifest(self, namespace: str, model: str, reference: str) -> Manifest:
        session = self._session_or_fail()
        if reference.startswith("sha256:"):
            want = Digest.parse(reference)
            # The client builds /manifests/<tag>; a digest goes in that place (no validation here).
            name = dataclasses.replace(self.name(namespace, model), tag=reference)
            manifest = await session.client.fetch_manifest(name)
            if manifest.digest != want:
                raise IntegrityError(
                    f"{self.host} answered {namespace}/{model}@{want} with bytes whose digest is {manifest.digest}",
                    expected=str(want),
                    actual=str(manifest.digest),
                )
        else:
            manifest = await session.client.fetch_manifest(self.name(namespace, model, reference))
        log.info("fetched the manifest of %s/%s:%s from %s", namespace, model, reference, self.upstream)
        self._manifests[(namespace, model, reference)] = manifest
        while len(self._manifests) > self.remember:
            self._manifests.popitem(last=False)
        self._complete()
        return manifest

    def _complete(self) -> None:
        """Write every remembered manifest whose blobs are all in the store now."""
        for (ns, model, tag), manifest in list(self._manifests.items()):
            mark = (ns, model, tag, manifest.digest)
            if tag.startswith("sha256:") or mark in self._written or self.store.missing(manifest):
                continue
            try:
                self.store.write_manifest(self.name(ns, model, tag), manifest)
                self._written.add(mark)
                if self.budget is not None:
                    self.budget.adopt(self.name(ns, model, tag))
            except SeedError as exc:
                log.warning("could not store the manifest of %s/%s:%s: %s", ns, model, tag, exc)

    # -- blobs ------------------------------------------------------------------------------
    async def layer(self, namespace: str, model: str, digest: Digest) -> Layer | None:
        """What is known of blob *digest* of this repository: from a fetched manifest, else a HEAD upstream.

        Raises:
            SeedError: the upstream failed (a 404 gives None).
        """
        for (ns, mo, _), manifest in self._manifests.items():
            if (ns, mo) == (namespace, model):
                for layer in manifest.blobs:
                    if layer.digest == digest:
                        return layer
        try:
            return await self._shared(("head", namespace, model, digest), self._probe, namespace, model, digest)
        except ModelNotFound:
            return None

    async def _probe(self, namespace: str, model: str, digest: Digest) -> Layer:
        client = self._session_or_fail().client
        name = self.name(namespace, model)
        url = client.blob_url(name, str(digest))
        for _ in range(5):
            with map_errors(url):
                resp = await client.send(name, "HEAD", url, {"Accept-Encoding": "identity"})
                await resp.aclose()
            location = resp.headers.get("location")
            if resp.status_code in _REDIRECTS and location:
                url = urllib.parse.urljoin(url, location)
                await self.redirects.check(url, own=self.origin)
                continue
            break
        length = resp.headers.get("content-length", "")
        if resp.status_code == 200 and length.isascii() and length.isdigit():
            return Layer("application/octet-stream", digest, int(length))
        if resp.status_code == 404:
            raise ModelNotFound(f"{self.host} has no blob {digest} in {namespace}/{model}", status=404)
        raise RegistryError(
            f"HEAD of blob {digest} at {self.host} answered HTTP {resp.status_code}",
            url=url.split("?", 1)[0],
            status=resp.status_code,
        )

    async def fetch_blob(self, namespace: str, model: str, layer: Layer) -> None:
        """Download *layer* from the upstream into the store, unless it is there already.

        Raises:
            SeedError: the download failed (TransferError, IntegrityError, RegistryError, ...).
        """
        if self.store.has_blob(layer):
            return
        note_miss()
        await self._shared(("blob", layer.digest), self._fetch_blob, namespace, model, layer)

    async def _fetch_blob(self, namespace: str, model: str, layer: Layer) -> None:
        room = self.budget.room(layer.digest, layer.size) if self.budget is not None else contextlib.nullcontext()
        async with room:
            if self.metrics is not None:
                self.metrics.downloads.inc()
            try:
                received = await self._session_or_fail().blob(self.name(namespace, model), layer)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(discard_staging, self.store, layer.digest)
                raise
            finally:
                if self.metrics is not None:
                    self.metrics.downloads.dec()
        if self.metrics is not None:
            self.metrics.upstream_bytes.inc(received)
        log.info("fetched %s (%d bytes over the network) from %s", layer.digest, received, self.upstream)
        listed = any(layer.digest == b.digest for m in self._manifests.values() for b in m.blobs)
        if self.budget is not None and not listed:
            self.budget.adopt_blob(layer.digest)  # fetched by digest alone: evictable while no model lists it
        self._complete()
