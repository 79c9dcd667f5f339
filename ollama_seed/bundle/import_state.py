"""What a bundle import (or ``bundle ls``) reports, and the state an import keeps while it reads the stream.

Light on purpose: the public API imports this module for its result types, and a blocking
export should not pay for the import machinery (file locks, OCI parsing) it never uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.digest import Digest
from ..core.reference import ModelName

if TYPE_CHECKING:
    from ..core.manifest import Manifest
    from .format import BundleIndex
    from .oci import OciEntry
    from .staging import StagedBlob

__all__ = ["BundleInfo", "BundleModel", "ImportResult", "ImportState"]


@dataclass(frozen=True, slots=True)
class BundleModel:
    """A model a bundle carries: name, manifest digest, and bytes of its manifest and blobs."""

    name: ModelName
    manifest_digest: Digest
    size: int
    blobs: int


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What ``bundle ls`` shows. *format* is ``ollama-seed``, ``tar`` (no index), ``oci``,
    ``ollamazip`` or ``models-dir``; *size* is the bytes of blobs and manifests it carries,
    before tar and compression."""

    format: str
    version: int | None
    created_by: str
    created: str
    compression: str
    models: tuple[BundleModel, ...]
    blobs: tuple[tuple[Digest, int], ...]
    size: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import (or a verify) did.

    *models* are the models installed or found identical (verified, for a verify), in bundle
    order; *replaced* had another manifest under the same name before; *unchanged* were
    already installed with the same manifest.
    """

    models: tuple[ModelName, ...]
    replaced: tuple[ModelName, ...]
    unchanged: tuple[ModelName, ...]
    blobs_written: int
    blobs_skipped: int
    bytes_written: int
    bytes_read: int
    format: str
    compression: str
    elapsed: float


@dataclass
class ImportState:
    """What an import has seen and staged so far (one per :class:`~.importer.Importer`)."""

    kind: str = ""
    index: BundleIndex | None = None
    oci: dict[Digest, list[OciEntry]] | None = None
    oci_skip: frozenset[Digest] = frozenset()
    declared: dict[Digest, int] = field(default_factory=dict)
    blobs: dict[Digest, StagedBlob] = field(default_factory=dict)
    manifests: dict[ModelName, bytes] = field(default_factory=dict)
    pending: dict[ModelName, Manifest] = field(default_factory=dict)
    done: list[ModelName] = field(default_factory=list)
    replaced: list[ModelName] = field(default_factory=list)
    unchanged: list[ModelName] = field(default_factory=list)
    ready: list[tuple[ModelName, Manifest]] = field(default_factory=list)  # complete, install deferred to the end
    oz_name: ModelName | None = None  # an ollamazip archive: the name its metadata.json gives
    oz_manifest: bytes | None = None  # its manifest.json, held until metadata.json names it
    oz_members: set[str] = field(default_factory=set)
    held_small: int = 0
    written: int = 0
    skipped: int = 0
    bytes_written: int = 0
