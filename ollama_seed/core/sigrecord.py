"""A signature kept in a store, and the OCI artifact it travelled in. Pure.

Kept per manifest digest (see :mod:`ollama_seed.store.signatures`) so that ``ensure`` can check a
model's provenance with no network, and ``serve`` can hand the signatures on to the hosts that
pull from it. One record is one JSON document::

    {"kind": "oms" | "cosign" | "cosign-legacy",
     "bundle": "<base64 Sigstore bundle>",                       (oms, cosign)
     "payload": "<base64>", "signature": "<base64 DER>",         (cosign-legacy)
     "certificates": ["<base64 DER>", ...],                      (cosign-legacy, optional)
     "artifact": {"mediaType": "...", "manifest": "<base64>",    (how a registry held it, optional)
                  "blobs": {"sha256:<hex>": "<base64>", ...}}}

Records are data, never trust: each is checked against the keys and CAs you trust every time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .digest import Digest
from .errors import InvalidName
from .manifest import load_json_object

__all__ = ["KINDS", "MAX_RECORD_BYTES", "OciArtifact", "StoredSignature"]

KINDS = ("oms", "cosign", "cosign-legacy")
MAX_RECORD_BYTES = 12 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OciArtifact:
    """An OCI manifest (its exact bytes and media type) and the small blobs it names."""

    media_type: str
    manifest: bytes
    blobs: Mapping[Digest, bytes] = field(default_factory=dict)

    @property
    def digest(self) -> Digest:
        return Digest.of(self.manifest)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


@dataclass(frozen=True, slots=True)
class StoredSignature:
    """One signature of a model: an OMS or cosign Sigstore bundle, or a legacy simple signing."""

    kind: str
    bundle: bytes = b""
    payload: bytes = b""
    signature: bytes = b""
    certificates: tuple[bytes, ...] = ()
    artifact: OciArtifact | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"kind": self.kind}
        if self.bundle:
            doc["bundle"] = _b64(self.bundle)
        if self.payload or self.signature:
            doc["payload"], doc["signature"] = _b64(self.payload), _b64(self.signature)
        if self.certificates:
            doc["certificates"] = [_b64(c) for c in self.certificates]
        if self.artifact is not None:
            doc["artifact"] = {
                "mediaType": self.artifact.media_type,
                "manifest": _b64(self.artifact.manifest),
                "blobs": {str(d): _b64(b) for d, b in self.artifact.blobs.items()},
            }
        return json.dumps(doc, separators=(",", ":")).encode()

    @property
    def id(self) -> str:
        """A name for the record: the SHA-256 of what it keeps (the same signature is kept once)."""
        return hashlib.sha256(self.bundle or (self.payload + self.signature)).hexdigest()

    @classmethod
    def decode(cls, raw: bytes) -> StoredSignature | None:
        """The record in *raw*, or None when it is not one (a damaged file is passed over)."""
        try:
            doc = load_json_object(raw, "the record", MAX_RECORD_BYTES)
            if doc.get("kind") not in KINDS:
                return None
            artifact = None
            art = doc.get("artifact")
            if isinstance(art, dict):
                blobs = art.get("blobs", {})
                if not isinstance(blobs, dict) or not isinstance(art.get("mediaType"), str):
                    return None
                artifact = OciArtifact(
                    art["mediaType"],
                    _unb64(art.get("manifest")),
                    {Digest.parse(k): _unb64(v) for k, v in blobs.items()},
                )
            certs = doc.get("certificates", [])
            if not isinstance(certs, list):
                return None
            record = cls(
                doc["kind"],
                _unb64(doc["bundle"]) if "bundle" in doc else b"",
                _unb64(doc["payload"]) if "payload" in doc else b"",
                _unb64(doc["signature"]) if "signature" in doc else b"",
                tuple(_unb64(c) for c in certs),
                artifact,
            )
        except (ValueError, RecursionError, InvalidName):
            return None
        if artifact is not None and any(Digest.of(b) != d for d, b in artifact.blobs.items()):
            return None
        return record
