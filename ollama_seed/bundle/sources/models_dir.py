"""Another Ollama models directory as an import source: a USB copy, an ``rsync``/``cp -r`` copy, an NFS mount.

:class:`ModelsDirMembers` presents the directory as the member stream a bundle gives (per
model its manifest, then its blobs not yet listed), so the importer checks it with the one
code path: every blob hashed while staged, manifests installed after their blobs. Blobs the
destination already holds are not read at all (``cheap_skip``).

What the bundle reader refuses is refused here too, before anything is read or written:
a symbolic link anywhere under ``blobs/`` or ``manifests/`` (or those two being links), a
file that is not a regular file, a manifest at another depth or with a name Ollama would not
accept, a file in ``blobs/`` not named ``sha256-<64 hex>``. Ollama's own unfinished
downloads (``sha256-<hex>-partial``, ``-partial-N``) are skipped: a copy of a live store has
them, and they are never read. Our own state directory ``.ollama-seed/`` is not looked at.
Files are opened without following links (so one swapped in after the scan fails too).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from ...core.digest import Digest
from ...core.errors import BundleError, InvalidName, ModelNotFound, RegistryProtocolError
from ...core.manifest import MAX_MANIFEST_BYTES, Manifest
from ...core.reference import ModelName
from ..format.names import MemberKind, MemberRef
from .files import FileMembers

__all__ = ["ModelsDirMembers", "is_models_dir"]

_PARTIAL = re.compile(r"sha256-[0-9a-f]{64}-partial(-\d+)?")


def is_models_dir(path: Path) -> bool:
    """True when *path* looks like an Ollama models directory (it has ``manifests/``)."""
    return (path / "manifests").is_dir() or (path / "manifests").is_symlink()


def _refuse(path: Path, why: str) -> BundleError:
    return BundleError(f"refusing {path}: {why}. Remove it from the copy (or copy the models again) and re-run")


class ModelsDirMembers(FileMembers):
    """The models of an Ollama models directory (all, or the ones named) as a member stream."""

    cheap_skip = True

    def __init__(self, root: Path, names: Sequence[ModelName] | None = None) -> None:
        self.root = root
        self.label = str(root)
        try:
            found = self._scan_manifests()
            blobs = self._scan_blobs()
        except OSError as exc:
            raise BundleError(f"cannot read {root}: {exc}") from None
        chosen = found if not names else [self._pick(found, n) for n in names]
        self.models: list[tuple[ModelName, Manifest]] = []
        self.plan: list[tuple[MemberRef, Path]] = []
        self.sizes: dict[Digest, int] = {}
        seen: set[ModelName] = set()
        for name, path in chosen:
            if name in seen:
                continue
            seen.add(name)
            manifest = self._manifest(path)
            self.models.append((name, manifest))
            self.plan.append((MemberRef(MemberKind.MANIFEST, path.relative_to(root).as_posix(), name=name), path))
            for layer in manifest.blobs:
                if layer.digest not in self.sizes and layer.digest in blobs:
                    self.sizes[layer.digest] = layer.size
                    self.plan.append(
                        (
                            MemberRef(MemberKind.BLOB, f"blobs/{layer.digest.filename}", digest=layer.digest),
                            blobs[layer.digest],
                        )
                    )
        self.fd = -1
        self.left = 0

    # -- the scan -----------------------------------------------------------------------
    def _subdir(self, name: str) -> Path | None:
        path = self.root / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise _refuse(path, "it is a symbolic link or not a directory")
        return path

    def _scan_manifests(self) -> list[tuple[ModelName, Path]]:
        base = self._subdir("manifests")
        if base is None:
            raise BundleError(f"{self.root} has no manifests/ directory; it is not an Ollama models directory")
        out: list[tuple[ModelName, Path]] = []
        stack: list[tuple[Path, tuple[str, ...]]] = [(base, ())]
        while stack:
            here, parts = stack.pop()
            with os.scandir(here) as entries:
                listed = sorted(entries, key=lambda e: e.name)
            for entry in listed:
                path, sub = Path(entry.path), (*parts, entry.name)
                if entry.is_symlink():
                    raise _refuse(path, "a symbolic link in the models directory")
                if len(sub) < 4 and entry.is_dir(follow_symlinks=False):
                    stack.append((path, sub))
                elif len(sub) == 4 and entry.is_file(follow_symlinks=False):
                    out.append((self._name(path, sub), path))
                else:
                    raise _refuse(path, "only manifests/<host>/<namespace>/<model>/<tag> files belong under manifests/")
        return sorted(out, key=lambda item: item[0].display)

    @staticmethod
    def _name(path: Path, parts: tuple[str, ...]) -> ModelName:
        host, namespace, model, tag = parts
        try:
            return ModelName.from_parts(host, namespace, model, tag)
        except InvalidName as exc:
            raise _refuse(path, f"not a valid model name ({exc})") from None

    def _scan_blobs(self) -> dict[Digest, Path]:
        base = self._subdir("blobs")
        out: dict[Digest, Path] = {}
        if base is None:
            return out
        with os.scandir(base) as entries:
            listed = list(entries)
        for entry in listed:
            path = Path(entry.path)
            if entry.is_symlink():
                raise _refuse(path, "a symbolic link in the models directory")
            if _PARTIAL.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                continue  # Ollama's unfinished download: never read
            digest = Digest.from_filename(entry.name)
            if digest is None or not entry.is_file(follow_symlinks=False):
                raise _refuse(path, "only regular files named sha256-<64 lowercase hex> belong in blobs/")
            out[digest] = path
        return out

    def _pick(self, found: list[tuple[ModelName, Path]], name: ModelName) -> tuple[ModelName, Path]:
        """The model *name* among *found*: exactly, else case-insensitively as Ollama matches names."""
        want = name.unpinned()
        for item in found:
            if item[0] == want:
                return item
        folded = [
            item for item in found if [p.lower() for p in item[0].path_parts] == [p.lower() for p in want.path_parts]
        ]
        if len(folded) == 1:
            return folded[0]
        raise ModelNotFound(
            f"model {name.display!r} is not in {self.root} "
            f"(it holds {len(found)} model(s); 'ollama-seed bundle ls {self.root}' lists them)"
        )

    def _manifest(self, path: Path) -> Manifest:
        fd = self._open(path)
        try:
            raw = os.read(fd, MAX_MANIFEST_BYTES + 1)
        finally:
            os.close(fd)
        try:
            return Manifest.parse(raw, source=str(path))
        except RegistryProtocolError as exc:
            raise _refuse(path, str(exc)) from None

    def _not_regular(self, path: Path) -> BundleError:
        return _refuse(path, "not a regular file")

    def _shrank(self) -> BundleError:
        return BundleError(f"a file in {self.root} shrank while it was read; is something writing to it?")
