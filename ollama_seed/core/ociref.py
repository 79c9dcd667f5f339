"""The OCI documents that carry signatures in a registry, as cosign writes and reads them. Pure.

cosign v3 (``specs/BUNDLE_SPEC.md``, ``pkg/oci/remote/write.go``): the Sigstore bundle is a blob,
and an image manifest names it as its only layer, with the empty config, ``artifactType`` the
bundle media type, ``subject`` the signed manifest's descriptor, and the annotations
``dev.sigstore.bundle.content``, ``dev.sigstore.bundle.predicateType`` and
``org.opencontainers.image.created``. A registry with the OCI 1.1 referrers API lists it under
``GET /v2/<repo>/referrers/<digest>``; for one without (Docker Distribution 2.8), the pusher keeps
an image index at the tag ``sha256-<hex>`` (the distribution spec's referrers tag schema),
one descriptor per referrer with its ``artifactType`` and annotations.

cosign v2 (``specs/SIGNATURE_SPEC.md``): the tag ``sha256-<hex>.sig`` holds an image manifest
whose layers are simple-signing payloads (``application/vnd.dev.cosign.simplesigning.v1+json``),
each with its base64 signature in the annotation ``dev.cosignproject.cosign/signature`` (and a
certificate and chain in ``dev.sigstore.cosign/certificate`` and ``.../chain``); the config is
the empty image's, as go-containerregistry writes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .digest import Digest
from .dsse import BUNDLE_MEDIA_TYPE
from .errors import InvalidName, SignatureError
from .manifest import load_json_object
from .ocidoc import Descriptor
from .ociimage import ANNOTATION_CREATED, CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from .sigrecord import OciArtifact

__all__ = [
    "ANNOTATION_CONTENT",
    "ANNOTATION_CREATED",
    "ANNOTATION_PREDICATE",
    "EMPTY_CONFIG",
    "EMPTY_CONFIG_DIGEST",
    "EMPTY_MEDIA_TYPE",
    "INDEX_MEDIA_TYPE",
    "OCI_MANIFEST",
    "SIG_ANNOTATION",
    "SIMPLE_SIGNING_MEDIA_TYPE",
    "ReferrerEntry",
    "bundle_referrer",
    "config_digest",
    "fallback_tag",
    "legacy_tag",
    "parse_referrers",
    "read_bundle_referrer",
    "read_simple_signing",
    "referrers_index",
    "simple_signing_manifest",
]

OCI_MANIFEST = MANIFEST_MEDIA_TYPE
OCI_CONFIG = CONFIG_MEDIA_TYPE
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_DIGEST = Digest.of(EMPTY_CONFIG)
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
CERT_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
ANNOTATION_CONTENT = "dev.sigstore.bundle.content"
ANNOTATION_PREDICATE = "dev.sigstore.bundle.predicateType"
MAX_REFERRERS = 256


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def fallback_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for *digest*: ``sha256-<hex>``."""
    return digest.filename


def legacy_tag(digest: Digest) -> str:
    """cosign v2's signature tag for *digest*: ``sha256-<hex>.sig``."""
    return f"{digest.filename}.sig"


def bundle_referrer(bundle: bytes, subject: Descriptor, predicate_type: str, *, created: str | None) -> OciArtifact:
    """The referrer manifest cosign v3 pushes for a Sigstore *bundle* over *subject* (and its blobs)."""
    annotations = {ANNOTATION_CONTENT: "dsse-envelope", ANNOTATION_PREDICATE: predicate_type}
    if created is not None:
        annotations[ANNOTATION_CREATED] = created
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": EMPTY_MEDIA_TYPE,
            "size": len(EMPTY_CONFIG),
            "digest": str(EMPTY_CONFIG_DIGEST),
            "artifactType": BUNDLE_MEDIA_TYPE,
        },
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "size": len(bundle), "digest": str(Digest.of(bundle))}],
        "annotations": dict(sorted(annotations.items())),
        "subject": {"mediaType": subject.media_type, "size": subject.size, "digest": str(subject.digest)},
        "artifactType": BUNDLE_MEDIA_TYPE,
    }
    blobs = {EMPTY_CONFIG_DIGEST: EMPTY_CONFIG, Digest.of(bundle): bundle}
    return OciArtifact(OCI_MANIFEST, _dumps(doc), blobs)


@dataclass(frozen=True, slots=True)
class ReferrerEntry:
    """One descriptor of a referrers list: an artifact manifest, its type and annotations."""

    digest: Digest
    size: int
    artifact_type: str
    annotations: Mapping[str, str]
    media_type: str = OCI_MANIFEST


def referrers_index(entries: Sequence[ReferrerEntry]) -> bytes:
    """The image index of a referrers list (the API's answer, and the fallback tag's content)."""
    manifests = []
    for e in sorted(entries, key=lambda e: str(e.digest)):  # sorted as go-containerregistry keeps it
        item: dict[str, Any] = {"mediaType": e.media_type, "size": e.size, "digest": str(e.digest)}
        if e.annotations:
            item["annotations"] = dict(sorted(e.annotations.items()))
        item["artifactType"] = e.artifact_type
        manifests.append(item)
    return _dumps({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests})


