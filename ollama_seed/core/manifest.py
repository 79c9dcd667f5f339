"""Ollama manifests: parsed defensively, kept as the exact bytes the registry sent.

The registry's key order varies, and the model's ID is the sha256 of the manifest file,
so the raw bytes are the truth: :attr:`Manifest.raw` is written to disk unchanged.

:func:`load_json_object` is how every JSON document nobody vouches for (a manifest, a bundle or
image index, a signature) is read: bounded, and an object at the top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .digest import Digest
from .errors import InvalidName, RegistryProtocolError

__all__ = [
    "CONFIG_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "MAX_MANIFEST_BYTES",
    "OCI_MANIFEST_MEDIA_TYPE",
    "Layer",
    "Manifest",
    "load_json_object",
]

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_BLOB_SIZE = 1 << 50  # 1 PiB: anything larger is a lie
MAX_LAYERS = 10_000


class _Bad(Exception):
    pass


def load_json_object(raw: bytes, what: str, limit: int | None = None) -> dict[str, Any]:
    """The JSON object *raw* holds; *what* names it in the error (``the bundle index``).

    Raises:
        ValueError: more than *limit* bytes, not JSON (nested too deep included), or not an
            object; each caller turns it into its own error.
    """
    if limit is not None and len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes, more than the {limit} allowed")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is not a JSON object")
    return doc


@dataclass(frozen=True, slots=True)
class Layer:
    """One blob a manifest references."""

    media_type: str
    digest: Digest
    size: int

    @property
    def kind(self) -> str:
        """The short media type: ``model``, ``template``, ``license``, ``config``, ..."""
        if self.media_type == CONFIG_MEDIA_TYPE:
            return "config"
        return self.media_type.rsplit(".", 1)[-1] if self.media_type else "blob"


def _text(value: Any, what: str, *, limit: int = 255) -> str:
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise _Bad(f"{what} is not a short printable string")
    return value


def _layer(obj: Any, what: str) -> Layer:
    if not isinstance(obj, dict):
        raise _Bad(f"{what} is not an object")
    media_type = _text(obj.get("mediaType", ""), f"{what}.mediaType")
    text = obj.get("digest")
    if not isinstance(text, str):
        raise _Bad(f"{what}.digest is missing or not a string")
    try:
        digest = Digest.parse(text)
    except InvalidName as exc:
        raise _Bad(f"{what}.digest: {exc}") from None
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_SIZE:
        raise _Bad(f"{what}.size must be a whole number from 0 to 2**50, not {size!r}")
    return Layer(media_type, digest, size)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest; :attr:`raw` holds the exact bytes."""

    raw: bytes
    digest: Digest
    media_type: str
    config: Layer | None
    layers: tuple[Layer, ...]

    @classmethod
    def parse(cls, raw: bytes, *, source: str = "manifest") -> Manifest:
        """Parse and validate manifest bytes.

        Raises:
            RegistryProtocolError: the bytes are not a usable Ollama manifest; the message says why.
        """
        try:
            return cls._parse(raw)
        except _Bad as exc:
            raise RegistryProtocolError(f"{source} is not a valid Ollama manifest: {exc}") from None

    @classmethod
    def _parse(cls, raw: bytes) -> Manifest:
        try:
            doc = load_json_object(raw, "it", MAX_MANIFEST_BYTES)
        except ValueError as exc:
            raise _Bad(str(exc)) from None
        if doc.get("schemaVersion") != 2:
            raise _Bad(f"schemaVersion is {doc.get('schemaVersion')!r}, not 2")
        media_type = _text(doc.get("mediaType", MANIFEST_MEDIA_TYPE), "mediaType")
        if "manifest.list" in media_type or "image.index" in media_type:
            raise _Bad(f"mediaType {media_type!r} is an index of manifests, not a model manifest")
        config_obj = doc.get("config")
        config = None
        if config_obj not in (None, {}) and not (isinstance(config_obj, dict) and not config_obj.get("digest")):
            config = _layer(config_obj, "config")
        layers_obj = doc.get("layers")
        if layers_obj is None:
            layers_obj = []
        if not isinstance(layers_obj, list):
            raise _Bad("layers is not a list")
        if len(layers_obj) > MAX_LAYERS:
            raise _Bad(f"{len(layers_obj)} layers, more than {MAX_LAYERS}")
        layers = tuple(_layer(obj, f"layers[{i}]") for i, obj in enumerate(layers_obj))
        sizes: dict[Digest, int] = {}
        for layer in (*layers, *([config] if config else [])):
            if sizes.setdefault(layer.digest, layer.size) != layer.size:
                raise _Bad(f"{layer.digest} is listed with two sizes, {sizes[layer.digest]} and {layer.size}")
        return cls(raw, Digest.of(raw), media_type, config, layers)

    @property
    def blobs(self) -> tuple[Layer, ...]:
        """Every distinct blob (layers first, config last, as Ollama pulls them)."""
        seen: set[Digest] = set()
        out: list[Layer] = []
        for layer in (*self.layers, *([self.config] if self.config else [])):
            if layer.digest not in seen:
                seen.add(layer.digest)
                out.append(layer)
        return tuple(out)

    @property
    def total_size(self) -> int:
        """Bytes of all distinct blobs."""
        return sum(layer.size for layer in self.blobs)
