"""A throwaway PKI for the provenance tests: keys, a root CA, an intermediate and leaves, written as PEM files."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Site"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    eku: list[x509.ObjectIdentifier] | None = None,
    key_usage: bool = True,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 30 * DAY,
) -> x509.Certificate:
    """A certificate for *key*, self-signed unless *issuer* (its name and key) is given."""
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def private_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Pki:
    """Files of a site PKI: root CA, intermediate, a code-signing leaf and its key."""

    root: Path
    intermediate: Path
    leaf: Path
    leaf_key: Path
    chain: Path
    root_key: ec.EllipticCurvePrivateKey
    inter_key: ec.EllipticCurvePrivateKey
    leaf_private: ec.EllipticCurvePrivateKey

    def issue(self, path: Path, **options: object) -> Path:
        """Another leaf for the same key, issued by the intermediate (expired, for TLS, ...)."""
        cert = certificate("Model Release", self.leaf_private, ("Site Intermediate CA", self.inter_key), **options)  # type: ignore[arg-type]
        path.write_bytes(pem(cert))
        return path


def make_pki(folder: Path, *, curve: ec.EllipticCurve | None = None) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    root_key = ec.generate_private_key(ec.SECP384R1())
    inter_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(curve or ec.SECP256R1())
    root = certificate("Site Root CA", root_key, ca=True)
    inter = certificate("Site Intermediate CA", inter_key, ("Site Root CA", root_key), ca=True)
    leaf = certificate(
        "Model Release", leaf_key, ("Site Intermediate CA", inter_key), eku=[ExtendedKeyUsageOID.CODE_SIGNING]
    )
    paths = {
        "root": folder / "root.pem",
        "intermediate": folder / "intermediate.pem",
        "leaf": folder / "leaf.pem",
        "leaf_key": folder / "leaf.key",
        "chain": folder / "chain.pem",
    }
    paths["root"].write_bytes(pem(root))
    paths["intermediate"].write_bytes(pem(inter))
    paths["leaf"].write_bytes(pem(leaf))
    paths["leaf_key"].write_bytes(private_pem(leaf_key))
    paths["chain"].write_bytes(pem(inter))
    return Pki(**paths, root_key=root_key, inter_key=inter_key, leaf_private=leaf_key)
