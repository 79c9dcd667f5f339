"""Bundle member names: what each path in a bundle may be, checked before its data is read. Pure, no I/O.

A bundle is a tar stream (optionally compressed) whose members are paths relative to an Ollama
models directory, led by an index::

    .ollama-seed/bundle.json                  the index (:mod:`.index`)
    blobs/sha256-<64 hex>                     each blob once, before the first manifest that needs it
    manifests/<host>/<ns>/<model>/<tag>       exact manifest bytes, after all of its blobs

The member names of OCI layouts and ollamazip archives are recognised here too, so one classifier
serves every stream the importer reads. ``docs/bundle-format.md`` is the specification.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ...core.digest import Digest
from ...core.errors import BundleError, InvalidName
from ...core.reference import ModelName

__all__ = ["INDEX_MEMBER", "MAX_MEMBER_NAME", "MemberKind", "MemberRef", "classify_member"]

INDEX_MEMBER = ".ollama-seed/bundle.json"
MAX_MEMBER_NAME = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


class MemberKind(Enum):
    """What a tar member of a bundle is."""

    INDEX = "index"
    MANIFEST = "manifest"
    BLOB = "blob"
    DIR = "dir"
    OCI_LAYOUT = "oci-layout"
    OCI_INDEX = "oci-index"
    OCI_BLOB = "oci-blob"
    OZ_METADATA = "ollamazip-metadata"
    OZ_MANIFEST = "ollamazip-manifest"


@dataclass(frozen=True, slots=True)
class MemberRef:
    """A validated member name: its kind and what it names."""

    kind: MemberKind
    path: str
    name: ModelName | None = None
    digest: Digest | None = None


def _refuse(raw: str, why: str) -> BundleError:
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    return BundleError(f"refusing bundle member {shown!r}: {why}")


_DIR_PREFIXES = {".ollama-seed", "blobs", "manifests", "blobs/sha256"}


def classify_member(raw: str, *, is_dir: bool = False) -> MemberRef:
    """Validate a member name and say what it is.

    Accepted: the index, ``manifests/<valid name>``, ``blobs/sha256-<64 hex>``, the OCI
    layout files (``oci-layout``, ``index.json``, ``blobs/sha256/<64 hex>``), ollamazip's
    ``metadata.json`` and ``manifest.json``, and the directories leading to them. A leading
    ``./`` is allowed (``tar -C DIR .``).

    Raises:
        BundleError: an absolute path, ``..``, an empty or odd component, or any other name.
    """
    if not raw or len(raw) > MAX_MEMBER_NAME:
        raise _refuse(raw, "empty or too long a name")
    if "\x00" in raw or "\\" in raw or not raw.isprintable():
        raise _refuse(raw, "control characters or backslashes in the name")
    if raw.startswith("/"):
        raise _refuse(raw, "absolute path")
    name = raw
    while name.startswith("./"):
        name = name[2:]
    if is_dir:
        name = name.rstrip("/")
        if name in ("", "."):
            return MemberRef(MemberKind.DIR, ".")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise _refuse(raw, "'..', '.' or an empty component in the path")
    if parts[0] == ".ollama-seed" and name not in (".ollama-seed", INDEX_MEMBER):
        raise _refuse(
            raw,
            "ollama-seed's own state (staging, locks, stamps) is no part of a bundle; a tar of a whole models "
            "directory carries it: pack only manifests and blobs (tar -C DIR -cf FILE manifests blobs), "
            "or use 'ollama-seed export'",
        )
    if is_dir:
        return _classify_dir(raw, name, parts)
    if name == INDEX_MEMBER:
        return MemberRef(MemberKind.INDEX, name)
    if name == "oci-layout":
        return MemberRef(MemberKind.OCI_LAYOUT, name)
    if name == "index.json":
        return MemberRef(MemberKind.OCI_INDEX, name)
    if name in ("metadata.json", "manifest.json"):  # an ollamazip archive (``ollamazip pack``)
        return MemberRef(MemberKind.OZ_METADATA if name == "metadata.json" else MemberKind.OZ_MANIFEST, name)
    if parts[0] == "blobs":
        if len(parts) == 2:
            digest = Digest.from_filename(parts[1])
            if digest is None:
                raise _refuse(raw, "a blob must be named blobs/sha256-<64 lowercase hex>")
            return MemberRef(MemberKind.BLOB, name, digest=digest)
        if len(parts) == 3 and parts[1] == "sha256" and _HEX64.fullmatch(parts[2]):
            return MemberRef(MemberKind.OCI_BLOB, name, digest=Digest(parts[2]))
        raise _refuse(raw, "a blob must be named blobs/sha256-<64 lowercase hex>")
    if parts[0] == "manifests":
        if len(parts) != 5:
            raise _refuse(raw, "a manifest must be manifests/<host>/<namespace>/<model>/<tag>")
        return MemberRef(MemberKind.MANIFEST, name, name=_manifest_name(raw, parts[1:]))
    raise _refuse(raw, "only manifests/<host>/<namespace>/<model>/<tag> and blobs/sha256-<hex> may be in a bundle")


def _manifest_name(raw: str, parts: Sequence[str]) -> ModelName:
    host, namespace, model, tag = parts
    try:
        return ModelName.from_parts(host, namespace, model, tag)
    except InvalidName as exc:
        raise _refuse(raw, f"not a valid model name ({exc})") from None


def _classify_dir(raw: str, name: str, parts: list[str]) -> MemberRef:
    if name in _DIR_PREFIXES:
        return MemberRef(MemberKind.DIR, name)
    if parts[0] == "manifests" and 2 <= len(parts) <= 4:
        if len(parts) == 2:  # a host: anything ModelName accepts as a host
            probe = [parts[1], "library", "x", "latest"]
        elif len(parts) == 3:
            probe = [parts[1], parts[2], "x", "latest"]
        else:
            probe = [parts[1], parts[2], parts[3], "latest"]
        _manifest_name(raw, probe)
        return MemberRef(MemberKind.DIR, name)
    raise _refuse(raw, "a directory that has no place in a bundle")
