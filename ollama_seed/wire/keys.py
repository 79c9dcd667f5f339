"""Keys for provenance signatures: ECDSA P-256 (the default) or P-384, in the PEM files OpenSSL reads.

A private key is PKCS#8 PEM, encrypted with a passphrase (PBES2: PBKDF2-HMAC-SHA256 and
AES-256-CBC, what ``openssl pkcs8 -topk8 -v2 aes256`` writes); keys made by ``openssl ecparam
-genkey`` (SEC 1, with or without the ``EC PARAMETERS`` block) and unencrypted PKCS#8 keys are
read too. A public key is a SubjectPublicKeyInfo PEM. The passphrase comes from a file or from
``$OLLAMA_SEED_KEY_PASSWORD``, never from the command line, and is never logged or shown.

The hash goes with the curve (P-256/SHA-256, P-384/SHA-384, P-521/SHA-512), as OpenSSF Model
Signing and cosign choose it. Ed25519 and RSA are refused: the OMS key method and FIPS-minded
sites accept neither here. ``cryptography`` (the extra ``signing``) is imported on first use.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..core.errors import SigningKeyError
from ..core.layout import StrPath
from .pem import INSTALL_HINT, MAX_PEM_FILE, kind_of, need_cryptography, read_pem, short

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "CURVES",
    "KEY_PASSWORD_ENV",
    "Curve",
    "PublicKey",
    "SigningKey",
    "INSTALL_HINT",
    "need_cryptography",
    "read_passphrase",
]

KEY_PASSWORD_ENV = "OLLAMA_SEED_KEY_PASSWORD"
Curve = Literal["p256", "p384"]
CURVES: dict[str, str] = {"p256": "secp256r1", "p384": "secp384r1"}
_SHOWN = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_HASH_BITS = {"secp256r1": 256, "secp384r1": 384, "secp521r1": 512}


def read_passphrase(file: StrPath | None = None, *, environ: dict[str, str] | None = None) -> bytes | None:
    """The passphrase from *file* (its first line), else from ``$OLLAMA_SEED_KEY_PASSWORD``; None if neither.

    Raises:
        SigningKeyError: the file cannot be read or holds no passphrase.
    """
    if file is not None:
        try:
            data = Path(file).read_bytes()[:MAX_PEM_FILE]
        except OSError as exc:
            raise SigningKeyError(f"cannot read the passphrase file {file}: {exc.strerror or exc}") from None
        line = data.split(b"\n", 1)[0].rstrip(b"\r")
        if not line:
            raise SigningKeyError(f"the passphrase file {file} is empty; put the passphrase on its first line")
        return line
    env = os.environ if environ is None else environ
    value = env.get(KEY_PASSWORD_ENV)
    return value.encode() if value else None


def _hash(curve: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    bits = _HASH_BITS[curve]
    return hashes.SHA256() if bits == 256 else hashes.SHA384() if bits == 384 else hashes.SHA512()


def _check_ec(key: Any, where: str, kind: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        algorithm = type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "")
        raise SigningKeyError(
            f"{where} is an {algorithm or 'unknown'} {kind}; provenance signatures use ECDSA P-256 or P-384 "
            "(what OpenSSF Model Signing and cosign accept): make a key with 'ollama-seed keygen'"
        )
    if key.curve.name not in _SHOWN:
        raise SigningKeyError(
            f"{where} is an ECDSA key on the curve {key.curve.name}; use P-256 or P-384 ('ollama-seed keygen')"
        )


@dataclass(frozen=True, slots=True, eq=False)
class PublicKey:
    """A public key to verify signatures with; *source* names where it came from (for messages)."""

    pem: bytes
    key: ec.EllipticCurvePublicKey = field(repr=False)
    source: str = ""

    @classmethod
    def load(cls, path: StrPath) -> PublicKey:
        """A SubjectPublicKeyInfo PEM file (``site.pub``, ``openssl ec -pubout``).

        Raises:
            SigningKeyError: unreadable, a private key or a certificate, or not ECDSA P-256/P-384/P-521.
            ConfigError: ``cryptography`` is not installed.
        """
        return cls.from_pem(read_pem(path, "public key"), str(path))

    @classmethod
    def from_pem(cls, data: bytes, source: str = "the public key") -> PublicKey:
        need_cryptography()
        from cryptography.hazmat.primitives import serialization

        kind = kind_of(data)
        if kind in ("private", "openssh"):
            raise SigningKeyError(
                f"{source} is a private key; trust the public key instead (the .pub file 'ollama-seed keygen' "
                "wrote, or 'openssl ec -pubout'), and keep the private key off the verifying host"
            )
        if kind == "certificate":
            raise SigningKeyError(
                f"{source} is a certificate; give a certificate authority with --trust-ca, or a public key with --trust"
            )
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{source} is not a PEM public key ({short(exc)})") from None
        _check_ec(key, source, "public key")
        assert not isinstance(key, (bytes, str))
        pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return cls(pem, key, source)  # type: ignore[arg-type]

    @property
    def curve(self) -> str:
        """``P-256``, ``P-384`` or ``P-521``."""
        return _SHOWN[self.key.curve.name]

    @property
    def oms_hint(self) -> str:
        """The key's id in an OMS signature: hex SHA-256 of the PEM (``publicKey.hint``)."""
        return hashlib.sha256(self.pem).hexdigest()

    @property
    def cosign_hint(self) -> str:
        """The key's id in a cosign bundle: base64 SHA-256 of the DER SubjectPublicKeyInfo."""
        from cryptography.hazmat.primitives import serialization

        der = self.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(der).digest()).decode()

    @property
    def fingerprint(self) -> str:
        """What ``bundle ls`` and messages show: ``sha256:`` and the first 16 hex of :attr:`oms_hint`."""
        return f"sha256:{self.oms_hint[:16]}"

    def matches(self, hint: str) -> bool:
        return hint in (self.oms_hint, self.cosign_hint)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when *signature* (DER ECDSA) is this key's over *data*, hashed as the curve wants."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self.key.verify(signature, data, ec.ECDSA(_hash(self.key.curve.name)))
        except (InvalidSignature, ValueError):
            return False
        return True


