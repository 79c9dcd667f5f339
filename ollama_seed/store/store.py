"""The local store: an Ollama models directory, read and written the way Ollama expects.

Invariants this module keeps (see ``docs/reliability.md``):

- a file at ``blobs/sha256-<hex>`` was verified (size and sha256) before it was renamed there;
- a manifest is written last, atomically, and only when every blob it names is in ``blobs/``;
- temporary files never live in ``blobs/`` or ``manifests/``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.digest import Digest
from ..core.errors import IntegrityError, ModelNotFound, RegistryProtocolError, StoreError
from ..core.layout import ModelsLayout, default_models_dir
from ..core.manifest import Layer, Manifest
from ..core.reference import ModelName
from . import oscalls, verified
from .fsutil import (
    FILE_MODE,
    PRIVATE_DIR_MODE,
    atomic_write,
    ensure_dir,
    foreign_owner,
    fsync_dir,
    raise_os_error,
    remove_tree,
    sha256_file,
)

if TYPE_CHECKING:
    from .gc import StateReport

__all__ = ["BlobProblem", "InstalledModel", "ModelStore", "PruneReport"]


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """A model whose manifest is in the store."""

    name: ModelName
    manifest: Manifest
    modified: float
    path: Path


@dataclass(frozen=True, slots=True)
class BlobProblem:
    """A blob of a model that is missing, of the wrong size, or whose sha256 differs."""

    layer: Layer
    problem: str


@dataclass(frozen=True, slots=True)
class PruneReport:
    removed_blobs: tuple[Digest, ...]
    removed_bytes: int
    removed_staging: tuple[str, ...]
    skipped_reason: str | None = None
    state: StateReport | None = None
    """What went from ``.ollama-seed/`` besides staging (see :mod:`.gc`): image-layer digests of
    blobs no longer here, abandoned image downloads, signature records of manifests no longer here."""


class ModelStore:
    """One Ollama models directory (``$OLLAMA_MODELS``, else ``~/.ollama/models``)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        plat = oscalls.host
        base = Path(root).expanduser() if root is not None else default_models_dir()
        self.layout = ModelsLayout(plat.long_path(base), windows_names=plat.kind == "windows" and not plat.emulated)
        self._owner: tuple[int, int] | None = None
        self._durable: set[Digest] = set()  # blobs this object installed or synced itself
        self._synced: set[Path] = set()  # directories whose entries this object made durable

    @property
    def root(self) -> Path:
        return self.layout.root

    def prepare(self) -> None:
        """Create ``blobs/``, ``manifests/`` and our private state directory, durable in their parents."""
        if not self.root.is_dir():  # a root that is a link to a directory is fine (stores moved to other disks)
            ensure_dir(self.root)
        self._owner = foreign_owner(self.root)
        made: list[Path] = []
        for d in (self.layout.blobs_dir, self.layout.manifests_dir):
            if ensure_dir(d, sync_parent=False):
                made.append(d)
            self._give(d)
        for d in (self.layout.state_dir, self.layout.staging_dir, self.layout.locks_dir, self.layout.tmp_dir):
            if ensure_dir(d, PRIVATE_DIR_MODE, sync_parent=False):
                made.append(d)
            self._give(d)
        # one sync per parent (the root, the state directory) for all it gained, not one per directory
        self._sync_dirs(dict.fromkeys(d.parent for d in made), force=True)

    def remove_if_empty(self) -> bool:
        """Remove the models directory if it holds no manifest and no blob: what :meth:`prepare` made
        for a command that then failed (a refused import must not leave an empty store behind).
        True if it was removed."""
        for d in (self.layout.manifests_dir, self.layout.blobs_dir):
            if d.is_dir() and any(not entry.is_dir() for entry in d.rglob("*")):
                return False
        remove_tree(self.root)
        return not self.root.exists()

    def _give(self, path: Path) -> None:
        """Hand what root created to the models directory's owner (Ollama's service user) so
        ``ollama rm`` and Ollama's prune can still delete it."""
        if self._owner is not None:
            with contextlib.suppress(OSError):
                oscalls.host.set_path_owner(path, self._owner)

    # -- reading -----------------------------------------------------------------------
    def blob_size(self, digest: Digest) -> int | None:
        """Size of the blob file, or None if absent or not a regular file."""
        try:
            st = os.lstat(self.layout.blob(digest))
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def has_blob(self, layer: Layer) -> bool:
        return self.blob_size(layer.digest) == layer.size

    def has_checked_blob(self, layer: Layer) -> bool:
        """The blob is there with the right size, and this store hashed that very file (see store/verified)."""
        return self.has_blob(layer) and verified.is_stamped(self.layout, layer.digest)

    def resolve(self, name: ModelName) -> ModelName:
        """*name* mapped case-insensitively onto an existing manifest path, as Ollama does."""
        parts = list(name.path_parts)
        here = self.layout.manifests_dir
        for i, part in enumerate(parts):
            try:
                entries = os.listdir(here)
            except OSError:
                return name
            if part not in entries:
                matches = [e for e in entries if e.lower() == part.lower()]
                if len(matches) != 1:
                    return name
                parts[i] = matches[0]
            here = here / parts[i]
        host, namespace, model, tag = parts
        return ModelName(host, namespace, model, tag, name.scheme, name.digest)

    def read_manifest(self, name: ModelName) -> Manifest | None:
        """The stored manifest of *name*, None if absent.

        Raises:
            StoreError: the file exists but is not a valid manifest.
        """
        path = self.layout.manifest(name)
        try:
            if path.is_symlink() or not path.is_file():
                return None
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            return Manifest.parse(raw, source=str(path))
        except RegistryProtocolError as exc:
            raise StoreError(f"{exc}; remove it with 'ollama-seed rm {name.display}' and pull again") from None

    def missing(self, manifest: Manifest) -> list[Layer]:
        """Blobs of *manifest* that are absent or have the wrong size."""
        return [layer for layer in manifest.blobs if not self.has_blob(layer)]

    def iter_models(self) -> Iterator[InstalledModel | tuple[Path, str]]:
        """Every manifest file four levels deep: a model, or ``(path, problem)`` if unreadable."""
        base = self.layout.manifests_dir
        if not base.is_dir():
            return
        for path in sorted(base.glob("*/*/*/*")):
            if not path.is_file() or path.is_symlink():
                continue
            name = self.layout.name_for_manifest_path(path)
            if name is None:
                yield path, "not a valid model name"
                continue
            try:
                manifest = Manifest.parse(path.read_bytes(), source=str(path))
                yield InstalledModel(name, manifest, path.stat().st_mtime, path)
            except (RegistryProtocolError, OSError) as exc:
                yield path, str(exc)

    def list_models(self) -> list[InstalledModel]:
        """Installed models, newest first (as ``ollama list``)."""
        models = [m for m in self.iter_models() if isinstance(m, InstalledModel)]
        return sorted(models, key=lambda m: m.modified, reverse=True)

    def get(self, name: ModelName) -> InstalledModel:
        """The installed model *name*.

        Raises:
            ModelNotFound: no manifest for it.
        """
        name = self.resolve(name)
        manifest = self.read_manifest(name)
        if manifest is None:
            raise ModelNotFound(
                f"model {name.display!r} is not in {self.root}; 'ollama-seed list' shows the models there "
                "(--models-dir or OLLAMA_MODELS for another directory)"
            )
        path = self.layout.manifest(name)
        return InstalledModel(name, manifest, path.stat().st_mtime, path)

    def get_complete(self, name: ModelName, *, before: str) -> InstalledModel:
        """The installed model *name*, every blob of it present at its size (not hashed).

        Raises:
            ModelNotFound: no manifest for it. StoreError: a blob is missing or short; the message
                says to pull the model again before *before* (``exporting it``).
        """
        model = self.get(name)
        missing = self.missing(model.manifest)
        if missing:
            raise StoreError(
                f"{model.name.display} is incomplete in {self.root}: {len(missing)} blob(s) missing or short, "
                f"first {missing[0].digest}; run 'ollama-seed pull {model.name.display}' before {before}"
            )
        return model

    def verify_blob(self, layer: Layer) -> str | None:
        """None if the blob is intact, else what is wrong with it."""
        size = self.blob_size(layer.digest)
        if size is None:
            return "missing"
        if size != layer.size:
            return f"size {size}, expected {layer.size}"
        actual = sha256_file(self.layout.blob(layer.digest))
        if actual != layer.digest.hex:
            verified.mark_damaged(self.layout, layer.digest)
            return f"sha256 is {actual}"
        self._make_durable([layer])  # a stamp vouches only for bytes on disk (Ollama syncs nothing)
        verified.stamp(self.layout, layer.digest)
        return None

    def _make_durable(self, layers: Iterable[Layer]) -> None:
        """fsync each blob this object did not install or sync itself (another process's, one a
        killed run renamed into place before syncing ``blobs/``, Ollama's, which it never syncs),
        then ``blobs/``: a manifest or a stamp may name them after this."""
        todo = [layer for layer in layers if layer.digest not in self._durable]
        for layer in todo:
            try:
                fd = oscalls.host.open_nofollow(self.layout.blob(layer.digest), os.O_RDONLY)
                try:
                    oscalls.host.full_sync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise_os_error(exc, f"syncing {layer.digest}")
            self._durable.add(layer.digest)
        if todo:
            self._sync_dirs([self.layout.blobs_dir], force=True)

    def _sync_dirs(self, dirs: Iterable[Path], *, force: bool = False) -> None:
        """Make the entries of each of *dirs* durable, once per object (every time with *force*)."""
        for d in dirs:
            if force or d not in self._synced:
                fsync_dir(d)
                self._synced.add(d)

    def verify(self, name: ModelName) -> list[BlobProblem]:
        """Re-hash every blob of *name*; the list of bad ones (empty if the model is intact)."""
        model = self.get(name)
        problems = []
        for layer in model.manifest.blobs:
            problem = self.verify_blob(layer)
            if problem:
                problems.append(BlobProblem(layer, problem))
        return problems

    # -- writing -----------------------------------------------------------------------
    def seal(self, fd: int, staged: Path) -> None:
        """Make a verified staging file ready to install: Ollama's mode (0644) and the store
        owner's ownership, then the data and all of that made durable (``full_sync``). Nothing
        about the file changes after the sync, so nothing about it is lost after the rename."""
        oscalls.host.set_mode(fd, FILE_MODE, staged)
        if self._owner is not None:
            with contextlib.suppress(OSError):
                oscalls.host.set_owner(fd, self._owner)
        oscalls.host.full_sync(fd)

    def install_blob(self, staged: Path, layer: Layer) -> None:
        """Move a verified staging file, sealed (:meth:`seal`), to ``blobs/sha256-<hex>`` atomically
        (one that was not sealed is sealed here first)."""
        target = self.layout.blob(layer.digest)
        try:
            st = os.lstat(staged)
            if not stat.S_ISREG(st.st_mode) or st.st_size != layer.size:
                raise IntegrityError(f"staged file for {layer.digest} is not a {layer.size}-byte file")
            if stat.S_IMODE(st.st_mode) != FILE_MODE or (
                self._owner is not None and (st.st_uid, st.st_gid) != self._owner
            ):
                fd = oscalls.host.open_nofollow(staged, os.O_RDONLY)
                try:
                    self.seal(fd, staged)
                finally:
                    os.close(fd)
            oscalls.host.replace(staged, target)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise StoreError(
                    f"{self.layout.blobs_dir} is on another file system than {self.layout.state_dir}; "
                    "ollama-seed needs them on one to rename atomically"
                ) from exc
            raise_os_error(exc, f"installing {layer.digest}")
        fsync_dir(self.layout.blobs_dir)
        self._durable.add(layer.digest)
        verified.stamp(self.layout, layer.digest)

    def write_manifest(self, name: ModelName, manifest: Manifest) -> Path:
        """Write the manifest's exact bytes, last and atomically, after checking every blob is present."""
        missing = self.missing(manifest)
        if missing:
            raise StoreError(
                f"refusing to write the manifest of {name.display}: "
                f"{len(missing)} blob(s) missing, first {missing[0].digest}"
            )
        path = self.layout.manifest(name)
        d = self.layout.manifests_dir
        chain = [self.root, d]
        for part in name.path_parts[:-1]:
            d = d / part
            if ensure_dir(d):  # made here, and its parent synced with it: no second sync below
                self._synced.add(d.parent)
            self._give(d)
            chain.append(d)
        if path.is_symlink() or path.is_dir():
            raise StoreError(f"{path} is a link or a directory; remove it and pull again")
        # Before a manifest names them: every blob and directory on its way on disk for good,
        # whoever made them (Ollama syncs nothing; another process may not have yet).
        self._make_durable(manifest.blobs)
        self._sync_dirs(chain[:-1])
        atomic_write(path, manifest.raw, self.layout.tmp_dir, owner=self._owner)
        return path

    def copy(self, src: ModelName, dst: ModelName) -> tuple[ModelName, ModelName]:
        """What ``ollama cp SRC DST`` does on disk: the manifest file copied byte for byte to DST's path.

        Both names are mapped case-insensitively onto existing paths, as Ollama's handler does;
        the same path is a no-op; no blob is touched. Unlike Ollama's plain create-and-copy,
        the write is atomic and only happens when every blob the manifest names is present.
        Returns the two names as resolved.

        Raises:
            ModelNotFound: SRC is not installed. StoreError: a blob is missing, or DST cannot be written.
        """
        source = self.get(src)
        target = self.resolve(dst.unpinned())
        if self.layout.manifest(target) == source.path:
            return source.name, target
        self.prepare()
        self.write_manifest(target, source.manifest)
        return source.name, target

    def referenced(self, manifests: set[Digest] | None = None) -> tuple[set[Digest], list[str]]:
        """Digests referenced by any manifest, and descriptions of unreadable manifests; the digests
        of the manifests themselves are added to *manifests* if given."""
        refs: set[Digest] = set()
        bad: list[str] = []
        for item in self.iter_models():
            if isinstance(item, InstalledModel):
                refs.update(layer.digest for layer in item.manifest.blobs)
                if manifests is not None:
                    manifests.add(item.manifest.digest)
            else:
                bad.append(f"{item[0]}: {item[1]}")
        return refs, bad

    def remove(self, name: ModelName) -> list[Digest]:
        """Delete the manifest of *name* and the blobs no other manifest uses; the blobs removed.

        A manifest that cannot be read (torn by a crash, or Ollama's, which it never syncs) is
        removed too, and every blob kept: nothing says which were its own (``prune`` reclaims
        them). The manifest's removal is durable before any blob goes, so a power cut never
        leaves a manifest naming a removed blob.

        Raises:
            ModelNotFound: no manifest for it. StoreError: it cannot be removed.
        """
        name = self.resolve(name)
        path = self.layout.manifest(name)
        try:
            model: InstalledModel | None = self.get(name)
        except StoreError:
            model = None  # unreadable: removed all the same
            if path.is_symlink() or not path.is_file():
                raise
        try:
            oscalls.host.remove(path)
        except OSError as exc:
            raise_os_error(exc, f"removing {path}")
        fsync_dir(path.parent)
        self._prune_dirs()
        refs, bad = self.referenced()
        if bad or model is None:
            return []  # an unreadable manifest might reference anything: keep every blob
        removed = []
        for layer in model.manifest.blobs:
            if layer.digest not in refs and self.blob_size(layer.digest) is not None:
                oscalls.host.remove(self.layout.blob(layer.digest))
                verified.unstamp(self.layout, layer.digest)
                removed.append(layer.digest)
        return removed

    def _prune_dirs(self) -> None:
        base = self.layout.manifests_dir
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            if Path(dirpath) != base:
                with contextlib.suppress(OSError):
                    oscalls.host.rmdir(dirpath)

    def strays(self, refs: set[Digest], *, before: float) -> list[tuple[Digest, int]]:
        """Blobs no manifest lists (*refs*: the digests manifests list) last written at or before
        *before* (younger ones may be a pull's whose manifest comes next), oldest first, with their
        sizes: the blobs ``prune`` and the mirror's cache budget may remove on their own."""
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.layout.blobs_dir) as entries:
            for entry in entries:
                digest = Digest.from_filename(entry.name)
                if digest is None or digest in refs or not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime <= before:
                    found.append((st.st_mtime, digest, st.st_size))
        return [(digest, size) for _, digest, size in sorted(found)]

    def drop_blob(self, digest: Digest) -> None:
        """Remove one blob and its verified stamp (the caller knows no manifest lists it)."""
        oscalls.host.remove(self.layout.blob(digest))
        verified.unstamp(self.layout, digest)

    def prune(
        self, *, grace_seconds: float = 3600.0, staging_in_use: set[str] | None = None, dry_run: bool = False
    ) -> PruneReport:
        """Remove unreferenced blobs older than *grace_seconds* and abandoned staging files.

        Like Ollama's start-up prune, nothing is removed from ``blobs/`` while any manifest
        is unreadable, and strays are only removed once they are older than the grace period
        (another process may be about to write their manifest). Staging files named in
        *staging_in_use* (held by a live lock) are kept. Then what newer features keep in
        ``.ollama-seed/`` and no longer serves the store goes (see :mod:`.gc`): image-layer
        digests of removed blobs, image downloads abandoned past the grace period, signature
        records of manifests no longer in the store. *dry_run*: the same report, nothing removed.
        """
        now = time.time()
        manifests: set[Digest] = set()
        refs, bad = self.referenced(manifests)
        removed: list[Digest] = []
        removed_bytes = 0
        skipped = None
        if bad:
            skipped = f"unreadable manifest(s), blobs kept: {bad[0]}"
        else:
            for digest, size in self.strays(refs, before=now - grace_seconds):
                if not dry_run:
                    self.drop_blob(digest)
                removed.append(digest)
                removed_bytes += size
        from .gc import prune_staging, prune_state  # loaded by prune only: import ollama_seed stays as cheap

        staging = prune_staging(self.layout, staging_in_use or set(), now=now, grace=grace_seconds, dry_run=dry_run)
        if not dry_run:
            self._prune_dirs()

        names = os.listdir(self.layout.blobs_dir) if self.layout.blobs_dir.is_dir() else []
        blobs = {d for d in map(Digest.from_filename, names) if d is not None} - set(removed)
        known = None if bad else manifests
        state = prune_state(self.layout, blobs, known, now=now, grace=grace_seconds, dry_run=dry_run)
        return PruneReport(tuple(removed), removed_bytes, tuple(staging), skipped, state)
