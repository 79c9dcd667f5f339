"""The bundle index, version 1 (``.ollama-seed/bundle.json``): encode and decode. Pure, no I/O.

The index is a bundle's first member. It lists the models the bundle carries (each manifest's
digest and size) and every blob (digest and size), so an importer can refuse a bundle before
reading its data and bound how many bytes may come out of the stream. ``docs/bundle-format.md``
is the specification; this module is its executable form.

An index may carry ``signatures``: OpenSSF Model Signing signatures (Sigstore bundles, JSON
objects) over the models and blobs it lists, made by ``export --sign`` (see :mod:`..signed`).
Readers that know no signatures ignore the key, as they ignore every key they do not know.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...core.digest import Digest
from ...core.errors import BundleError, InvalidName
from ...core.manifest import MAX_BLOB_SIZE, MAX_MANIFEST_BYTES, Manifest, load_json_object
from ...core.reference import ModelName

__all__ = ["FORMAT_ID", "FORMAT_VERSION", "MAX_INDEX_BYTES", "BundleIndex", "IndexBlob", "IndexModel"]

FORMAT_ID = "ollama-seed-bundle"
FORMAT_VERSION = 1
MAX_INDEX_BYTES = 16 * 1024 * 1024
MAX_MODELS = 10_000
MAX_BLOBS = 100_000
MAX_SIGNATURES = 16


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
    signatures: tuple[bytes, ...] = ()
    """OMS signatures (Sigstore bundle JSON) over what the index lists."""

    @classmethod
    def build(
        cls,
        models: Iterable[tuple[ModelName, Manifest]],
        *,
        created_by: str,
        created: str,
        signatures: tuple[bytes, ...] = (),
    ) -> BundleIndex:
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
        return cls(tuple(entries), tuple(blobs.values()), created_by, created, signatures=signatures)

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
        if self.signatures:
            doc["signatures"] = [json.loads(s) for s in self.signatures]
        return (json.dumps(doc, indent=1) + "\n").encode()

    @classmethod
    def decode(cls, raw: bytes) -> BundleIndex:
        """Parse and validate an index.

        Raises:
            BundleError: not an index, a newer format version, or inconsistent content.
        """
        try:
            doc = load_json_object(raw, "the bundle index", MAX_INDEX_BYTES)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        if doc.get("format") != FORMAT_ID:
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
        signatures = doc.get("signatures", [])
        _want(
            isinstance(signatures, list)
            and len(signatures) <= MAX_SIGNATURES
            and all(isinstance(x, dict) for x in signatures),
            f"signatures must be a list of at most {MAX_SIGNATURES} signature objects",
        )
        encoded = tuple(json.dumps(x).encode() for x in signatures)
        return cls(tuple(models), tuple(blobs.values()), created_by, created, version, encoded)


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
