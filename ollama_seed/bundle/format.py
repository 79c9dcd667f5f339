"""The bundle format, version 1: index encode/decode, member names, option parsing. Pure, no I/O.

A bundle is a tar stream (optionally zstd-compressed) whose members are paths relative to
an Ollama models directory, led by an index::

    .ollama-seed/bundle.json                  the index (this module)
    blobs/sha256-<64 hex>                     each blob once, before the first manifest that needs it
    manifests/<host>/<ns>/<model>/<tag>       exact manifest bytes, after all of its blobs

``docs/bundle-format.md`` is the specification; this module is its executable form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..core.digest import Digest
from ..core.errors import BundleError, InvalidName
from ..core.manifest import MAX_BLOB_SIZE, MAX_MANIFEST_BYTES, Manifest
from ..core.reference import ModelName

__all__ = [
    "FORMAT_ID",
    "FORMAT_VERSION",
    "INDEX_MEMBER",
    "MAX_INDEX_BYTES",
    "BundleIndex",
    "Compression",
    "IndexBlob",
    "IndexModel",
    "MemberKind",
    "MemberRef",
    "classify_member",
    "parse_compress",
    "parse_size",
]

FORMAT_ID = "ollama-seed-bundle"
FORMAT_VERSION = 1
INDEX_MEMBER = ".ollama-seed/bundle.json"
MAX_INDEX_BYTES = 16 * 1024 * 1024
MAX_MODELS = 10_000
MAX_BLOBS = 100_000
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


# -- the index -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexBlob:
    """One blob the bundle carries."""

    digest: Digest
    size: int
    media_type: str = ""

    @property
    def path(self) -> str:
        return f"blobs/{self.digest.filename}"


@dataclass(frozen=True, slots=True)
class IndexModel:
    """One model: its name, its manifest's digest and size, and every blob the manifest names."""

    name: ModelName
    manifest_digest: Digest
    manifest_size: int
    blobs: tuple[Digest, ...]

    @property
    def manifest_path(self) -> str:
        return "manifests/" + "/".join(self.name.path_parts)


class _Bad(Exception):
    pass


def _want(cond: bool, why: str) -> None:
    if not cond:
        raise _Bad(why)


def _int(value: Any, what: str, limit: int = MAX_BLOB_SIZE) -> int:
    _want(
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit,
        f"{what} must be a whole number from 0 to {limit}",
    )
    return int(value)


def _digest(value: Any, what: str) -> Digest:
    try:
        return Digest.parse(value)
    except InvalidName as exc:
        raise _Bad(f"{what}: {exc}") from None


@dataclass(frozen=True, slots=True)
class BundleIndex:
    """The index member: format version, tool, models and blobs (in stream order)."""

    models: tuple[IndexModel, ...]
    blobs: tuple[IndexBlob, ...]
    created_by: str = ""
    created: str = ""
    version: int = FORMAT_VERSION

    @classmethod
    def build(cls, models: Iterable[tuple[ModelName, Manifest]], *, created_by: str, created: str) -> BundleIndex:
        """The index for *models*, each blob listed once, in the order the bundle carries them."""
        entries: list[IndexModel] = []
        blobs: dict[Digest, IndexBlob] = {}
        for name, manifest in models:
            for layer in manifest.blobs:
                blobs.setdefault(layer.digest, IndexBlob(layer.digest, layer.size, layer.media_type))
            entries.append(
                IndexModel(
                    name.unpinned(), manifest.digest, len(manifest.raw), tuple(layer.digest for layer in manifest.blobs)
                )
            )
        return cls(tuple(entries), tuple(blobs.values()), created_by, created)

    @property
    def blob_map(self) -> dict[Digest, IndexBlob]:
        return {b.digest: b for b in self.blobs}

    @property
    def size(self) -> int:
        """Bytes of blobs and manifests the bundle carries (before tar and compression)."""
        return sum(b.size for b in self.blobs) + sum(m.manifest_size for m in self.models)

    def encode(self) -> bytes:
        """The index as the UTF-8 JSON document stored in the bundle."""
        doc = {
            "format": FORMAT_ID,
            "version": self.version,
            "created_by": self.created_by,
            "created": self.created,
            "models": [
                {
                    "name": str(m.name),
                    "manifest": {"path": m.manifest_path, "digest": str(m.manifest_digest), "size": m.manifest_size},
                    "blobs": [str(d) for d in m.blobs],
                }
                for m in self.models
            ],
            "blobs": [{"digest": str(b.digest), "size": b.size, "mediaType": b.media_type} for b in self.blobs],
            "size": self.size,
        }
        return (json.dumps(doc, indent=1) + "\n").encode()

    @classmethod
    def decode(cls, raw: bytes) -> BundleIndex:
        """Parse and validate an index.

        Raises:
            BundleError: not an index, a newer format version, or inconsistent content.
        """
        if len(raw) > MAX_INDEX_BYTES:
            raise BundleError(f"the bundle index is {len(raw)} bytes, more than the {MAX_INDEX_BYTES} allowed")
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BundleError(f"the bundle index is not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_ID:
            raise BundleError(f"the bundle index does not say format {FORMAT_ID!r}")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BundleError(f"the bundle index has no valid version ({version!r})")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"this bundle has format version {version}, made by {doc.get('created_by', '?')!s:.80}; "
                f"this ollama-seed reads version {FORMAT_VERSION}: upgrade ollama-seed to import it"
            )
        try:
            return cls._decode(doc, version)
        except _Bad as exc:
            raise BundleError(f"the bundle index is invalid: {exc}") from None

    @classmethod
    def _decode(cls, doc: dict[str, Any], version: int) -> BundleIndex:
        created_by, created = doc.get("created_by", ""), doc.get("created", "")
        _want(isinstance(created_by, str) and isinstance(created, str), "created_by and created must be strings")
        blobs_obj, models_obj = doc.get("blobs"), doc.get("models")
        _want(isinstance(blobs_obj, list) and len(blobs_obj) <= MAX_BLOBS, "blobs must be a list")
        _want(isinstance(models_obj, list) and 0 < len(models_obj) <= MAX_MODELS, "models must be a non-empty list")
        assert isinstance(blobs_obj, list) and isinstance(models_obj, list)
        blobs: dict[Digest, IndexBlob] = {}
        for i, obj in enumerate(blobs_obj):
            _want(isinstance(obj, dict), f"blobs[{i}] is not an object")
            digest = _digest(obj.get("digest"), f"blobs[{i}].digest")
            media_type = obj.get("mediaType", "")
            _want(isinstance(media_type, str) and len(media_type) <= 255, f"blobs[{i}].mediaType is not a string")
            _want(digest not in blobs, f"blob {digest} is listed twice")
            blobs[digest] = IndexBlob(digest, _int(obj.get("size"), f"blobs[{i}].size"), media_type)
        models: list[IndexModel] = []
        names: set[ModelName] = set()
        used: set[Digest] = set()
        for i, obj in enumerate(models_obj):
            model = _decode_model(obj, i)
            _want(model.name not in names, f"model {model.name} is listed twice")
            names.add(model.name)
            used.update(model.blobs)
            models.append(model)
        unused = [d for d in blobs if d not in used]
        _want(not unused, f"blob {unused[0] if unused else ''} is carried but no model uses it")
        return cls(tuple(models), tuple(blobs.values()), created_by, created, version)


