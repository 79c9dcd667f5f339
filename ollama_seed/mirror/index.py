"""What the mirror sees of a store: repositories under registry hosts, tags, manifests, blobs.

A two-part repository (``library/gpt-oss``) is looked up under each registry host of the store
in turn: the ``hosts`` given, else the upstream's host, ``registry.ollama.ai``, then the others
in name order; a three-part one (``hf.co/user/repo``) names its host. Names match
case-insensitively when the exact spelling is absent, as Ollama's store does. Files are read
with ``O_NOFOLLOW`` and must be regular files; directories that are symlinks are not entered.
Which blobs a repository lists is cached per tag directory until a tag file changes.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.digest import Digest
from ..core.errors import SeedError
from ..core.manifest import MAX_MANIFEST_BYTES, Layer, Manifest
from ..core.reference import DEFAULT_HOST
from ..store.fsutil import open_nofollow
from ..store.store import InstalledModel, ModelStore

__all__ = ["SEGMENT", "MirrorIndex", "Repo"]

log = logging.getLogger("ollama_seed.mirror")
SEGMENT = re.compile(r"[A-Za-z0-9_.:-]{1,350}")


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


def read_small(path: Path) -> bytes | None:
    """The bytes of a regular file of at most a manifest's size, never through a symlink; else None."""
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_MANIFEST_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


class MirrorIndex:
    """Lookups in one store for the mirror."""

    def __init__(
        self, store: ModelStore, *, hosts: tuple[str, ...] | None = None, first_host: str | None = None
    ) -> None:
        self.store = store
        self.hosts = hosts
        self.first_host = first_host
        self._layers: dict[Path, tuple[tuple[Any, ...], dict[Digest, Layer]]] = {}

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
        here = self.store.layout.manifests_dir
        for part in (host, ns, model):
            if not (here / part).is_dir():
                try:
                    matches = [e for e in os.listdir(here) if e.lower() == part.lower()]
                except OSError:
                    return None
                if len(matches) != 1:
                    return None
                part = matches[0]
            here = here / part
        return here if here.is_dir() and not here.is_symlink() else None

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

    def tags(self, repo: Repo) -> list[str]:
        """Every tag of *repo* under its search hosts."""
        return sorted(
            {t for host in self.search_hosts(repo) for t, _ in self._tag_files(host, repo.namespace, repo.model)}
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
        """Repositories: ``ns/model`` for models under a search host, ``host/ns/model`` for the others."""
        search = set(self.search_hosts())
        names: set[str] = set()
        for item in self.store.iter_models():
            if isinstance(item, InstalledModel):
                host, ns, model, _tag = item.name.path_parts
                names.add(f"{ns}/{model}" if host in search else f"{host}/{ns}/{model}")
        return sorted(names)
