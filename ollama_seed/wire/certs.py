"""Certificate chains for provenance: a site CA as the second way to say whom you trust.

Signing with ``--cert`` puts the signer's certificate and its intermediates (leaf first) in each
signature, as OpenSSF Model Signing's certificate method does. Verifying with ``--trust-ca``
builds a path from that leaf to one of the CA certificates you gave (never to one the signature
brings) with ``cryptography.x509.verification``, the RFC 5280 path validation sigstore-python
uses, at the current time: an expired or not-yet-valid leaf is refused (the OMS specification
wants the leaf within its validity; the upstream Python verifier checks it as of the leaf's
notBefore only). The leaf must be for signing: a KeyUsage with digitalSignature, or an
ExtendedKeyUsage with codeSigning, and no ExtendedKeyUsage that leaves codeSigning out (a TLS
server certificate is not a code-signing one). Revocation (CRL, OCSP) is not checked: an
air-gapped host cannot reach either.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import SignatureError, SigningKeyError
from ..core.layout import StrPath
from .pem import kind_of, need_cryptography, read_pem, short

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["CertificateSigner", "load_cas", "signing_chain", "verify_chain"]

MAX_CHAIN = 10


@dataclass(frozen=True, slots=True)
class CertificateSigner:
    """Who signed, as a verified chain says: the leaf's subject, its issuer, and the CA it chains to."""

    subject: str
    issuer: str
    root: str
    public_key: Any


def _load_pem_certs(path: StrPath, what: str) -> list[x509.Certificate]:
    need_cryptography()
    from cryptography import x509

    data = read_pem(path, what)
    kind = kind_of(data)
    if kind == "public":
        raise SigningKeyError(
            f"{path} is a public key, not a certificate; a key is trusted with --trust, not --trust-ca"
        )
    if kind in ("private", "openssh"):
        raise SigningKeyError(f"{path} is a private key, not a certificate")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise SigningKeyError(f"{path} is not a PEM certificate ({short(exc)})") from None
    if len(certs) > MAX_CHAIN * 10:
        raise SigningKeyError(f"{path} holds {len(certs)} certificates; that is not a CA file")
    return certs


def load_cas(paths: Iterable[StrPath]) -> tuple[x509.Certificate, ...]:
    """The trusted CA certificates in *paths* (PEM, several per file allowed).

    Raises:
        SigningKeyError: a file that is not PEM certificates (a public key, a private key, ...).
    """
    out: list[x509.Certificate] = []
    for path in paths:
        out.extend(_load_pem_certs(path, "CA certificate"))
    return tuple(out)


def _usage_problem(cert: x509.Certificate) -> str | None:
    """Why *cert* may not sign code or models; None when it may."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key_usage: x509.KeyUsage | None = None
    eku: x509.ExtendedKeyUsage | None = None
    with contextlib.suppress(x509.ExtensionNotFound):
        key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    with contextlib.suppress(x509.ExtensionNotFound):
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    if key_usage is not None and not key_usage.digital_signature:
        return "its KeyUsage does not allow digitalSignature"
    if eku is not None and not (
        {ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(eku)
    ):
        shown = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku)
        return f"its ExtendedKeyUsage ({shown}) does not include codeSigning"
    if key_usage is None and eku is None:
        return "it states no KeyUsage or ExtendedKeyUsage for signing"
    return None


def _validity_problem(cert: x509.Certificate, now: datetime.datetime) -> str | None:
    if now < cert.not_valid_before_utc:
        return f"it is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    if now > cert.not_valid_after_utc:
        return f"it expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


def signing_chain(public_key: Any, certificate: StrPath, chain: StrPath | None) -> tuple[bytes, ...]:
    """The DER certificates to carry in signatures, leaf first, checked against the signing key.

    Raises:
        SigningKeyError: not the key's certificate, not valid now, or not for signing.
    """
    from cryptography.hazmat.primitives import serialization

    certs = _load_pem_certs(certificate, "certificate")
    if chain is not None:
        certs.extend(_load_pem_certs(chain, "certificate chain"))
    if len(certs) > MAX_CHAIN:
        raise SigningKeyError(f"the certificate chain has {len(certs)} certificates; at most {MAX_CHAIN} are carried")
    leaf = certs[0]
    if leaf.public_key() != public_key:
        raise SigningKeyError(f"{certificate} is the certificate of another key, not of the signing key given")
    now = datetime.datetime.now(datetime.timezone.utc)
    problem = _validity_problem(leaf, now) or _usage_problem(leaf)
    if problem:
        raise SigningKeyError(f"{certificate} cannot sign: {problem}")
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)


def verify_chain(
    chain: Sequence[bytes], roots: Sequence[x509.Certificate], *, now: datetime.datetime | None = None
) -> CertificateSigner:
    """Check a signature's certificates (DER, leaf first) against the trusted *roots*.

    Raises:
        SignatureError: no path to a trusted CA, a leaf not valid at *now*, or not for signing.
    """
    need_cryptography()
    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

    if not chain or len(chain) > MAX_CHAIN:
        raise SignatureError(f"the signature carries {len(chain)} certificates; expected 1 to {MAX_CHAIN}")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError as exc:
        raise SignatureError(f"the signature carries a damaged certificate ({short(exc)})") from None
    leaf = certs[0]
    when = now or datetime.datetime.now(datetime.timezone.utc)
    subject = leaf.subject.rfc4514_string() or "(no subject)"
    problem = _validity_problem(leaf, when)
    if problem:
        raise SignatureError(f"the signing certificate {subject} is not valid now: {problem}")
    problem = _usage_problem(leaf)
    if problem:
        raise SignatureError(f"the signing certificate {subject} is not for signing: {problem}")
    # Client verifiers want clientAuth and a SubjectAlternativeName by default; a code-signing leaf has
    # neither necessarily, and its usage was checked above (the rest of the web-PKI profile stays).
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(when)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, certs[1:])
    except (VerificationError, ValueError) as exc:
        raise SignatureError(
            f"the signing certificate {subject} does not chain to a CA you trust ({short(exc)})"
        ) from None
    path = verified.chain
    return CertificateSigner(
        subject, leaf.issuer.rfc4514_string(), path[-1].subject.rfc4514_string(), leaf.public_key()
    )
