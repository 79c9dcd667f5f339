"""Reading OCI and Docker image documents defensively: descriptors, manifests, indexes, configs. Pure.

Everything here refuses what it cannot vouch for with a :class:`BundleError` that names the
document and the problem: a digest that is not sha256, a size that is not a whole number, a
manifest that mixes Docker and OCI media types, a config whose diff_ids do not match its layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .digest import Digest
from .errors import BundleError, InvalidName
from .manifest import MAX_BLOB_SIZE, MAX_MANIFEST_BYTES, load_json_object
from .ociimage import (
    ANNOTATION_LAYER,
    CONFIG_MEDIA_TYPE,
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_MEDIA_TYPE,
    LAYER_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPE,
    Platform,
)

__all__ = [
    "Descriptor",
    "ImageManifest",
    "is_index",
    "parse_config",
    "parse_descriptor",
    "parse_index",
    "parse_manifest",
]

MAX_LAYERS = 1000
INDEX_TYPES = (INDEX_MEDIA_TYPE, DOCKER_LIST)
MANIFEST_TYPES = (MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST)
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))
_COMPRESSION = {
    LAYER_MEDIA_TYPES["none"]: "none",
    LAYER_MEDIA_TYPES["gzip"]: "gzip",
    LAYER_MEDIA_TYPES["zstd"]: "zstd",
    DOCKER_LAYER_GZIP: "gzip",
    "application/vnd.docker.image.rootfs.diff.tar": "none",
}


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI descriptor as read: what a document says of a blob or manifest it names."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str]
    platform: Platform | None = None

    @property
    def compression(self) -> str:
        """``none``, ``gzip`` or ``zstd`` for a layer; raises for anything else."""
        kind = _COMPRESSION.get(self.media_type)
        if kind is None:
            raise BundleError(f"layer {self.digest} has media type {self.media_type!r}, which is not a tar layer")
        return kind

    @property
    def model_content(self) -> str | None:
        """What ollama-seed wrote into this layer (``io.ollama-seed.layer``), None for another's layer."""
        return self.annotations.get(ANNOTATION_LAYER)

    def doc(self) -> dict[str, Any]:
        """The descriptor as JSON again (the fields it was read with)."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.doc()
        return out


def _load(raw: bytes, what: str) -> dict[str, Any]:
    try:
        return load_json_object(raw, what, MAX_MANIFEST_BYTES)
    except ValueError as exc:
        raise BundleError(str(exc)) from None


def parse_descriptor(obj: Any, what: str) -> Descriptor:
    """The descriptor object *obj* (*what* names it in errors), its fields checked.

    Raises:
        BundleError: not an object, or a media type, digest, size or annotation that is not usable.
    """
    if not isinstance(obj, dict):
        raise BundleError(f"{what} is not an object")
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type.isprintable() or len(media_type) > 255:
        raise BundleError(f"{what}.mediaType is missing or not a short string")
    try:
        digest = Digest.parse(obj.get("digest"))  # type: ignore[arg-type]
    except InvalidName as exc:
        raise BundleError(f"{what}.digest: {exc}") from None
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_SIZE:
        raise BundleError(f"{what}.size must be a whole number from 0 to 2**50, not {size!r}")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise BundleError(f"{what}.annotations is not an object of strings")
    return Descriptor(media_type, digest, size, dict(annotations), Platform.of(obj.get("platform")))


def is_index(media_type: str, raw: bytes) -> bool:
    """Whether *raw* (served as *media_type*) is an image index rather than one image manifest;
    a registry's vague media type is settled by the document's own fields."""
    if media_type in INDEX_TYPES:
        return True
    if media_type in MANIFEST_TYPES:
        return False
    doc = _load(raw, "the image document")
    return doc.get("mediaType") in INDEX_TYPES or ("manifests" in doc and "layers" not in doc)


def parse_index(raw: bytes, what: str = "the image index") -> list[Descriptor]:
    """The image manifests of an index (attestations and other artifacts left out)."""
    doc = _load(raw, what)
    if doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list):
        raise BundleError(f"{what} is not an image index (schemaVersion 2 with a manifests list)")
    out = []
    for i, obj in enumerate(doc["manifests"][:MAX_LAYERS]):
        desc = parse_descriptor(obj, f"{what} manifests[{i}]")
        if desc.media_type not in MANIFEST_TYPES:
            continue
        if desc.platform is not None and desc.platform.os == "unknown":
            continue  # buildx attestations: unknown/unknown
        out.append(desc)
    if not out:
        raise BundleError(f"{what} lists no image manifest")
    return out


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """One image manifest as read (exact bytes kept): its config and layers."""

    raw: bytes
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]

    @property
    def docker(self) -> bool:
        return self.media_type == DOCKER_MANIFEST


def parse_manifest(raw: bytes, what: str = "the image manifest") -> ImageManifest:
    """An image manifest, all of one media-type family (Docker schema 2 or OCI).

    Raises:
        BundleError: not an image manifest, or Docker and OCI types mixed.
    """
    doc = _load(raw, what)
    media_type = doc.get("mediaType") or MANIFEST_MEDIA_TYPE
    if doc.get("schemaVersion") != 2 or media_type not in MANIFEST_TYPES:
        raise BundleError(f"{what} is not an image manifest (mediaType {media_type!r})")
    config = parse_descriptor(doc.get("config"), f"{what} config")
    layers_obj = doc.get("layers")
    if not isinstance(layers_obj, list) or len(layers_obj) > MAX_LAYERS:
        raise BundleError(f"{what}.layers is not a list of at most {MAX_LAYERS}")
    layers = tuple(parse_descriptor(obj, f"{what} layers[{i}]") for i, obj in enumerate(layers_obj))
    docker = media_type == DOCKER_MANIFEST
    want_config = DOCKER_CONFIG if docker else CONFIG_MEDIA_TYPE
    if config.media_type != want_config:
        raise BundleError(f"{what} has config type {config.media_type!r}; a {media_type} manifest needs {want_config}")
    for layer in layers:
        layer.compression  # noqa: B018  (raises for a type that is not a tar layer)
        if docker != layer.media_type.startswith("application/vnd.docker."):
            raise BundleError(f"{what} mixes Docker and OCI media types ({media_type} with layer {layer.media_type})")
    annotations = doc.get("annotations") or {}
    return ImageManifest(raw, media_type, config, layers, annotations if isinstance(annotations, dict) else {})


def parse_config(raw: bytes, layers: int, what: str = "the image config") -> tuple[dict[str, Any], list[Digest]]:
    """The config document and its diff_ids, one per layer.

    Raises:
        BundleError: not a config, or a diff_id count that differs from the layers.
    """
    doc = _load(raw, what)
    rootfs = doc.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or len(ids) != layers:
        raise BundleError(f"{what} lists {len(ids) if isinstance(ids, list) else 'no'} diff_ids for {layers} layers")
    try:
        return doc, [Digest.parse(d) for d in ids]
    except InvalidName as exc:
        raise BundleError(f"{what}: a diff_id is {exc}") from None
