"""What a bundle import reports, and the state it keeps while it reads the stream."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.digest import Digest
from ..core.manifest import Manifest
from ..core.reference import ModelName
from .format import BundleIndex
from .oci import OciEntry
from .staging import StagedBlob

__all__ = ["ImportResult", "ImportState"]


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
