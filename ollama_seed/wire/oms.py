"""OpenSSF Model Signing (OMS v1.0) signatures over Ollama models: made with a key, checked against a trust.

:func:`sign_models` signs each model's manifest and every blob it names, as they lie in a models
directory (see :mod:`ollama_seed.core.coverage`): the digests are known, so nothing is hashed.
The statement records ``ignore_paths: [".ollama-seed"]``, so the upstream ``model_signing
verify`` accepts a models directory holding just those files and our state directory. The
result is a Sigstore bundle, the same file ``model_signing sign key`` writes (the certificate
method when the key carries certificates). :func:`verify_oms` checks one against a
:class:`~.trust.Trust` and returns what it covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..core.coverage import SignedModels, model_resources, subject_name
from ..core.dsse import INTOTO_PAYLOAD_TYPE, SigstoreBundle, encode_bundle, pae, parse_bundle
from ..core.errors import SignatureError
from ..core.intoto import OmsManifest, oms_statement, parse_oms
from ..core.manifest import Manifest
from ..core.reference import ModelName
from .keys import SigningKey
from .trust import Signer, Trust

__all__ = ["IGNORE_PATHS", "VerifiedOms", "claimed_signer", "sign_models", "sign_resources", "verify_oms"]

IGNORE_PATHS = (".ollama-seed",)


@dataclass(frozen=True, slots=True)
class VerifiedOms:
    """An OMS signature that verified: who signed it and what it covers."""

    signer: Signer
    oms: OmsManifest
    signed: SignedModels
    raw: bytes


def sign_resources(key: SigningKey, resources: Mapping[str, str], *, subject: str) -> bytes:
    """An OMS signature (a Sigstore bundle, JSON) over *resources* (``path -> sha256 hex``)."""
    payload = oms_statement(resources, subject_name=subject, ignore_paths=IGNORE_PATHS)
    signature = key.sign(pae(INTOTO_PAYLOAD_TYPE, payload))
    hint = None if key.certificates else key.public_key.oms_hint
    return encode_bundle(payload, signature, key_hint=hint, certificates=key.certificates)


def sign_models(key: SigningKey, models: Sequence[tuple[ModelName, Manifest]]) -> bytes:
    """An OMS signature over *models*: their manifests and every blob they name."""
    return sign_resources(key, model_resources(models), subject=subject_name([n for n, _ in models]))


def _oms_bundle(raw: bytes | SigstoreBundle) -> SigstoreBundle:
    bundle = raw if isinstance(raw, SigstoreBundle) else parse_bundle(raw)
    if bundle.payload_type != INTOTO_PAYLOAD_TYPE:
        raise SignatureError(f"the signature's payload is {bundle.payload_type[:80]!r}, not an in-toto statement")
    return bundle


def verify_oms(raw: bytes | SigstoreBundle, trust: Trust) -> VerifiedOms:
    """Check an OMS signature against *trust*; what it signs is returned, not compared with anything.

    Raises:
        SignatureError: not an OMS signature, not by a key or CA in *trust*, or altered.
    """
    bundle = _oms_bundle(raw)
    signer = trust.verify(bundle)
    oms = parse_oms(bundle.payload)
    return VerifiedOms(signer, oms, SignedModels.from_oms(oms), bundle.raw)


def claimed_signer(raw: bytes | SigstoreBundle) -> str:
    """Who a signature says made it, unverified: ``key sha256:<16 hex>`` or ``certificate <subject>``."""
    bundle = _oms_bundle(raw)
    if bundle.certificates:
        try:
            from cryptography import x509

            leaf = x509.load_der_x509_certificate(bundle.certificates[0])
            return f"certificate {leaf.subject.rfc4514_string()} (issued by {leaf.issuer.rfc4514_string()})"
        except (ImportError, ValueError):
            return "a certificate"
    hint = bundle.key_hint or ""
    if len(hint) == 64:
        return f"key sha256:{hint[:16]}"
    return f"key {hint[:24]}" if hint else "an unnamed key"
