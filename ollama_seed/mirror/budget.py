"""A bounded pull-through cache (``--max-cache-size``): whole models evicted, least recently served first.

The size is the bytes of every blob in the store's ``blobs/``, plus the blobs being fetched.
Before a pull-through fetches a blob that would take the store over the limit, models are
evicted until it fits:

- only models the pull-through wrote are candidates; models that were in the store before
  (those not in the state file below) and the ``--keep`` names are never evicted;
- never a model whose removal would delete a blob that is being served or fetched right now
  (*pinned*), or that a manifest the cache is still completing lists;
- eviction is :meth:`ModelStore.remove <ollama_seed.store.store.ModelStore.remove>`, the same
  as ``ollama-seed rm``: the manifest goes, then the blobs no other manifest lists, so a blob
  another model uses stays and Ollama's layout stays consistent;
- a blob fetched by digest alone (no manifest of the store lists it) is an *orphan*: it is evicted
  before any model, least recently served first, unless a manifest lists it by then;
- then any other blob no manifest lists (a *stray*: left by a pull-through interrupted before its
  manifest, by a removal cut short, by a torn manifest's removal), oldest first, once it is older
  than *stray_grace* (a younger one may be another process's pull whose manifest comes next) and
  while no manifest is unreadable (it might list it): the rule of ``prune``
  (:meth:`ModelStore.strays <ollama_seed.store.store.ModelStore.strays>`); then the staging files
  of fetches no process runs (a killed mirror's) last written before *stray_grace*;
- if nothing more can be evicted, the fetch fails with :class:`~ollama_seed.core.errors.InsufficientSpace`
  (the mirror answers 507) instead of growing past the limit; a blob larger than the whole limit
  is refused at once, without evicting anything for it.

The size counts the staging files of downloads that are not running (a failed or interrupted
fetch), and the cache removes a failed fetch's staging files when no other process holds them.

When each pulled-through model was last served is kept in ``.ollama-seed/mirror-served.json``
(written atomically, at most every ``flush_every`` seconds and at shutdown), so the order
survives a restart, and so does which models and orphan blobs the pull-through brought in.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path

import anyio

from ..core.digest import Digest
from ..core.errors import InsufficientSpace, InvalidName, ModelNotFound, SeedError
from ..core.reference import ModelName
from ..store.fsutil import atomic_write
from ..store.store import InstalledModel, ModelStore
from .metrics import MirrorMetrics

__all__ = [
    "STATE_FILE",
    "CacheBudget",
    "blob_bytes",
    "discard_staging",
    "model_key",
    "staging_bytes",
    "staging_files",
]

log = logging.getLogger("ollama_seed.mirror")
STATE_FILE = "mirror-served.json"


def model_key(name: ModelName) -> str:
    """``host/namespace/model:tag``, the state file's key for a model."""
    host, ns, model, tag = name.path_parts
    return f"{host}/{ns}/{model}:{tag}"


def blob_bytes(store: ModelStore) -> int:
    """Bytes of the regular files in the store's ``blobs/``."""
    total = 0
    try:
        with os.scandir(store.layout.blobs_dir) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
    except OSError:
        pass
    return total


def staging_files(store: ModelStore) -> list[tuple[Digest, int, float]]:
    """The staging files (``.data``) of the store: the blob, the disk bytes (preallocated ones
    count whole) and the last write, oldest first."""
    found = []
    with contextlib.suppress(OSError), os.scandir(store.layout.staging_dir) as entries:
        for entry in entries:
            digest = Digest.from_filename(entry.name.removesuffix(".data"))
            if digest is None or not entry.name.endswith(".data"):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    size = max(st.st_size, st.st_blocks * 512) if st.st_blocks else st.st_size
                    found.append((st.st_mtime, digest, size))
    return [(digest, size, mtime) for mtime, digest, size in sorted(found)]


def staging_bytes(store: ModelStore, skip: Iterable[Digest] = ()) -> int:
    """Disk bytes of the staging files (``.data``, preallocated) of blobs not in *skip*."""
    skipped = set(skip)
    return sum(size for digest, size, _ in staging_files(store) if digest not in skipped)


