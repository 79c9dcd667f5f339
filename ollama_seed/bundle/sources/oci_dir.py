"""An OCI image layout directory (``--format oci``, skopeo's ``oci:DIR``) read as a member stream.

The layout's files are offered in the order an importer of a ``tar`` of it would meet them:
``oci-layout``, ``index.json``, then per model its manifest and the blobs it names. What the
index and manifests may say is checked by :mod:`..format.oci`. Every file is opened without
following symlinks and must be a regular file.
"""

from __future__ import annotations

from pathlib import Path

from ...core.digest import Digest
from ...core.errors import BundleError, RegistryProtocolError
from ...core.manifest import MAX_MANIFEST_BYTES, Manifest
from ..format.index import MAX_INDEX_BYTES
from ..format.names import MemberKind, MemberRef
from ..format.oci import OciEntry, parse_index
from .files import FileMembers, read_small

__all__ = ["DirMembers", "is_layout_dir"]


def is_layout_dir(path: Path) -> bool:
    return path.is_dir() and (path / "oci-layout").is_file()


class DirMembers(FileMembers):
    """An OCI layout directory read as a member stream: layout, index, then per model its manifest and blobs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for d in (root / "blobs", root / "blobs" / "sha256"):
            if d.is_symlink() or not d.is_dir():
                raise BundleError(f"{d} is not a directory (or is a symbolic link); not an OCI layout to import")
        self.plan: list[tuple[MemberRef, Path]] = [
            (MemberRef(MemberKind.OCI_LAYOUT, "oci-layout"), root / "oci-layout"),
            (MemberRef(MemberKind.OCI_INDEX, "index.json"), root / "index.json"),
        ]
        seen: set[Digest] = set()
        for entry in parse_index(read_small(root / "index.json", MAX_INDEX_BYTES))[0]:
            for digest in (entry.digest, *self._layers(entry)):
                if digest not in seen:
                    seen.add(digest)
                    path = root / "blobs" / "sha256" / digest.hex
                    if digest == entry.digest or path.exists() or path.is_symlink():
                        self.plan.append(
                            (MemberRef(MemberKind.OCI_BLOB, f"blobs/sha256/{digest.hex}", digest=digest), path)
                        )
        self.fd = -1
        self.left = 0

    def _layers(self, entry: OciEntry) -> list[Digest]:
        raw = read_small(self.root / "blobs" / "sha256" / entry.digest.hex, MAX_MANIFEST_BYTES)
        try:
            return [layer.digest for layer in Manifest.parse(raw).blobs]
        except RegistryProtocolError as exc:
            raise BundleError(f"the manifest of {entry.name} in the layout: {exc}") from None

    def _shrank(self) -> BundleError:
        return BundleError("a file of the layout shrank while it was read")
