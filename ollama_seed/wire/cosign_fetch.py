"""Finding the signatures a registry keeps for a manifest, where cosign and go-containerregistry look.

1. ``GET /v2/<repo>/referrers/<digest>?artifactType=application/vnd.dev.sigstore.bundle.v0.3+json``:
   an OCI 1.1 registry answers an image index. Anything else (404, 400, 406, or a 200 that is not
   an index: Docker Distribution 2.8 has no such route) means no referrers API, and
2. ``GET /v2/<repo>/manifests/sha256-<hex>``, the referrers tag schema's fallback index, is read
   instead (404: no referrer).
3. Each Sigstore-bundle referrer manifest (by its digest), then its bundle blob.
4. cosign v2's ``GET /v2/<repo>/manifests/sha256-<hex>.sig`` and its simple-signing payloads.

Every document is checked against the digest that named it, and kept as a
:class:`~ollama_seed.core.sigrecord.StoredSignature` together with the OCI artifact it came in (so
``serve`` can hand it on unchanged). Nothing here decides trust: :mod:`.verify` does. A registry
that hosts no signature answers with an empty list; one that fails answers with its error.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse

from ..core.digest import Digest
from ..core.dsse import BUNDLE_MEDIA_TYPE, parse_bundle
from ..core.errors import AuthenticationError, RegistryError, SeedError
from ..core.intoto import OMS_PREDICATE_TYPE
from ..core.manifest import MAX_MANIFEST_BYTES
from ..core.ocidoc import Descriptor
from ..core.ociref import (
    EMPTY_CONFIG,
    EMPTY_CONFIG_DIGEST,
    INDEX_MEDIA_TYPE,
    OCI_MANIFEST,
    ReferrerEntry,
    config_digest,
    fallback_tag,
    legacy_tag,
    parse_referrers,
    read_bundle_referrer,
    read_simple_signing,
)
from ..core.sigrecord import OciArtifact, StoredSignature
from .registry import RegistryClient, RepoName, map_errors

__all__ = ["RegistryDocs", "fetch_signatures"]

MAX_REFERRERS_READ = 16
MAX_BLOB = 8 * 1024 * 1024


class RegistryDocs:
    """Small GETs in one repository of a registry (or of a mirror at *base*), with its tokens."""

    def __init__(self, client: RegistryClient, name: RepoName, base: str | None = None) -> None:
        self.client = client
        self.name = client.at(name, base)  # a mirror's own credentials, never the registry's
        self.root = f"{base or client.base(name)}/v2/{name.repository}"

    async def get(self, path: str, accept: str, limit: int = MAX_MANIFEST_BYTES) -> tuple[int, str, bytes]:
        """``(status, content type, body)``; the body is read only on a 200.

        Raises:
            AuthenticationError: 401/403. RegistryError: a body over *limit*. TransferError: the network.
        """
        url = f"{self.root}/{path}"
        with map_errors(url):
            resp = await self.client.send(self.name, "GET", url, {"Accept": accept})
            try:
                if resp.status_code in (401, 403):
                    raise AuthenticationError(
                        f"{self.name.host} refused GET {url.split('?', 1)[0]} (HTTP {resp.status_code})",
                        url=url,
                        status=resp.status_code,
                    )
                if resp.status_code != 200:
                    return resp.status_code, "", b""
                chunks, total = [], 0
                async for chunk in resp.aiter_bytes():
                    total += len(chunk)
                    if total > limit:
                        raise RegistryError(f"{url} is larger than {limit} bytes; it is not a signature document")
                    chunks.append(chunk)
            finally:
                await resp.aclose()
        kind = resp.headers.get("content-type", "").split(";", 1)[0].strip()
        return 200, kind, b"".join(chunks)

    async def document(self, reference: str, accept: str, digest: Digest | None = None) -> bytes | None:
        """A manifest or index by tag or digest; None on 404; checked against *digest* when given."""
        status, _, body = await self.get(f"manifests/{reference}", accept)
        if status == 404:
            return None
        if status != 200:
            raise RegistryError(f"{self.name.host}: GET manifests/{reference} answered HTTP {status}", status=status)
        if digest is not None and hashlib.sha256(body).hexdigest() != digest.hex:
            raise RegistryError(f"{self.name.host} answered manifests/{reference} with bytes of another digest")
        return body

    async def blob(self, digest: Digest, limit: int = MAX_BLOB) -> bytes | None:
        status, _, body = await self.get(f"blobs/{digest}", "*/*", limit)
        if status != 200:
            return None
        if hashlib.sha256(body).hexdigest() != digest.hex:
            raise RegistryError(f"{self.name.host} answered blob {digest} with bytes of another digest")
        return body

    async def referrers(self, subject: Digest) -> list[ReferrerEntry]:
        """The referrers of *subject*: from the API when the registry has it, else from the fallback tag."""
        query = urllib.parse.urlencode({"artifactType": BUNDLE_MEDIA_TYPE})
        status, kind, body = await self.get(f"referrers/{subject}?{query}", INDEX_MEDIA_TYPE)
        if status == 429 or status >= 500:  # a registry in trouble, not one without the API
            raise RegistryError(f"{self.name.host}: GET referrers/{subject} answered HTTP {status}", status=status)
        if status != 200 or kind != INDEX_MEDIA_TYPE:
            body = await self.document(fallback_tag(subject), INDEX_MEDIA_TYPE) or b""
            if not body:
                return []
        return parse_referrers(body)


async def fetch_signatures(
    client: RegistryClient, name: RepoName, subject: Descriptor, *, base: str | None = None
) -> list[StoredSignature]:
    """Every signature the registry (or the mirror at *base*) keeps for the manifest *subject*.

    Raises:
        AuthenticationError, RegistryError, TransferError: the registry refused or failed.
        SignatureError: a signature document that is not what its type says.
    """
    docs = RegistryDocs(client, name, base)
    records: list[StoredSignature] = []
    for entry in (await docs.referrers(subject.digest))[:MAX_REFERRERS_READ]:
        if entry.artifact_type not in ("", BUNDLE_MEDIA_TYPE):
            continue
        record = await _bundle_referrer(docs, entry, subject.digest)
        if record is not None:
            records.append(record)
    records.extend(await _legacy(docs, subject.digest))
    return records


async def _bundle_referrer(docs: RegistryDocs, entry: ReferrerEntry, subject: Digest) -> StoredSignature | None:
    raw = await docs.document(str(entry.digest), OCI_MANIFEST, entry.digest)
    if raw is None:
        return None
    blob_digest = read_bundle_referrer(raw, subject)
    if blob_digest is None:
        return None
    bundle = await docs.blob(blob_digest)
    if bundle is None:
        return None
    blobs = {blob_digest: bundle}
    if config_digest(raw) == EMPTY_CONFIG_DIGEST:  # the empty config: kept so serve can answer it
        blobs[EMPTY_CONFIG_DIGEST] = EMPTY_CONFIG
    kind = "cosign"
    try:
        if json.loads(parse_bundle(bundle).payload).get("predicateType") == OMS_PREDICATE_TYPE:
            kind = "oms"
    except (SeedError, ValueError, AttributeError):
        pass
    return StoredSignature(kind, bundle=bundle, artifact=OciArtifact(OCI_MANIFEST, raw, blobs))


async def _legacy(docs: RegistryDocs, subject: Digest) -> list[StoredSignature]:
    raw = await docs.document(legacy_tag(subject), OCI_MANIFEST)
    if raw is None:
        return []
    layers = read_simple_signing(raw)
    blobs: dict[Digest, bytes] = {}
    config = config_digest(raw, "the .sig manifest")
    try:
        data = None if config is None else await docs.blob(config, 64 * 1024)
    except SeedError:
        data = None
    if config is not None and data is not None:
        blobs[config] = data
    found = []
    for digest, _size, signature, pems in layers[:MAX_REFERRERS_READ]:
        payload = await docs.blob(digest, 64 * 1024)
        if payload is None:
            continue
        blobs[digest] = payload
        found.append((payload, signature, _ders(pems)))
    artifact = OciArtifact(OCI_MANIFEST, raw, blobs)
    return [
        StoredSignature("cosign-legacy", payload=p, signature=s, certificates=c, artifact=artifact) for p, s, c in found
    ]


def _ders(pems: tuple[str, ...]) -> tuple[bytes, ...]:
    if not pems:
        return ()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    out: list[bytes] = []
    for text in pems:
        try:
            out.extend(
                c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(text.encode())
            )
        except ValueError:
            continue
    return tuple(out)