class SigningKey:
    """An ECDSA private key to sign with; *certificates* (DER, leaf first) for the certificate method."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, *, source: str = "", certificates: tuple[bytes, ...] = ()):
        _check_ec(key, source or "the key", "private key")
        self._key = key
        self.source = source
        self.certificates = certificates

    def __repr__(self) -> str:
        return f"SigningKey({self.source or 'in memory'}, {self.public_key.curve}, {self.public_key.fingerprint})"

    @classmethod
    def generate(cls, curve: Curve = "p256") -> SigningKey:
        """A new random key on *curve* (``p256`` or ``p384``)."""
        need_cryptography("making a key")
        from cryptography.hazmat.primitives.asymmetric import ec

        if curve not in CURVES:
            raise ValueError(f"curve must be 'p256' or 'p384', not {curve!r}")
        named = ec.SECP256R1() if curve == "p256" else ec.SECP384R1()
        return cls(ec.generate_private_key(named), source=f"a new {_SHOWN[named.name]} key")

    @classmethod
    def load(
        cls,
        path: StrPath,
        passphrase: bytes | str | None = None,
        *,
        certificate: StrPath | None = None,
        chain: StrPath | None = None,
    ) -> SigningKey:
        """Read a PEM private key; with *certificate* (and *chain*), sign with the certificate method.

        Args:
            passphrase: for an encrypted key; see :func:`read_passphrase` for where the CLI takes it from.
            certificate: the key's certificate (PEM); more certificates after it in the same file
                are taken as its chain, leaf first.
            chain: intermediate certificates (PEM) to carry in each signature.

        Raises:
            SigningKeyError: an unreadable key, a missing or wrong passphrase, a public key or
                certificate given as the key, a key that is not ECDSA P-256/P-384/P-521, or a
                certificate that is not the key's, not valid now, or not for signing.
            ConfigError: ``cryptography`` is not installed.
        """
        need_cryptography()
        from cryptography.hazmat.primitives import serialization

        where = str(path)
        data = read_pem(path, "signing key")
        kind = kind_of(data)
        if kind == "public":
            raise SigningKeyError(
                f"{where} is a public key; signing needs the private key (the .key file 'ollama-seed keygen' wrote)"
            )
        if kind == "certificate":
            raise SigningKeyError(
                f"{where} is a certificate; give the private key with --key and this file with --cert"
            )
        if kind == "openssh":
            raise SigningKeyError(
                f"{where} is an OpenSSH key (such as Ollama's id_ed25519); provenance signatures need an ECDSA "
                "P-256 or P-384 PEM key: make one with 'ollama-seed keygen'"
            )
        secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
        try:
            key = serialization.load_pem_private_key(data, secret or None)
        except TypeError as exc:
            if "not encrypted" in str(exc):  # a passphrase for a plain key: use the key as it is
                key = serialization.load_pem_private_key(data, None)
            else:
                raise SigningKeyError(
                    f"{where} is encrypted: give its passphrase in a file (--key-password-file FILE) or in "
                    f"${KEY_PASSWORD_ENV}"
                ) from None
        except ValueError as exc:
            if b"ENCRYPTED" in data and secret:
                raise SigningKeyError(
                    f"wrong passphrase for {where} (or the key file is damaged); check --key-password-file "
                    f"or ${KEY_PASSWORD_ENV}"
                ) from None
            raise SigningKeyError(f"{where} is not a PEM private key ({short(exc)})") from None
        except Exception as exc:  # cryptography's UnsupportedAlgorithm and the like
            raise SigningKeyError(f"{where} cannot be used as a signing key ({short(exc)})") from None
        _check_ec(key, where, "private key")
        certs: tuple[bytes, ...] = ()
        if certificate is not None or chain is not None:
            from .certs import signing_chain

            if certificate is None:
                raise SigningKeyError("--cert-chain needs --cert, the key's own certificate")
            certs = signing_chain(key.public_key(), certificate, chain)
        return cls(key, source=where, certificates=certs)  # type: ignore[arg-type]

    @property
    def public_key(self) -> PublicKey:
        from cryptography.hazmat.primitives import serialization

        pub = self._key.public_key()
        pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return PublicKey(pem, pub, f"the public key of {self.source}")

    def sign(self, data: bytes) -> bytes:
        """A DER ECDSA signature over *data*, hashed as the curve wants."""
        from cryptography.hazmat.primitives.asymmetric import ec

        return self._key.sign(data, ec.ECDSA(_hash(self._key.curve.name)))

    def save(self, key_path: StrPath, pub_path: StrPath, passphrase: bytes | None, *, overwrite: bool = False) -> None:
        """Write the private key (PKCS#8 PEM, mode 0600; encrypted unless *passphrase* is None) and the public key.

        Raises:
            SigningKeyError: a file exists (without *overwrite*) or cannot be written.
        """
        from cryptography.hazmat.primitives import serialization

        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        private = self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        for path in (key_path, pub_path):
            if not overwrite and os.path.lexists(path):
                raise SigningKeyError(f"{path} exists; choose another name, or pass --force to replace it")
        _write(key_path, private, 0o600, overwrite)
        _write(pub_path, self.public_key.pem, 0o644, overwrite)


def _write(path: StrPath, data: bytes, mode: int, overwrite: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        raise SigningKeyError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        raise SigningKeyError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