def entry_for(artifact: OciArtifact) -> ReferrerEntry:
    """The referrers-list entry of an artifact manifest."""
    doc = _object(artifact.manifest, "the signature manifest")
    annotations = doc.get("annotations") or {}
    kind = doc.get("artifactType") or _config(doc).get("mediaType") or ""
    if not isinstance(annotations, dict) or not isinstance(kind, str):
        raise SignatureError("the signature manifest has malformed annotations or artifactType")
    return ReferrerEntry(
        artifact.digest, len(artifact.manifest), kind, {str(k): str(v) for k, v in annotations.items()}
    )


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        return load_json_object(raw, what)
    except ValueError as exc:
        raise SignatureError(str(exc)) from None


def _config(doc: dict[str, Any]) -> dict[str, Any]:
    """The config descriptor of a manifest document, ``{}`` when it has none that is an object."""
    config = doc.get("config")
    return config if isinstance(config, dict) else {}


def config_digest(raw: bytes, what: str = "the signature manifest") -> Digest | None:
    """The digest of the config a signature manifest names; None when it names none.

    Raises:
        SignatureError: not a JSON object.
    """
    try:
        return Digest.parse(str(_config(_object(raw, what)).get("digest", "")))
    except InvalidName:
        return None


def _listed(raw: bytes, what: str, key: str) -> list[Any]:
    """The list *key* of the JSON object *raw* (its first entries only)."""
    items = _object(raw, what).get(key)
    if not isinstance(items, list):
        raise SignatureError(f"{what} has no {key} list")
    return items[:MAX_REFERRERS]


def _descriptor(obj: Any, what: str) -> tuple[Digest, int, str, dict[str, Any]]:
    if not isinstance(obj, dict):
        raise SignatureError(f"{what} is not a descriptor")
    try:
        digest = Digest.parse(str(obj.get("digest", "")))
    except InvalidName:
        raise SignatureError(f"{what} has no sha256 digest") from None
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 64 * 1024 * 1024:
        raise SignatureError(f"{what} has no valid size")
    return digest, size, str(obj.get("mediaType", "")), obj


def parse_referrers(raw: bytes) -> list[ReferrerEntry]:
    """The entries of a referrers list (the API's answer or the fallback tag's index).

    Raises:
        SignatureError: not an image index.
    """
    out = []
    for i, item in enumerate(_listed(raw, "the referrers list", "manifests")):
        digest, size, media_type, obj = _descriptor(item, f"referrer {i}")
        annotations = obj.get("annotations") or {}
        kind = obj.get("artifactType", "")
        out.append(
            ReferrerEntry(
                digest,
                size,
                kind if isinstance(kind, str) else "",
                {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
                media_type or OCI_MANIFEST,
            )
        )
    return out


def read_bundle_referrer(raw: bytes, subject: Digest) -> Digest | None:
    """The digest of the Sigstore bundle blob a referrer manifest names, if it is one about *subject*."""
    doc = _object(raw, "a referrer manifest")
    if BUNDLE_MEDIA_TYPE not in (doc.get("artifactType"), _config(doc).get("artifactType")):
        return None
    sub = doc.get("subject")
    if sub is not None and _descriptor(sub, "its subject")[0] != subject:
        return None
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        return None
    digest, _, media_type, _ = _descriptor(layers[0], "its layer")
    return digest if media_type == BUNDLE_MEDIA_TYPE else None


def simple_signing_manifest(signatures: Sequence[tuple[bytes, bytes, Sequence[str]]]) -> OciArtifact:
    """cosign v2's ``.sig`` manifest: one layer per (payload, DER signature, [certificate PEM, chain PEM])."""
    layers, blobs, diff_ids = [], {}, []
    for payload, signature, certs in signatures:
        digest = Digest.of(payload)
        annotations = {SIG_ANNOTATION: base64.b64encode(signature).decode()}
        if certs:
            annotations[CERT_ANNOTATION] = certs[0]
            if len(certs) > 1:
                annotations[CHAIN_ANNOTATION] = "".join(certs[1:])
        layers.append(
            {
                "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
                "size": len(payload),
                "digest": str(digest),
                "annotations": dict(sorted(annotations.items())),
            }
        )
        blobs[digest] = payload
        diff_ids.append(str(digest))
    zero = "0001-01-01T00:00:00Z"  # go-containerregistry's empty image, one history entry per layer
    config = _dumps(
        {
            "architecture": "",
            "created": zero,
            "history": [{"created": zero} for _ in diff_ids],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }
    )
    blobs[Digest.of(config)] = config
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": str(Digest.of(config))},
        "layers": layers,
    }
    return OciArtifact(OCI_MANIFEST, _dumps(doc), blobs)


def read_simple_signing(raw: bytes) -> list[tuple[Digest, int, bytes, tuple[str, ...]]]:
    """The simple-signing layers of a ``.sig`` manifest: (payload digest, size, signature, certificate PEMs).

    Raises:
        SignatureError: not an image manifest, or a layer without a base64 signature.
    """
    out = []
    for i, layer in enumerate(_listed(raw, "the .sig manifest", "layers")):
        digest, size, media_type, obj = _descriptor(layer, f".sig layer {i}")
        if media_type != SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        annotations = obj.get("annotations") or {}
        value = annotations.get(SIG_ANNOTATION) if isinstance(annotations, dict) else None
        try:
            signature = base64.b64decode(value or "", validate=True)
        except (ValueError, TypeError):
            raise SignatureError(f".sig layer {i} has no base64 signature") from None
        certs = tuple(str(annotations[k]) for k in (CERT_ANNOTATION, CHAIN_ANNOTATION) if annotations.get(k))
        out.append((digest, size, signature, certs))
    return out
