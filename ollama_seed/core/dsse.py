"""Sigstore bundles (v0.3) holding a DSSE envelope: the container of both OMS and cosign v3 signatures. Pure.

::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": "..."}, "tlogEntries": []},
                         or  {"x509CertificateChain": {"certificates": [{"rawBytes": "<base64 DER>"}, ...]}, ...},
     "dsseEnvelope": {"payload": "<base64>", "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": "<base64 DER ECDSA>", "keyid": ""}]}}

The signature is over DSSE's pre-authentication encoding of the payload (:func:`pae`), never over
the JSON around it, so re-serializing a bundle does not break it. Nothing here checks a signature:
:mod:`ollama_seed.wire.trust` does, with the keys and CAs you trust; the key hint and the
certificates a bundle carries only say which of them to try.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from .errors import SignatureError
from .manifest import load_json_object

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "INTOTO_PAYLOAD_TYPE",
    "MAX_BUNDLE_BYTES",
    "SigstoreBundle",
    "bundle_from_json",
    "encode_bundle",
    "pae",
    "parse_bundle",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_BUNDLE_MEDIA_TYPES = {
    BUNDLE_MEDIA_TYPE,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",  # the spelling sigstore-go also accepts
}
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_BUNDLE_BYTES = 8 * 1024 * 1024
MAX_SIGNATURES = 16
MAX_CERTIFICATES = 10


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding: ``DSSEv1 SP len(type) SP type SP len(body) SP body``."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True, slots=True)
class SigstoreBundle:
    """A parsed Sigstore bundle with a DSSE envelope. *raw* is the document as read."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]
    key_hint: str | None
    certificates: tuple[bytes, ...]
    raw: bytes

    @property
    def signed_bytes(self) -> bytes:
        """What each signature signs."""
        return pae(self.payload_type, self.payload)

    @property
    def method(self) -> str:
        """``certificate`` when the bundle carries a certificate chain, else ``key``."""
        return "certificate" if self.certificates else "key"


def encode_bundle(
    payload: bytes,
    signature: bytes,
    *,
    payload_type: str = INTOTO_PAYLOAD_TYPE,
    key_hint: str | None = None,
    certificates: tuple[bytes, ...] = (),
) -> bytes:
    """The JSON bundle for a DSSE *payload* and its *signature*: a key hint, or the certificates (DER, leaf first)."""
    material: dict[str, Any]
    if certificates:
        material = {"x509CertificateChain": {"certificates": [{"rawBytes": _b64_bytes(c)} for c in certificates]}}
    else:
        material = {"publicKey": {"hint": key_hint or ""}}
    material["tlogEntries"] = []
    doc = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": _b64_bytes(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": _b64_bytes(signature), "keyid": ""}],
        },
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _b64_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bad(why: str) -> SignatureError:
    return SignatureError(f"not a usable signature: {why}")


def _decode64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise _bad(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:  # protobuf JSON may use the URL-safe alphabet
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise _bad(f"{what} is not valid base64") from None


def parse_bundle(raw: bytes) -> SigstoreBundle:
    """Parse a Sigstore bundle with a DSSE envelope (no signature is checked here).

    Raises:
        SignatureError: not JSON, not a v0.3 bundle, no DSSE envelope, or a malformed field.
    """
    try:
        doc = load_json_object(raw, "the bundle", MAX_BUNDLE_BYTES)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    return bundle_from_json(doc, raw)


def bundle_from_json(doc: Any, raw: bytes = b"") -> SigstoreBundle:
    """Like :func:`parse_bundle`, for a document already decoded (an entry of a bundle index)."""
    if not isinstance(doc, dict):
        raise _bad("not a JSON object")
    media_type = doc.get("mediaType")
    if media_type not in _BUNDLE_MEDIA_TYPES:
        raise _bad(f"mediaType is {str(media_type)[:100]!r}, not {BUNDLE_MEDIA_TYPE!r}")
    envelope = doc.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        what = "a message signature" if "messageSignature" in doc else "no DSSE envelope"
        raise _bad(f"the bundle holds {what}; ollama-seed reads DSSE-signed in-toto statements")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str) or len(payload_type) > 256:
        raise _bad("dsseEnvelope.payloadType is not a string")
    payload = _decode64(envelope.get("payload"), "dsseEnvelope.payload")
    entries = envelope.get("signatures")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SIGNATURES:
        raise _bad(f"dsseEnvelope.signatures must list 1 to {MAX_SIGNATURES} signatures")
    sigs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _bad(f"dsseEnvelope.signatures[{i}] is not an object")
        sigs.append(_decode64(entry.get("sig"), f"dsseEnvelope.signatures[{i}].sig"))
    material = doc.get("verificationMaterial")
    if not isinstance(material, dict):
        raise _bad("there is no verificationMaterial")
    hint: str | None = None
    certs: list[bytes] = []
    if isinstance(material.get("x509CertificateChain"), dict):
        listed = material["x509CertificateChain"].get("certificates")
        if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_CERTIFICATES:
            raise _bad(f"x509CertificateChain must list 1 to {MAX_CERTIFICATES} certificates")
        for i, cert in enumerate(listed):
            if not isinstance(cert, dict):
                raise _bad(f"x509CertificateChain.certificates[{i}] is not an object")
            certs.append(_decode64(cert.get("rawBytes"), f"x509CertificateChain.certificates[{i}].rawBytes"))
    elif isinstance(material.get("certificate"), dict):
        certs.append(_decode64(material["certificate"].get("rawBytes"), "certificate.rawBytes"))
    elif isinstance(material.get("publicKey"), dict):
        value = material["publicKey"].get("hint")
        if value is not None and not isinstance(value, str):
            raise _bad("publicKey.hint is not a string")
        hint = value or None
    else:
        raise _bad("verificationMaterial names neither a public key nor certificates")
    return SigstoreBundle(payload_type, payload, tuple(sigs), hint, tuple(certs), raw)
