"""Attaching a cosign-compatible signature to a manifest just pushed (``push --sign``, ``image build --sign``).

What ``cosign sign --key`` (v3) writes, so Kyverno, sigstore policy-controller and cosign itself
find it:

1. the statement ``{"_type": in-toto v1, "subject": [{"digest": {"sha256": <manifest>}}],
   "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}``, signed in a DSSE
   envelope inside a Sigstore bundle (the key's hint: base64 SHA-256 of its DER public key);
2. the empty config ``{}`` and the bundle as blobs, then the referrer manifest (artifactType the
   bundle media type, ``subject`` the signed manifest) ``PUT`` by its digest;
3. when the registry's answer has no ``OCI-Subject`` header (no referrers API: Docker
   Distribution 2.8), the index at the tag ``sha256-<hex>`` gains the referrer's descriptor, as
   go-containerregistry keeps it (read, appended, sorted, written back: racy between two
   writers, as the distribution specification warns).

With *legacy* (``--cosign-legacy``), also cosign v2's simple signing: the payload
``{"critical": {"identity": {"docker-reference": <host/repo>}, "image": {"docker-manifest-digest":
<digest>}, "type": "cosign container image signature"}, "optional": null}`` signed as is, a layer
of the manifest at the tag ``sha256-<hex>.sig`` (signatures already there are kept).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from ..core.digest import Digest
from ..core.dsse import INTOTO_PAYLOAD_TYPE, encode_bundle, pae
from ..core.intoto import COSIGN_PREDICATE_TYPE, cosign_statement, simple_signing_payload
from ..core.ocidoc import Descriptor
from ..core.ociref import (
    INDEX_MEDIA_TYPE,
    OCI_MANIFEST,
    ReferrerEntry,
    bundle_referrer,
    entry_for,
    fallback_tag,
    legacy_tag,
    parse_referrers,
    read_simple_signing,
    referrers_index,
    simple_signing_manifest,
)
from ..core.sigrecord import OciArtifact, StoredSignature
from .cosign_fetch import RegistryDocs
from .keys import SigningKey
from .pem import der_to_pem
from .upload import Uploader

__all__ = ["PreparedSignature", "attach_signature", "cosign_referrer", "prepare_signature"]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _put_blobs(up: Uploader, artifact: OciArtifact) -> None:
    """The blobs of *artifact* into the repository, at once (each is small), skipping those there."""

    async def one(digest: Digest, data: bytes) -> None:
        if await up.exists(digest):
            return

        async def body(start: int, n: int) -> AsyncIterator[bytes]:
            yield data[start : start + n]

        await up.upload(digest, len(data), body)

    async with anyio.create_task_group() as tg:
        for digest, data in artifact.blobs.items():
            tg.start_soon(one, digest, data)


@dataclass
class PreparedSignature:
    """A signature whose documents are made and whose blobs are in the registry: :meth:`publish`
    writes the manifests once the signed manifest itself is there.

    Splitting the two lets a push send the signature's blobs alongside the model's (the signed
    digest is known before the first byte), so signing adds only the few manifest writes at the end.
    """

    subject: Descriptor
    bundle: bytes
    artifact: OciArtifact
    fallback: list[ReferrerEntry]
    legacy: StoredSignature | None = None

    async def publish(self, up: Uploader) -> list[StoredSignature]:
        """Write the referrer manifest, the fallback tag's index when needed, and the ``.sig`` tag.

        Returns the signatures written, as records to keep in the local store.
        """
        artifact, subject = self.artifact, self.subject
        header = await up.manifest(str(artifact.digest), OCI_MANIFEST, artifact.manifest, artifact.digest)
        if header != str(subject.digest):  # no referrers API: keep the fallback tag's index
            entries = list(self.fallback)
            if all(e.digest != artifact.digest for e in entries):
                entries.append(entry_for(artifact))
                index = referrers_index(entries)
                tag = fallback_tag(subject.digest)
                await up.manifest(tag, INDEX_MEDIA_TYPE, index, Digest.of(index))
        records = [StoredSignature("cosign", bundle=self.bundle, artifact=artifact)]
        if self.legacy is not None and self.legacy.artifact is not None:
            sig = self.legacy.artifact
            await up.manifest(legacy_tag(subject.digest), OCI_MANIFEST, sig.manifest, sig.digest)
            records.append(self.legacy)
        return records


def cosign_referrer(subject: Descriptor, key: SigningKey) -> tuple[bytes, OciArtifact]:
    """What ``cosign sign --key`` (v3) makes for *subject*: the Sigstore bundle, and the referrer
    manifest carrying it (with the empty config and the bundle as its blobs)."""
    statement = cosign_statement(subject.digest)
    signature = key.sign(pae(INTOTO_PAYLOAD_TYPE, statement))
    hint = None if key.certificates else key.public_key.cosign_hint
    bundle = encode_bundle(statement, signature, key_hint=hint, certificates=key.certificates)
    return bundle, bundle_referrer(bundle, subject, COSIGN_PREDICATE_TYPE, created=_now())


async def prepare_signature(
    up: Uploader, subject: Descriptor, key: SigningKey, *, legacy: bool = False
) -> PreparedSignature:
    """Sign *subject*, send the signature's blobs, and read what the fallback and ``.sig`` tags hold.

    Raises:
        AuthenticationError, RegistryError, TransferError, IntegrityError: the registry refused or failed.
    """
    bundle, artifact = cosign_referrer(subject, key)
    docs = RegistryDocs(up.client, up.target)
    found: dict[str, object] = {}

    async def fallback() -> None:
        existing = await docs.document(fallback_tag(subject.digest), INDEX_MEDIA_TYPE)
        found["fallback"] = parse_referrers(existing) if existing else []

    async def simple() -> None:
        found["legacy"] = await _prepare_legacy(up, docs, subject.digest, key)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_put_blobs, up, artifact)
        tg.start_soon(fallback)
        if legacy:
            tg.start_soon(simple)
    entries = found["fallback"]
    legacy_record = found.get("legacy")
    assert isinstance(entries, list)
    assert legacy_record is None or isinstance(legacy_record, StoredSignature)
    return PreparedSignature(subject, bundle, artifact, entries, legacy_record)


async def attach_signature(
    up: Uploader, subject: Descriptor, key: SigningKey, *, legacy: bool = False
) -> list[StoredSignature]:
    """Sign *subject* (a manifest or index already in *up*'s repository) and attach the signature.

    Returns the signatures written, as records to keep in the local store.

    Raises:
        AuthenticationError, RegistryError, TransferError, IntegrityError: the registry refused or failed.
    """
    prepared = await prepare_signature(up, subject, key, legacy=legacy)
    return await prepared.publish(up)


async def _prepare_legacy(up: Uploader, docs: RegistryDocs, digest: Digest, key: SigningKey) -> StoredSignature:
    """cosign v2's ``.sig`` manifest with our signature added to those already there; its blobs sent."""
    reference = f"{up.target.host}/{up.target.repository}"
    payload = simple_signing_payload(reference, digest)
    signature = key.sign(payload)
    pems = [der_to_pem(c) for c in key.certificates]
    kept: list[tuple[bytes, bytes, list[str]]] = []
    existing = await docs.document(legacy_tag(digest), OCI_MANIFEST)
    if existing is not None:
        for layer_digest, _size, old_signature, old_certs in read_simple_signing(existing):
            old = await docs.blob(layer_digest, 64 * 1024)
            if old is not None and (old, old_signature) != (payload, signature):
                kept.append((old, old_signature, list(old_certs)))
    artifact = simple_signing_manifest([*kept, (payload, signature, pems)])
    await _put_blobs(up, artifact)
    return StoredSignature(
        "cosign-legacy", payload=payload, signature=signature, certificates=key.certificates, artifact=artifact
    )


async def _attach_legacy(up: Uploader, digest: Digest, key: SigningKey) -> StoredSignature:
    """Only the ``.sig`` signature (cosign v2), for the tests of the legacy verifier."""
    record = await _prepare_legacy(up, RegistryDocs(up.client, up.target), digest, key)
    assert record.artifact is not None
    await up.manifest(legacy_tag(digest), OCI_MANIFEST, record.artifact.manifest, record.artifact.digest)
    return record
