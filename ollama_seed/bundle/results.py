"""What a bundle import, a verification or ``bundle ls`` reports.

Light on purpose: the public API imports this module for its result types, and a blocking
export should not pay for the import machinery (file locks, OCI parsing) it never uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.digest import Digest
from ..core.reference import ModelName

__all__ = ["BundleInfo", "BundleModel", "ImportResult"]


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
    signers: tuple[str, ...] = ()
    """Who the bundle's signatures say made them: unverified (``verify_bundle(trust=...)`` checks them)."""


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
    signer: str | None = None
    """Who signed what was imported, when trust was configured and a trusted signature checked it."""