def discard_staging(store: ModelStore, digest: Digest) -> bool:
    """Remove a failed fetch's staging files, unless another process holds the blob's lock; True if removed."""
    import filelock

    data, state = store.layout.staging_data(digest), store.layout.staging_state(digest)
    if not data.exists() and not state.exists():
        return False
    lock = filelock.FileLock(str(store.layout.lock(digest)), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except (filelock.Timeout, OSError):
        return False  # a download (maybe another process's) owns them
    try:
        for path in (data, state):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    except OSError as exc:
        log.warning("could not remove the staging files of %s: %s", digest, exc)
        return False
    finally:
        lock.release()
    return True


class CacheBudget:
    """Keeps a store under *max_bytes* by evicting pulled-through models (see the module docstring).

    Args:
        store: the mirror's store.
        max_bytes: the limit; None only tracks last-served times.
        keep: model names never evicted (as ``ollama pull`` names them).
        pending: the blobs of manifests the cache is still completing (never evicted).
        metrics: evictions and the cache size are reported there.
        stray_grace: seconds a blob no manifest lists is left alone before it may be evicted.

    Raises:
        ConfigError: a *keep* name is invalid.
    """

    def __init__(
        self,
        store: ModelStore,
        max_bytes: int | None = None,
        *,
        keep: Sequence[str] = (),
        pending: Callable[[], Iterable[Digest]] = lambda: (),
        metrics: MirrorMetrics | None = None,
        flush_every: float = 30.0,
        clock: Callable[[], float] = time.time,
        stray_grace: float = 3600.0,
    ) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.keep = {model_key(_parse(n)) for n in keep}
        self.pending = pending
        self.metrics = metrics
        self.flush_every = flush_every
        self.stray_grace = stray_grace
        self._clock = clock
        self.pins: collections.Counter[Digest] = collections.Counter()
        self._reserved = 0
        self._served: dict[str, float] = {}  # pulled-through models -> when last served
        self._orphans: dict[str, float] = {}  # blobs fetched by digest alone -> when last served
        self._fetching: collections.Counter[Digest] = collections.Counter()
        self._dirty = False
        self._flushed = 0.0
        self._lock = anyio.Lock()
        self._layers: dict[str, frozenset[Digest]] = {}

    @property
    def path(self) -> Path:
        return self.store.layout.state_dir / STATE_FILE

    # -- state ------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the state file; forget models no longer in the store."""
        self.store.prepare()
        try:
            doc = json.loads(self.path.read_bytes())
            served = doc.get("served", {}) if isinstance(doc, dict) else {}
            orphans = doc.get("orphans", {}) if isinstance(doc, dict) else {}
        except FileNotFoundError:
            served, orphans = {}, {}
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); every model in the store is kept", self.path, exc)
            served, orphans = {}, {}
        self._orphans = {
            k: float(v)
            for k, v in (orphans.items() if isinstance(orphans, dict) else [])
            if isinstance(k, str) and isinstance(v, (int, float)) and _digest(k) is not None
        }
        present = {model_key(m.name) for m in self.store.iter_models() if isinstance(m, InstalledModel)}
        self._served = {
            k: float(v)
            for k, v in served.items()
            if isinstance(k, str) and isinstance(v, (int, float)) and k in present
        }
        self._dirty = len(self._served) != len(served)
        if self.metrics is not None:
            self.metrics.watch_cache(self.used, self.max_bytes)

    def flush(self, *, force: bool = False) -> None:
        """Write the state file if something changed (and *flush_every* passed, unless *force*)."""
        now = self._clock()
        if not self._dirty or (not force and now - self._flushed < self.flush_every):
            return
        doc = {"version": 1, "served": self._served, "orphans": self._orphans}
        data = json.dumps(doc, indent=1, sort_keys=True).encode()
        try:
            atomic_write(self.path, data, self.store.layout.tmp_dir, mode=0o600)
        except (OSError, SeedError) as exc:
            log.warning("cannot write %s: %s", self.path, exc)
            return
        self._dirty, self._flushed = False, now

    def adopt(self, name: ModelName) -> None:
        """A model the pull-through just wrote: it may be evicted from now on."""
        key = model_key(name)
        if key not in self.keep:
            self._served[key] = self._clock()
            self._dirty = True
            self.flush(force=True)

    def adopt_blob(self, digest: Digest) -> None:
        """A blob the pull-through fetched by digest alone: evictable while no manifest lists it."""
        self._orphans[str(digest)] = self._clock()
        self._dirty = True
        self.flush(force=True)

    def evictable(self) -> list[str]:
        """Models that may be evicted, least recently served first."""
        return sorted((k for k in self._served if k not in self.keep), key=lambda k: self._served[k])

    def touch(
        self, host: str | None, namespace: str, model: str, *, tag: str | None = None, digest: Digest | None = None
    ) -> None:
        """A manifest (by *tag*) or a blob (*digest*) of this repository was served."""
        now = self._clock()
        if digest is not None and str(digest) in self._orphans:
            self._orphans[str(digest)] = now
            self._dirty = True
        for key in self._served:
            k_host, rest = key.split("/", 1)
            k_repo, _, k_tag = rest.rpartition(":")
            if (
                host is not None and host.lower() != k_host.lower()
            ) or k_repo.lower() != f"{namespace}/{model}".lower():
                continue
            if tag is not None and k_tag.lower() != tag.lower():
                continue
            if digest is not None and digest not in self._blobs(key):
                continue
            self._served[key] = now
            self._dirty = True
        self.flush()

    def _blobs(self, key: str) -> frozenset[Digest]:
        found = self._layers.get(key)
        if found is None:
            manifest = None
            with contextlib.suppress(SeedError):
                manifest = self.store.read_manifest(_parse(key))
            found = frozenset(layer.digest for layer in manifest.blobs) if manifest is not None else frozenset()
            self._layers[key] = found
        return found

    # -- pins -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def pinned(self, digests: Iterable[Digest]) -> Iterator[None]:
        """While inside, no model with one of *digests* is evicted."""
        held = list(digests)
        self.pins.update(held)
        try:
            yield
        finally:
            self.pins.subtract(held)
            for d in held:
                if self.pins[d] <= 0:
                    del self.pins[d]

    # -- size and eviction --------------------------------------------------------------------
    def used(self) -> int:
        """Bytes of the blobs in ``blobs/`` and of staging files no running fetch of this cache owns."""
        return blob_bytes(self.store) + staging_bytes(self.store, skip=self._fetching)

    @contextlib.asynccontextmanager
    async def room(self, digest: Digest, size: int) -> AsyncIterator[None]:
        """Make room for a blob of *size* bytes about to be fetched, and hold it while inside.

        Raises:
            InsufficientSpace: even after every possible eviction the blob would not fit.
        """
        with self.pinned([digest]):
            self._fetching[digest] += 1
            if self.max_bytes is not None:
                if size > self.max_bytes:
                    self._done_fetching(digest)
                    raise InsufficientSpace(
                        f"blob {digest} has {size} bytes, more than the whole --max-cache-size {self.max_bytes}; "
                        "nothing was evicted for it. Raise --max-cache-size",
                        needed=size,
                        free=self.max_bytes,
                    )
                try:
                    async with self._lock:
                        self._make_room(size)
                        self._reserved += size
                except BaseException:
                    self._done_fetching(digest)
                    raise
            try:
                yield
            finally:
                self._done_fetching(digest)
                if self.max_bytes is not None:
                    self._reserved -= size

    def _done_fetching(self, digest: Digest) -> None:
        self._fetching[digest] -= 1
        if self._fetching[digest] <= 0:
            del self._fetching[digest]

    def _make_room(self, need: int) -> None:
        assert self.max_bytes is not None
        used = self.used() + self._reserved
        if used + need <= self.max_bytes:
            return
        busy = set(self.pins) | set(self.pending())
        users: collections.Counter[Digest] = collections.Counter()  # manifests on disk listing each blob
        unreadable = False
        for item in self.store.iter_models():
            if isinstance(item, InstalledModel):
                users.update({layer.digest for layer in item.manifest.blobs})
            else:
                unreadable = True
        for hex_digest in sorted(self._orphans, key=lambda k: self._orphans[k]):
            if used + need <= self.max_bytes:
                break
            used -= self._evict_orphan(hex_digest, users, busy)
        if used + need > self.max_bytes and not unreadable:
            for digest, _ in self.store.strays(set(users), before=self._clock() - self.stray_grace):
                if used + need <= self.max_bytes:
                    break
                if digest not in busy:
                    used -= self._drop_blob(digest, "in no model: left by an interrupted fetch or removal")
            for digest, size, mtime in staging_files(self.store):
                if used + need <= self.max_bytes or mtime > self._clock() - self.stray_grace:
                    break
                if digest not in busy and digest not in self._fetching and discard_staging(self.store, digest):
                    log.info("removed the staging files of %s (%d bytes, an interrupted fetch)", digest, size)
                    used -= size
        for key in self.evictable():
            if used + need <= self.max_bytes:
                break
            blobs = self._blobs(key)
            alone = {d for d in blobs if users[d] <= 1}  # what removing this model deletes
            if alone & busy:
                continue  # a blob of it is being served or fetched, or a model being completed needs it
            used -= self._evict(key)
            users.subtract(blobs)
        if used + need > self.max_bytes:
            raise InsufficientSpace(
                f"the mirror's cache is full: {need} more bytes would take it over --max-cache-size "
                f"{self.max_bytes} (in use {used}); the models in it are kept, being served, or being fetched. "
                "Raise --max-cache-size or remove models from the store",
                needed=need,
                free=self.max_bytes - used,
            )

    def _evict_orphan(self, text: str, users: collections.Counter[Digest], busy: set[Digest]) -> int:
        """Remove an orphan blob unless a manifest lists it now or it is busy; the bytes freed."""
        digest = _digest(text)
        if digest is None or users[digest] > 0:
            self._orphans.pop(text, None)  # a model's blob now: evicted with its model, if ever
            self._dirty = True
            return 0
        if digest in busy:
            return 0
        self._orphans.pop(text, None)
        self._dirty = True
        freed = self._drop_blob(digest, "fetched by digest, in no model")
        self.flush(force=True)
        return freed

    def _drop_blob(self, digest: Digest, why: str) -> int:
        """Remove a blob no manifest lists; the bytes freed."""
        try:
            size = os.lstat(self.store.layout.blob(digest)).st_size
            self.store.drop_blob(digest)
        except OSError as exc:
            log.warning("could not evict the blob %s: %s", digest, exc)
            return 0
        log.info("evicted the blob %s from the cache (%d bytes, %s)", digest, size, why)
        if self.metrics is not None:
            self.metrics.evictions.inc()
            self.metrics.evicted_bytes.inc(size)
        return size

    def _evict(self, key: str) -> int:
        """Remove one model as ``ollama-seed rm`` does; the bytes freed."""
        name = _parse(key)
        self._served.pop(key, None)
        self._layers.pop(key, None)
        self._dirty = True
        manifest = None
        with contextlib.suppress(SeedError):  # unreadable (torn): removed all the same, its blobs kept
            manifest = self.store.read_manifest(name)
        try:
            removed = self.store.remove(name)
        except ModelNotFound:
            removed = []
        except SeedError as exc:
            log.warning("could not evict %s: %s", key, exc)
            return 0
        sizes = {layer.digest: layer.size for layer in manifest.blobs} if manifest is not None else {}
        freed = sum(sizes.get(d, 0) for d in removed)
        log.info(
            "evicted %s from the cache (%d bytes freed, %d blob(s) kept for other models)",
            key,
            freed,
            len(sizes) - len(removed),
        )
        if self.metrics is not None:
            self.metrics.evictions.inc()
            self.metrics.evicted_bytes.inc(freed)
        self.flush(force=True)
        return freed


def _digest(text: str) -> Digest | None:
    try:
        return Digest.parse(text)
    except InvalidName:
        return None


def _parse(name: str) -> ModelName:
    try:
        return ModelName.parse(name)
    except InvalidName as exc:
        from ..core.errors import ConfigError

        raise ConfigError(f"--keep {name!r}: {exc}") from None
