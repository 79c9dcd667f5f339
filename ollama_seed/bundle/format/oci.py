"""OCI image layouts (``--format oci``): ``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``. Pure, no I/O.

Each model has two entries in ``index.json``:

- its manifest, the exact bytes Ollama stores (so the model keeps its digest), with the
  Docker schema 2 media type, annotated ``io.ollama-seed.name`` = the full model name;
- an OCI twin of that manifest (the same JSON with ``mediaType`` set to the OCI image
  manifest type, same config and layers), annotated ``org.opencontainers.image.ref.name`` =
  the full model name and ``io.ollama-seed.twin-of`` = the exact manifest's digest. OCI tools
  that only look at OCI media types (skopeo, for one) find the model through it:
  ``skopeo copy oci:DIR:registry.ollama.ai/library/gemma3:270m ...``.

Blobs are stored once under ``blobs/sha256/``. The layout can be a directory or a tar of
one. Import uses the exact manifests and skips the twins; a layout made by another tool
(no ``io.ollama-seed`` annotations) is imported through its ``ref.name`` entries.

A layout directory is read by :class:`~..sources.oci_dir.DirMembers`, which presents it as the
same member stream a tar gives, so the importer has one code path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...core.digest import Digest
from ...core.errors import BundleError, InvalidName
from ...core.manifest import MAX_MANIFEST_BYTES, Manifest, load_json_object
from ...core.ociimage import ANNOTATION_REF as REF_NAME
from ...core.ociimage import INDEX_MEDIA_TYPE
from ...core.ociimage import MANIFEST_MEDIA_TYPE as OCI_MANIFEST
from ...core.reference import ModelName
from .index import MAX_INDEX_BYTES

__all__ = [
    "INDEX_MEDIA_TYPE",
    "REF_NAME",
    "OciEntry",
    "encode_index",
    "encode_layout",
    "oci_twin",
    "parse_index",
    "parse_layout",
]

LAYOUT_VERSION = "1.0.0"
SEED_NAME = "io.ollama-seed.name"
TWIN_OF = "io.ollama-seed.twin-of"
_NAME_KEYS = (SEED_NAME, REF_NAME, "io.containerd.image.name")
MAX_LAYOUT_FILE = 4096


@dataclass(frozen=True, slots=True)
class OciEntry:
    """One model of a layout: its name and its manifest's descriptor."""

    name: ModelName
    digest: Digest
    size: int
    media_type: str


def encode_layout() -> bytes:
    return json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()


def oci_twin(manifest: Manifest) -> bytes:
    """The manifest's JSON with the OCI image manifest media type (config and layers unchanged)."""
    doc = json.loads(manifest.raw)
    doc["mediaType"] = OCI_MANIFEST
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_index(models: Sequence[tuple[ModelName, Manifest]], *, created_by: str) -> bytes:
    """``index.json`` for *models*: per model its exact manifest and its OCI twin."""
    entries = []
    for name, manifest in models:
        full = str(name.unpinned())
        twin = oci_twin(manifest)
        entries.append(
            {
                "mediaType": manifest.media_type,
                "digest": str(manifest.digest),
                "size": len(manifest.raw),
                "annotations": {SEED_NAME: full},
            }
        )
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": f"sha256:{hashlib.sha256(twin).hexdigest()}",
                "size": len(twin),
                "annotations": {REF_NAME: full, TWIN_OF: str(manifest.digest)},
            }
        )
    doc = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": entries,
        "annotations": {"io.ollama-seed.created-by": created_by},
    }
    return (json.dumps(doc, indent=1) + "\n").encode()


def parse_layout(raw: bytes) -> None:
    """Check an ``oci-layout`` file.

    Raises:
        BundleError: not JSON, or not image layout version 1.x.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        doc = None
    version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not version.startswith("1."):
        raise BundleError(f"oci-layout says imageLayoutVersion {version!r}; only 1.x layouts are read")


def _entry(obj: Any, i: int) -> OciEntry | Digest:
    """A model entry, or the digest of a twin to skip."""
    if not isinstance(obj, dict):
        raise BundleError(f"index.json manifests[{i}] is not an object")
    try:
        digest = Digest.parse(str(obj.get("digest")))
    except InvalidName as exc:
        raise BundleError(f"index.json manifests[{i}].digest: {exc}") from None
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_MANIFEST_BYTES:
        raise BundleError(f"index.json manifests[{i}].size must be from 1 to {MAX_MANIFEST_BYTES}")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise BundleError(f"index.json manifests[{i}].annotations is not an object")
    if TWIN_OF in annotations:
        return digest
    text = next((annotations[k] for k in _NAME_KEYS if k in annotations), None)
    if not isinstance(text, str) or "/" not in text:
        raise BundleError(
            f"index.json manifests[{i}] has no full model name in {REF_NAME} "
            "(want host/namespace/model:tag); cannot tell which model it is"
        )
    try:
        name = ModelName.parse(text)
    except InvalidName as exc:
        raise BundleError(f"index.json manifests[{i}]: {exc}") from None
    media_type = obj.get("mediaType", "")
    return OciEntry(name.unpinned(), digest, size, media_type if isinstance(media_type, str) else "")


def parse_index(raw: bytes) -> tuple[tuple[OciEntry, ...], frozenset[Digest]]:
    """The models of an OCI ``index.json``, and the digests of OCI twins (to skip).

    Raises:
        BundleError: not an image index, or an entry without a usable model name.
    """
    try:
        doc = load_json_object(raw, "index.json", MAX_INDEX_BYTES)
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    if doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list):
        raise BundleError("index.json is not an OCI image index (schemaVersion 2 with a manifests list)")
    found = [_entry(obj, i) for i, obj in enumerate(doc["manifests"])]
    entries = tuple(e for e in found if isinstance(e, OciEntry))
    twins = frozenset(e for e in found if isinstance(e, Digest))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise BundleError("index.json names one model twice")
    if not entries:
        raise BundleError("index.json lists no models")
    return entries, twins - {e.digest for e in entries}