def _decode_model(obj: Any, i: int) -> IndexModel:
    _want(isinstance(obj, dict), f"models[{i}] is not an object")
    try:
        name = ModelName.parse(obj.get("name"))
    except InvalidName as exc:
        raise _Bad(f"models[{i}].name: {exc}") from None
    _want(name.digest is None, f"models[{i}].name must not be pinned")
    man = obj.get("manifest")
    _want(isinstance(man, dict), f"models[{i}].manifest is not an object")
    digest = _digest(man.get("digest"), f"models[{i}].manifest.digest")
    size = _int(man.get("size"), f"models[{i}].manifest.size", MAX_MANIFEST_BYTES)
    blob_list = obj.get("blobs")
    _want(isinstance(blob_list, list) and len(blob_list) <= MAX_BLOBS, f"models[{i}].blobs must be a list")
    digests = tuple(_digest(d, f"models[{i}].blobs") for d in blob_list)
    _want(len(set(digests)) == len(digests), f"models[{i}].blobs lists a digest twice")
    model = IndexModel(name, digest, size, digests)
    _want(
        man.get("path", model.manifest_path) == model.manifest_path,
        f"models[{i}].manifest.path does not match the name {name}",
    )
    return model


# -- options ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compression:
    """``auto``, ``none``, ``zstd`` at a level (1..22) or ``gzip`` at a level (1..9)."""

    kind: str
    level: int = 0

    def __str__(self) -> str:
        return f"{self.kind}:{self.level}" if self.kind in ("zstd", "gzip") else self.kind


DEFAULT_ZSTD_LEVEL = 1
DEFAULT_GZIP_LEVEL = 1  # weights barely shrink at any level; 1 is several times faster than gzip's own 6
_LEVELS = {"zstd": (DEFAULT_ZSTD_LEVEL, 22), "gzip": (DEFAULT_GZIP_LEVEL, 9)}


def parse_compress(text: str | Compression) -> Compression:
    """``auto``, ``none``, ``zstd`` (level 1), ``zstd:LEVEL`` (1..22), ``gzip`` (level 1) or ``gzip:LEVEL`` (1..9).

    Raises:
        ValueError: anything else.
    """
    if isinstance(text, Compression):
        return text
    value = text.strip().lower()
    if value in ("auto", "none"):
        return Compression(value)
    kind, _, level = value.partition(":")
    if kind in _LEVELS:
        default, top = _LEVELS[kind]
        if not level:
            return Compression(kind, default)
        if level.isdigit() and 1 <= int(level) <= top:
            return Compression(kind, int(level))
    raise ValueError(f"not a compression: {text!r} (want auto, none, zstd[:1-22] or gzip[:1-9])")


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
MIN_SPLIT = 4096


def parse_size(text: str | int) -> int:
    """Bytes from ``4G`` (4 * 10**9, fits FAT32), ``4GiB`` (4 * 2**30), ``700M``, ``65536``.

    Raises:
        ValueError: not a size, or less than 4096 bytes.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SIZE.fullmatch(str(text))
        if not m:
            raise ValueError(f"not a size: {text!r} (examples: 4G, 4GiB, 700M, 65536)")
        base = 1024 if m.group(3) else 1000
        value = int(float(m.group(1)) * base ** _POWERS[m.group(2).lower()])
    if value < MIN_SPLIT:
        raise ValueError(f"a part size must be at least {MIN_SPLIT} bytes, not {text!r}")
    return value
