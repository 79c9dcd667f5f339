"""Whom you trust, and the check of a signature against it (extra ``signing``: cryptography).

A :class:`Trust` holds public keys and CA certificates read from local files, never anything a
bundle or a registry brings. :meth:`Trust.verify` takes a parsed Sigstore bundle: with the key
method it tries the trusted keys the bundle's hint names (all of them when the hint is absent or
unknown); with the certificate method it validates the chain the bundle carries against the
trusted CAs (see :mod:`.certs`) and checks the signature with the leaf's key. A certificate whose
key is itself a trusted key is accepted as that key. It returns the :class:`Signer`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.dsse import SigstoreBundle
from ..core.errors import SignatureError
from ..core.layout import StrPath
from .keys import PublicKey
from .pem import need_cryptography

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["Signer", "Trust"]


@dataclass(frozen=True, slots=True)
class Signer:
    """Who made a signature that verified: a trusted key, or a certificate chaining to a trusted CA.

    *fingerprint* is the key's (``sha256:`` and 16 hex of the SHA-256 of its PEM, the OMS key id);
    *subject* and *issuer* are the certificate's, when it was one.
    """

    method: str
    fingerprint: str
    curve: str
    subject: str | None = None
    issuer: str | None = None

    def __str__(self) -> str:
        if self.method == "certificate":
            return f"certificate {self.subject} (issued by {self.issuer}; key {self.fingerprint})"
        return f"key {self.fingerprint} ({self.curve})"


class Trust:
    """Public keys and CA certificates you trust, from local files.

    Args:
        keys: public keys (``site.pub``).
        cas: CA certificates (``x509.Certificate``) a signing certificate must chain to.

    Raises:
        ValueError: neither keys nor CAs.
    """

    def __init__(self, keys: Sequence[PublicKey] = (), cas: Sequence[x509.Certificate] = ()) -> None:
        if not keys and not cas:
            raise ValueError("a Trust needs at least one public key or CA certificate")
        self.keys = tuple(keys)
        self.cas = tuple(cas)

    @classmethod
    def load(cls, keys: Iterable[StrPath] = (), cas: Iterable[StrPath] = ()) -> Trust:
        """Read public keys (PEM) and CA certificates (PEM, several per file) from local files.

        Raises:
            SigningKeyError: a file that is not what it should be (a private key given as a
                public one, a public key given as a CA, ...).
            ConfigError: ``cryptography`` is not installed.
            ValueError: no file at all.
        """
        need_cryptography()  # before any file is read: the missing package is the problem to report
        from .certs import load_cas

        key_paths, ca_paths = list(keys), list(cas)
        if not key_paths and not ca_paths:
            raise ValueError("name at least one public key or CA certificate to trust")
        return cls([PublicKey.load(p) for p in key_paths], load_cas(ca_paths) if ca_paths else ())

    def __repr__(self) -> str:
        return f"Trust({self.describe()})"

    def describe(self) -> str:
        parts = [f"key {k.fingerprint}" for k in self.keys]
        parts += [f"CA {c.subject.rfc4514_string()}" for c in self.cas]
        return ", ".join(parts)

    def verify(self, bundle: SigstoreBundle) -> Signer:
        """The signer of *bundle* if a key or CA you trust vouches for it.

        Raises:
            SignatureError: signed with a key or certificate you do not trust, or a signature that
                does not verify (the statement was altered, or the signature is damaged).
        """
        data = bundle.signed_bytes
        if bundle.certificates:
            return self._by_certificate(bundle.certificates, bundle.signatures, data)
        hinted = [k for k in self.keys if bundle.key_hint and k.matches(bundle.key_hint)]
        for key in hinted or self.keys:
            if any(key.verify(sig, data) for sig in bundle.signatures):
                return Signer("key", key.fingerprint, key.curve)
        if hinted:
            raise SignatureError(
                f"the signature names your trusted key {hinted[0].fingerprint} but does not verify with it: "
                "the signed statement was altered or the signature is damaged"
            )
        shown = f" (it names key {bundle.key_hint[:24]}...)" if bundle.key_hint else ""
        trusted = self.describe()
        if not self.keys:
            raise SignatureError(
                f"the signature is made with a plain key{shown}, and you trust only certificate authorities "
                f"({trusted}); trust the signer's public key with --trust"
            )
        raise SignatureError(f"the signature is not by a key you trust{shown}; you trust: {trusted}")

    def verify_raw(self, signature: bytes, data: bytes, certificates: Sequence[bytes] = ()) -> Signer:
        """Like :meth:`verify` for a bare signature over *data* (cosign's legacy simple signing)."""
        if certificates:
            return self._by_certificate(tuple(certificates), (signature,), data)
        for key in self.keys:
            if key.verify(signature, data):
                return Signer("key", key.fingerprint, key.curve)
        raise SignatureError(f"the signature is not by a key you trust ({self.describe()}), or it was altered")

    def _by_certificate(self, chain: tuple[bytes, ...], signatures: tuple[bytes, ...], data: bytes) -> Signer:
        from cryptography import x509

        from .certs import verify_chain

        try:
            leaf = x509.load_der_x509_certificate(chain[0])
        except ValueError:
            raise SignatureError("the signature carries a damaged certificate") from None
        leaf_key = leaf.public_key()
        for key in self.keys:  # the certificate of a key you trust: trusted as that key
            if key.key == leaf_key:
                if any(key.verify(sig, data) for sig in signatures):
                    return Signer("key", key.fingerprint, key.curve)
                raise SignatureError(f"the signature by {key.fingerprint} does not verify: it was altered or damaged")
        subject = leaf.subject.rfc4514_string() or "(no subject)"
        if not self.cas:
            raise SignatureError(
                f"the signature is made with the certificate {subject}; trust the CA that issued it with "
                "--trust-ca (you trust only keys: " + self.describe() + ")"
            )
        signer = verify_chain(chain, self.cas)
        key = PublicKey.from_pem(_pem(signer.public_key), f"the key of {subject}")
        if not any(key.verify(sig, data) for sig in signatures):
            raise SignatureError(
                f"the signature by {subject} does not verify: the signed statement was altered or the "
                "signature is damaged"
            )
        return Signer("certificate", key.fingerprint, key.curve, signer.subject, signer.issuer)


def _pem(public_key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
