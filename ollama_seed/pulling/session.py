"""Pulling models: manifest, missing blobs (each fetched once), manifest written last.

A :class:`PullSession` holds what several pulls share: one HTTP client, one connection
limit across every blob, one bandwidth cap, and a table of blobs in flight so a blob two
models share is downloaded once. Between processes a per-blob file lock saves bandwidth;
correctness never depends on it (see :mod:`wire.transfer`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import filelock

from ..core.digest import Digest
from ..core.errors import (
    InsufficientSpace,
    IntegrityError,
    InvalidName,
    ModelNotFound,
    RegistryError,
    SeedError,
    TransferError,
)
from ..core.groups import collapse
from ..core.manifest import Layer, Manifest
from ..core.progress import LayerProgress, Status, human_size, no_progress
from ..core.reference import ModelName
from ..store.fsutil import raise_os_error
from ..store.store import ModelStore
from ..wire.registry import RegistryClient
from ..wire.throttle import TokenBucket
from ..wire.transfer import BlobDownloader, TransferConfig
from .options import PullOptions, PullSettings
from .signed import SignatureGate

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..wire.redirects import RedirectRule
    from ..wire.trust import Signer

__all__ = ["PullResult", "PullSession"]

log = logging.getLogger("ollama_seed")
LOCK_POLL = 0.5


@dataclass(frozen=True, slots=True)
class PullResult:
    """What a pull did. *name* carries the scheme actually used (``http`` for an insecure pull);
    *source* is where the manifest came from (``http://10.0.0.5:5000``, or a mirror)."""

    name: ModelName
    manifest_digest: Digest
    layers: tuple[Layer, ...]
    bytes_downloaded: int
    bytes_reused: int
    blobs_downloaded: int
    elapsed: float
    path: str
    source: str = ""
    signer: Signer | None = None
    """Who signed the manifest, when trust was configured for the model and a trusted signature was found."""

    @property
    def total_size(self) -> int:
        return sum(layer.size for layer in self.layers)


@dataclass
class _Inflight:
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


class PullSession:
    """Shared state for pulls into one store. Use as an async context manager."""

    def __init__(
        self,
        store: ModelStore,
        *,
        check_space: bool = True,
        transfer: TransferConfig | None = None,
        redirects: RedirectRule | None = None,
        **options: Unpack[PullOptions],
    ) -> None:
        """*options*: see :class:`~.options.PullOptions`. *redirects*: which redirects a blob GET
        follows (default: every one; the mirror's pull-through passes its rule).

        Raises:
            ConfigError: an option out of range. TypeError: an unknown option.
        """
        s = PullSettings.of(options, caller="PullSession")
        self.store = store
        self.mirrors = [normalize_mirror(m) for m in s.mirrors]
        self._dead: set[str] = set()
        self.progress = s.progress or no_progress
        self.use_locks = s.use_locks
        self.check_space = check_space
        self.client = RegistryClient(
            insecure=s.insecure,
            transport=s.transport,
            credentials=s.credentials,
            max_connections=s.max_connections,
            read_timeout=s.stall_timeout,
        )
        cfg = transfer or TransferConfig(
            connections=s.connections, stall_timeout=s.stall_timeout, unique_staging=not s.use_locks
        )
        bucket = TokenBucket(s.max_rate) if s.max_rate else None
        limiter = anyio.CapacityLimiter(s.max_connections)
        self.downloader = BlobDownloader(self.client, store, limiter, bucket, cfg)
        self.downloader.redirects = redirects
        self._inflight: dict[Digest, _Inflight] = {}
        self._sources: dict[ModelName, str] = {}
        self.signatures = SignatureGate(s.trust, self.client, store, self.progress)

    async def __aenter__(self) -> PullSession:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.downloader.close()
        await self.client.aclose()

    # -- one model ---------------------------------------------------------------------
    async def fetch_manifest(self, name: ModelName) -> Manifest:
        if name.scheme == "http" and not self.client.insecure:
            raise InvalidName(
                f"{name.display}: insecure protocol http; pass --insecure (insecure=True) "
                "to pull over plain http, as with 'ollama pull --insecure'"
            )
        self.progress(Status(name.display, "pulling manifest"))
        manifest = None
        tried: list[str] = []
        for base in self.mirrors:
            if base in self._dead:
                tried.append(f"{base} (not answering, skipped)")
                continue
            try:
                manifest = await self.client.fetch_manifest(name, base=base, attempts=1)
                self._sources[name.unpinned()] = base
                break
            except (RegistryError, TransferError) as exc:
                tried.append(
                    f"{base}: " + ("404, it does not have the model" if isinstance(exc, ModelNotFound) else str(exc))
                )
                self._mirror_failed(name, base, exc)
        if manifest is None:
            try:
                manifest = await self.client.fetch_manifest(name)
            except SeedError as exc:
                if tried:  # what each mirror said, then the registry's answer: the user sees all of it
                    exc.args = (f"{exc}; before the registry, the mirrors were tried: {'; '.join(tried)}",)
                raise
            self._sources[name.unpinned()] = self.client.base(name)
        if name.digest is not None and manifest.digest != name.digest:
            raise IntegrityError(
                f"{name.display}: the registry's manifest is {manifest.digest}, but the name pins {name.digest}; "
                "the tag has moved, pull without the pin or with the new digest",
                expected=str(name.digest),
                actual=str(manifest.digest),
            )
        return manifest

    def _mirror_failed(self, name: ModelName, base: str, exc: SeedError) -> None:
        """Say what a mirror answered for a manifest. One that does not answer at all (or fails on
        its side) is named in a warning and not asked again in this session."""
        if isinstance(exc, ModelNotFound):
            self.progress(Status(name.display, f"mirror {base} does not have it; trying the next source"))
            return
        self._dead.add(base)
        log.warning("mirror %s failed (%s); it is skipped for the rest of this run", base, exc)
        self.progress(Status(name.display, f"mirror {base} failed; trying the next source"))

    async def pull(self, name: ModelName, manifest: Manifest | None = None) -> PullResult:
        """Pull *name* (fetching its manifest unless given) and install it."""
        started = time.monotonic()
        self.store.prepare()
        name = self.store.resolve(name)
        if manifest is None:
            manifest = await self.fetch_manifest(name)
        source = self._sources.get(name.unpinned())
        signed = await self.signatures.check(name, manifest, [source] if source in self.mirrors else [])
        label = name.display
        missing = self.store.missing(manifest)
        missing += await self._damaged(label, [layer for layer in manifest.blobs if layer not in missing])
        missing_set = {layer.digest for layer in missing}
        reused = 0
        for layer in manifest.blobs:
            if layer.digest not in missing_set:
                reused += layer.size
                self.progress(
                    LayerProgress(
                        label, str(layer.digest), layer.media_type, layer.size, layer.size, cached=True, done=True
                    )
                )
        if self.check_space:
            self.ensure_space(missing)
        received = 0
        if missing:
            results: dict[Digest, int] = {}

            async def one(layer: Layer) -> None:
                results[layer.digest] = await self.blob(name, layer)

            try:
                async with anyio.create_task_group() as tg:
                    for layer in missing:
                        tg.start_soon(one, layer)
            except BaseException as exc:
                raise collapse(exc) from None
            received = sum(results.values())
        self.progress(Status(label, "verifying sha256 digest"))
        self.progress(Status(label, "writing manifest"))
        path = self.store.write_manifest(name, manifest)
        self.signatures.keep(manifest, signed)
        self.progress(Status(label, "success"))
        source = self._sources.get(name.unpinned(), self.client.base(name))
        used = replace(name, scheme=source.partition("://")[0] or name.scheme)
        return PullResult(
            used,
            manifest.digest,
            manifest.blobs,
            received,
            reused,
            len(missing),
            time.monotonic() - started,
            str(path),
            source,
            signed.signer if signed is not None else None,
        )

    async def _damaged(self, label: str, present: list[Layer]) -> list[Layer]:
        """Of the blobs present with the right size, those that fail their sha256 (to be fetched again).

        Only blobs this store never hashed, or that changed since, are read (store/verified):
        a pull never reports success over a corrupt blob, and reading an intact store costs a
        ``stat`` per blob."""
        unchecked = [layer for layer in present if not self.store.has_checked_blob(layer)]
        if not unchecked:
            return []
        size = sum(layer.size for layer in unchecked)
        self.progress(
            Status(label, f"checking {len(unchecked)} blob(s) in the store not hashed here yet ({human_size(size)})")
        )
        damaged = []
        for layer in unchecked:
            problem = await anyio.to_thread.run_sync(self.store.verify_blob, layer)
            if problem is not None:
                log.info("%s: blob %s in the store is damaged (%s); fetching it again", label, layer.digest, problem)
                self.progress(
                    Status(label, f"{layer.digest.short} in the store is damaged ({problem}); fetching it again")
                )
                damaged.append(layer)
        return damaged

    def ensure_space(self, missing: list[Layer]) -> None:
        """Fail before the first byte if the missing blobs cannot fit."""
        layout = self.store.layout
        needed = 0
        for layer in missing:
            try:
                staged = os.lstat(layout.staging_data(layer.digest)).st_blocks * 512
            except OSError:
                staged = 0
            needed += max(0, layer.size - staged)
        free = shutil.disk_usage(layout.staging_dir).free
        if needed > free:
            raise InsufficientSpace(
                f"not enough disk space in {self.store.root}: the missing layers need {human_size(needed)} "
                f"({needed} bytes) but only {human_size(free)} ({free} bytes) is free; free some space or set "
                "OLLAMA_MODELS to a larger disk",
                needed=needed,
                free=free,
            )

    # -- one blob, once ----------------------------------------------------------------
    async def blob(self, name: ModelName, layer: Layer) -> int:
        """Download *layer* unless another task of this session already is; bytes received."""
        entry = self._inflight.get(layer.digest)
        if entry is not None:
            await entry.done.wait()
            if entry.error is not None:
                raise entry.error
            self._emit(name, layer, layer.size, done=True)
            return 0
        entry = self._inflight[layer.digest] = _Inflight()
        try:
            return await self._blob_locked(name, layer)
        except BaseException as exc:
            entry.error = exc
            raise
        finally:
            entry.done.set()
            if entry.error is not None:
                del self._inflight[layer.digest]

    def _emit(self, name: ModelName, layer: Layer, completed: int, *, done: bool = False) -> None:
        self.progress(
            LayerProgress(name.display, str(layer.digest), layer.media_type, layer.size, completed, done=done)
        )

    async def _blob_locked(self, name: ModelName, layer: Layer) -> int:
        lock = self._lock(layer) if self.use_locks else None
        if lock is not None:
            waited = False
            while True:
                try:
                    await anyio.to_thread.run_sync(lambda: lock.acquire(timeout=LOCK_POLL))
                    break
                except filelock.Timeout:
                    if not waited:
                        waited = True
                        self.progress(
                            Status(name.display, f"waiting for {layer.digest.short}: another process is downloading it")
                        )
                except OSError as exc:  # e.g. the lock file is a symlink (opened with O_NOFOLLOW)
                    raise_os_error(exc, f"locking {self.store.layout.lock(layer.digest)}")
        try:
            if self.store.has_checked_blob(layer):  # another process finished it meanwhile
                self._emit(name, layer, layer.size, done=True)
                return 0
            received = await self._from_sources(name, layer)
            self._emit(name, layer, layer.size, done=True)
            return received
        finally:
            if lock is not None:
                lock.release()

    async def _from_sources(self, name: ModelName, layer: Layer) -> int:
        """Mirrors in order, then the registry; a mirror that fails or lies is dropped for this blob.
        When the registry fails too, its error says what each mirror answered first."""
        tried: list[str] = []
        for base in [*(m for m in self.mirrors if m not in self._dead), None]:
            try:
                return await self.downloader.download(
                    name,
                    layer,
                    lambda n: self._emit(name, layer, n),
                    base=base,
                    integrity_retries=0 if base else None,
                    on_note=self.progress,
                )
            except (IntegrityError, RegistryError, TransferError) as exc:
                if base is None:
                    if tried:
                        exc.args = (f"{exc}; before the registry, the mirrors were tried: {'; '.join(tried)}",)
                    raise
                tried.append(f"{base}: {exc}")
                log.warning("mirror %s failed for %s: %s; trying the next source", base, layer.digest.short, exc)
                self.progress(
                    Status(name.display, f"mirror {base} failed for {layer.digest.short}; trying the next source")
                )
        raise AssertionError("unreachable")

    def _lock(self, layer: Layer) -> filelock.BaseFileLock | None:
        path = self.store.layout.lock(layer.digest)
        try:
            return filelock.FileLock(str(path), thread_local=False)
        except (OSError, ValueError) as exc:  # pragma: no cover - exotic file systems
            log.warning("no lock for %s (%s); continuing without one", layer.digest, exc)
            return None


def normalize_mirror(url: str) -> str:
    """``http://host:port`` (a path prefix is kept, a trailing slash dropped); https if no scheme is given."""
    text = url.strip()
    if "://" not in text:
        text = f"https://{text}"
    import httpx  # a mirror option only: a pull without one need not load httpx

    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidName(f"not a mirror URL: {url!r} (want http://host:port or https://host)")
    return text.rstrip("/")
