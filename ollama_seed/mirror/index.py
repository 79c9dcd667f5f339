"""What the mirror sees of a store: repositories under registry hosts, tags, manifests, blobs.

A two-part repository (``library/gpt-oss``) is looked up under each registry host of the store
in turn: the ``hosts`` given, else the upstream's host, ``registry.ollama.ai``, then the others
in name order; a three-part one (``hf.co/user/repo``) names its host. Names match
case-insensitively when the exact spelling is absent, as Ollama's store does.

Nothing under ``manifests/`` or ``blobs/`` is reached through a symlink: every directory on the
way is checked with ``lstat`` (a link is not entered), files are opened with ``O_NOFOLLOW`` and
``O_NONBLOCK`` (a FIFO or device never blocks a read) and must be regular files, and a manifest
file is read only up to the size a manifest may have. These functions do blocking file-system
work: the app calls them in worker threads.

Which blobs a repository lists is cached per tag directory until a tag file changes. The catalog
is kept in memory: it is walked again when a directory of the first three levels changed, or after
``CATALOG_TTL`` seconds, and concurrent callers share one walk.

The catalog and ``tags/list`` name only what a GET serves: a tag whose file is not a valid manifest
(torn by a power cut, or not a manifest at all) answers 404 ``MANIFEST_UNKNOWN``, and a name a
request may not spell (``-tag``, ``a:b``, a 200-character tag, ``library/.hidden``) answers 400
``NAME_INVALID``, so neither is listed, nor is a repository with no servable tag (Docker
Distribution lists repositories by directory; a client walking the catalog would then meet only
errors). Whether a tag file is valid is remembered per file (its size, inode and modification
time), so a walk reads only the files that changed since the last one, each at most a manifest's
size.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.digest import Digest
from ..core.errors import SeedError
from ..core.manifest import MAX_MANIFEST_BYTES, Layer, Manifest
from ..core.reference import DEFAULT_HOST
from ..store.fsutil import open_regular
from ..store.store import ModelStore
from .routes import SEGMENT, check_name

__all__ = ["CATALOG_TTL", "SEGMENT", "MirrorIndex", "Repo", "open_blob", "read_small"]

log = logging.getLogger("ollama_seed.mirror")
CATALOG_TTL = 2.0
MAX_REPOSITORIES = 100_000  # a catalog bigger than this is cut (and says so in the log)


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository as a request names it: ``namespace/model``, with the registry host if given."""

    host: str | None
    namespace: str
    model: str

    @property
    def path(self) -> str:
        base = f"{self.namespace}/{self.model}"
        return f"{self.host}/{base}" if self.host else base


def _open_regular(path: Path) -> int | None:
    """*path* opened for reading if it is a regular file (not a link, FIFO or device); else None."""
    try:
        return open_regular(path)
    except OSError:
        return None


def read_small(path: Path) -> bytes | None:
    """The bytes of a regular file of at most a manifest's size, never through a symlink; else None."""
    fd = _open_regular(path)
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size > MAX_MANIFEST_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
        return data if len(data) <= MAX_MANIFEST_BYTES else None
    except OSError:
        return None
    finally:
        os.close(fd)


def open_blob(blobs_dir: Path, digest: Digest, size: int) -> int | None:
    """The blob's file, open, if ``blobs/`` is a real directory and the blob a regular file of *size* bytes."""
    try:
        if not stat.S_ISDIR(os.lstat(blobs_dir).st_mode):
            return None
    except OSError:
        return None
    fd = _open_regular(blobs_dir / digest.filename)
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size == size:
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


