"""The signatures a served store keeps, answered as a registry holds them, so a mirror keeps provenance.

For a manifest of the repository asked about, its records (:mod:`ollama_seed.store.signatures`)
become:

- ``GET /v2/<repo>/referrers/<digest>[?artifactType=...]``: the OCI 1.1 referrers list;
- ``GET /v2/<repo>/manifests/sha256-<hex>``: the same list at the referrers tag schema's tag, for
  clients that try the tag (cosign, go-containerregistry, ollama-seed itself);
- ``GET /v2/<repo>/manifests/sha256-<hex>.sig``: cosign v2's simple-signing manifest;
- each referrer manifest by its digest, and the small blobs those manifests name.

A cosign signature is served exactly as it was pulled or pushed; an OMS signature (a signed
bundle that was imported) is served as a Sigstore-bundle referrer built the way cosign v3 builds
one, without a creation time, so its digest is stable. Only manifests of the repository in the
request are considered, so access rules on repositories cover their signatures too.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..core.digest import Digest
from ..core.errors import SeedError
from ..core.intoto import COSIGN_PREDICATE_TYPE, OMS_PREDICATE_TYPE
from ..core.manifest import MANIFEST_MEDIA_TYPE, Manifest
from ..core.ocidoc import Descriptor
from ..core.ociref import (
    INDEX_MEDIA_TYPE,
    ReferrerEntry,
    bundle_referrer,
    entry_for,
    fallback_tag,
    legacy_tag,
    referrers_index,
    simple_signing_manifest,
)
from ..core.sigrecord import OciArtifact, StoredSignature
from ..store.signatures import SignatureStore
from ..store.store import ModelStore
from .index import MirrorIndex, Repo

__all__ = ["MirrorSignatures"]

MAX_SUBJECTS = 256  # manifests of one repository looked at for a signature artifact
Document = tuple[str, bytes, list[tuple[bytes, bytes]]]
"""A response: media type, body, extra headers."""


def _subject(manifest: Manifest) -> Descriptor:
    return Descriptor(manifest.media_type or MANIFEST_MEDIA_TYPE, manifest.digest, len(manifest.raw), {})


class MirrorSignatures:
    """Signature documents of one store, per repository (see the module docs)."""

    def __init__(self, store: ModelStore, index: MirrorIndex) -> None:
        self.records = SignatureStore(store)
        self.index = index

    def _artifacts(self, manifest: Manifest) -> Iterator[OciArtifact]:
        """The referrer artifacts of *manifest* (cosign v3 bundles, OMS signatures), as served."""
        for record in self.records.records(manifest.digest):
            if record.kind == "cosign-legacy":
                continue
            if record.artifact is not None:
                yield record.artifact
            elif record.bundle:
                predicate = OMS_PREDICATE_TYPE if record.kind == "oms" else COSIGN_PREDICATE_TYPE
                yield bundle_referrer(record.bundle, _subject(manifest), predicate, created=None)

    def _legacy(self, manifest: Manifest) -> OciArtifact | None:
        legacy = [r for r in self.records.records(manifest.digest) if r.kind == "cosign-legacy"]
        kept = next((r.artifact for r in legacy if r.artifact is not None), None)
        if kept is not None or not legacy:
            return kept
        return simple_signing_manifest([(r.payload, r.signature, _pems(r)) for r in legacy])

    def referrers(self, manifest: Manifest, artifact_type: str | None = None) -> bytes:
        """The referrers list of *manifest* (an image index; empty when it has no signature)."""
        entries: list[ReferrerEntry] = []
        for artifact in self._artifacts(manifest):
            try:
                entry = entry_for(artifact)
            except SeedError:
                continue
            if artifact_type is None or entry.artifact_type == artifact_type:
                entries.append(entry)
        return referrers_index(entries)

    def _subjects(self, repo: Repo) -> Iterator[Manifest]:
        for tag in self.index.tags(repo)[:MAX_SUBJECTS]:
            manifest = self.index.find_manifest(repo, tag)
            if manifest is not None:
                yield manifest

    def referrers_of(self, repo: Repo, ref: str, artifact_type: str | None) -> Document | None:
        """The referrers API's answer for the manifest *ref* (a digest) of *repo*; None if *repo* lacks it.

        Raises:
            InvalidName: *ref* is not a digest.
        """
        manifest = self.index.find_manifest(repo, str(Digest.parse(ref)))
        if manifest is None:
            return None
        extra = [(b"oci-filters-applied", b"artifactType")] if artifact_type else []
        return INDEX_MEDIA_TYPE, self.referrers(manifest, artifact_type), extra

    def manifest(self, repo: Repo, ref: str) -> Document | None:
        """The signature document *ref* (a tag or a digest) names in *repo*, or None."""
        for manifest in self._subjects(repo):
            if ref == fallback_tag(manifest.digest):
                if any(True for _ in self._artifacts(manifest)):
                    return INDEX_MEDIA_TYPE, self.referrers(manifest), []
                return None
            if ref == legacy_tag(manifest.digest):
                legacy = self._legacy(manifest)
                return (legacy.media_type, legacy.manifest, []) if legacy is not None else None
        if not ref.startswith("sha256:"):
            return None
        wanted = Digest.parse(ref)
        for artifact in self._all(repo):
            if artifact.digest == wanted:
                return artifact.media_type, artifact.manifest, []
        return None

    def blob(self, repo: Repo, digest: Digest) -> bytes | None:
        """A blob of a signature document of *repo* (a Sigstore bundle, a payload, a config), or None."""
        for artifact in self._all(repo):
            data = artifact.blobs.get(digest)
            if data is not None:
                return data
        return None

    def _all(self, repo: Repo) -> Iterator[OciArtifact]:
        for manifest in self._subjects(repo):
            yield from self._artifacts(manifest)
            legacy = self._legacy(manifest)
            if legacy is not None:
                yield legacy


def _pems(record: StoredSignature) -> list[str]:
    if not record.certificates:
        return []
    from ..wire.pem import der_to_pem

    return [der_to_pem(c) for c in record.certificates]