class MirrorIndex:
    """Lookups in one store for the mirror."""

    def __init__(
        self, store: ModelStore, *, hosts: tuple[str, ...] | None = None, first_host: str | None = None
    ) -> None:
        self.store = store
        self.hosts = hosts
        self.first_host = first_host
        self._layers: dict[Path, tuple[tuple[Any, ...], dict[Digest, Layer]]] = {}
        self._catalog_lock = threading.Lock()
        self._catalog: tuple[float, tuple[Any, ...], list[tuple[str, str, str]]] | None = None
        self._servable: dict[Path, tuple[tuple[int, int, int], bool]] = {}

    def search_hosts(self, repo: Repo | None = None) -> list[str]:
        """Registry hosts to look under, in order."""
        if repo is not None and repo.host is not None:
            return [repo.host]
        if self.hosts is not None:
            return list(self.hosts)
        first = [self.first_host] if self.first_host else []
        first += [h for h in (DEFAULT_HOST,) if h not in first]
        try:
            others = sorted(e for e in os.listdir(self.store.layout.manifests_dir) if SEGMENT.fullmatch(e))
        except OSError:
            others = []
        return first + [h for h in others if h not in first]

    def _dir(self, host: str, ns: str, model: str) -> Path | None:
        """``manifests/host/ns/model``, matched case-insensitively, no part of it a symlink; else None."""
        here = self.store.layout.manifests_dir
        if not _is_dir(here):
            return None
        for part in (host, ns, model):
            if not _is_dir(here / part):
                try:
                    matches = [e for e in os.listdir(here) if e.lower() == part.lower()]
                except OSError:
                    return None
                if len(matches) != 1:
                    return None
                part = matches[0]
                if not _is_dir(here / part):
                    return None
            here = here / part
        return here

    def _tag_files(self, host: str, ns: str, model: str) -> list[tuple[str, Path]]:
        d = self._dir(host, ns, model)
        if d is None:
            return []
        try:
            return sorted(
                (e.name, Path(e.path))
                for e in os.scandir(d)
                if e.is_file(follow_symlinks=False) and SEGMENT.fullmatch(e.name)
            )
        except OSError:
            return []

    @staticmethod
    def _read(path: Path) -> Manifest | None:
        raw = read_small(path)
        if raw is None:
            return None
        try:
            return Manifest.parse(raw, source=str(path))
        except SeedError as exc:
            log.warning("skipping %s: %s", path, exc)
            return None

    def _serves(self, path: Path, st: os.stat_result | None = None) -> bool:
        """Whether the tag file *path* holds a manifest a GET would serve (remembered per file version)."""
        if st is None:
            try:
                st = os.lstat(path)
            except OSError:
                return False
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        known = self._servable.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        ok = st.st_size <= MAX_MANIFEST_BYTES and self._read(path) is not None
        self._servable[path] = (stamp, ok)
        return ok

    def tags(self, repo: Repo) -> list[str]:
        """Every tag of *repo* under its search hosts whose manifest is served."""
        return sorted(
            {
                t
                for host in self.search_hosts(repo)
                for t, path in self._tag_files(host, repo.namespace, repo.model)
                if check_name((repo.host or "h", repo.namespace, repo.model), t) is None and self._serves(path)
            }
        )

    def find_manifest(self, repo: Repo, ref: str) -> Manifest | None:
        """The manifest of *repo* at a tag or ``sha256:`` digest (valid references only), or None."""
        if ref.startswith("sha256:"):
            digest = Digest.parse(ref)
            for host in self.search_hosts(repo):
                for _tag, path in self._tag_files(host, repo.namespace, repo.model):
                    m = self._read(path)
                    if m is not None and m.digest == digest:
                        return m
            return None
        for host in self.search_hosts(repo):
            files = self._tag_files(host, repo.namespace, repo.model)
            paths = [p for t, p in files if t == ref] or [p for t, p in files if t.lower() == ref.lower()]
            if len(paths) == 1:
                m = self._read(paths[0])
                if m is not None:
                    return m
        return None

    def repo_layers(self, repo: Repo) -> dict[Digest, Layer]:
        """Every blob the manifests of *repo* list."""
        found: dict[Digest, Layer] = {}
        for host in self.search_hosts(repo):
            d = self._dir(host, repo.namespace, repo.model)
            if d is None:
                continue
            try:
                stats = [(e.name, e.stat(follow_symlinks=False)) for e in os.scandir(d)]
            except OSError:
                continue
            stamp = tuple(sorted((n, st.st_mtime_ns, st.st_size, st.st_ino) for n, st in stats))
            cached = self._layers.get(d)
            if cached is None or cached[0] != stamp:
                layers: dict[Digest, Layer] = {}
                for _tag, path in self._tag_files(host, repo.namespace, repo.model):
                    m = self._read(path)
                    if m is not None:
                        layers.update((layer.digest, layer) for layer in m.blobs)
                cached = self._layers[d] = (stamp, layers)
            for digest, layer in cached[1].items():
                found.setdefault(digest, layer)
        return found

    def catalog(self) -> list[str]:
        """Repositories: ``ns/model`` for models under a search host, ``host/ns/model`` for the others.

        A repository is listed when its directory holds a tag file (a regular file with a valid
        name) that is a valid manifest (see the module docstring).
        """
        search = set(self.search_hosts())
        names = {f"{ns}/{model}" if host in search else f"{host}/{ns}/{model}" for host, ns, model in self._repos()}
        return sorted(n for n in names if check_name(tuple(n.split("/"))) is None)  # as a request names it

    def _top_stamp(self) -> tuple[Any, ...]:
        """The modification times of ``manifests/`` and its host and namespace directories."""
        base = self.store.layout.manifests_dir
        stamp: list[Any] = []
        for path, depth in _dirs(base, 2):
            try:
                stamp.append((str(path), depth, os.lstat(path).st_mtime_ns))
            except OSError:
                continue
        return tuple(stamp)

    def _repos(self) -> list[tuple[str, str, str]]:
        with self._catalog_lock:  # concurrent callers wait for one walk and share it
            now = time.monotonic()
            stamp = self._top_stamp()
            cached = self._catalog
            if cached is not None and cached[1] == stamp and now - cached[0] < CATALOG_TTL:
                return cached[2]
            repos: list[tuple[str, str, str]] = []
            base = self.store.layout.manifests_dir
            models = [path for path, depth in _dirs(base, 3) if depth == 3]
            walked = set(models)
            self._servable = {p: v for p, v in self._servable.items() if p.parent in walked}  # removed models go
            for path in models:
                if not self._has_tag(path):
                    continue
                host, ns, model = path.relative_to(base).parts
                repos.append((host, ns, model))
                if len(repos) >= MAX_REPOSITORIES:
                    log.warning("the catalog is cut at %d repositories", MAX_REPOSITORIES)
                    break
            self._catalog = (now, stamp, repos)
            return repos

    def _has_tag(self, model_dir: Path) -> bool:
        parts = model_dir.relative_to(self.store.layout.manifests_dir).parts
        try:
            with os.scandir(model_dir) as entries:
                for e in entries:
                    if (
                        SEGMENT.fullmatch(e.name)
                        and check_name(parts, e.name) is None
                        and e.is_file(follow_symlinks=False)
                        and self._serves(Path(e.path), e.stat(follow_symlinks=False))
                    ):
                        return True
        except OSError:
            return False
        return False


def _dirs(base: Path, levels: int) -> list[tuple[Path, int]]:
    """*base* and the directories up to *levels* below it with valid names, no symlink entered, in name order."""
    if not _is_dir(base):
        return []
    found: list[tuple[Path, int]] = [(base, 0)]
    frontier = [base]
    for depth in range(1, levels + 1):
        nxt: list[Path] = []
        for here in frontier:
            try:
                with os.scandir(here) as entries:
                    nxt.extend(
                        Path(e.path) for e in entries if SEGMENT.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
                    )
            except OSError:
                continue
        nxt.sort()
        found.extend((p, depth) for p in nxt)
        frontier = nxt
    return found
