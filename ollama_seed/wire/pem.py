"""PEM files and the optional ``cryptography`` dependency, shared by the key and certificate modules."""

from __future__ import annotations

import base64
import os

from ..core.errors import ConfigError, SeedError, SigningKeyError

__all__ = [
    "INSTALL_HINT",
    "MAX_PEM_FILE",
    "der_to_pem",
    "kind_of",
    "need_cryptography",
    "read_limited",
    "read_pem",
    "short",
]

MAX_PEM_FILE = 64 * 1024
INSTALL_HINT = "pip install 'ollama-seed[signing]' (from a source checkout: pip install '.[signing]')"


def need_cryptography(what: str = "signing and verifying signatures") -> None:
    """Raise a :class:`ConfigError` that says what to install when ``cryptography`` is missing."""
    try:
        import cryptography.hazmat.primitives.asymmetric.ec  # noqa: F401
    except ImportError:
        raise ConfigError(f"{what} needs the 'cryptography' package: {INSTALL_HINT}") from None


def read_pem(path: str | os.PathLike[str], what: str) -> bytes:
    """The bytes of a small PEM file (at most 64 KiB).

    Raises:
        SigningKeyError: it cannot be read, or is larger.
    """
    return read_limited(path, what, MAX_PEM_FILE, SigningKeyError)


def read_limited(path: str | os.PathLike[str], what: str, limit: int, error: type[SeedError]) -> bytes:
    """The bytes of a small file (a key, a certificate, a signature) of at most *limit* bytes.

    Raises:
        *error*: it cannot be read, or is larger.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path} is larger than {limit} bytes; it is not a {what}")
    return data


def kind_of(data: bytes) -> str:
    """What a PEM file holds: ``public``, ``certificate``, ``private``, ``openssh`` or ``unknown``,
    from the first BEGIN line it has that we know (``EC PARAMETERS`` before a key is passed over)."""
    found = [(data.find(tag), kind) for tag, kind in _TAGS if tag in data]
    return min(found)[1] if found else "unknown"


_TAGS = (
    (b"-----BEGIN PUBLIC KEY-----", "public"),
    (b"-----BEGIN CERTIFICATE-----", "certificate"),
    (b"-----BEGIN OPENSSH PRIVATE KEY-----", "openssh"),
    (b"-----BEGIN ENCRYPTED PRIVATE KEY-----", "private"),
    (b"-----BEGIN PRIVATE KEY-----", "private"),
    (b"-----BEGIN EC PRIVATE KEY-----", "private"),
    (b"-----BEGIN RSA PRIVATE KEY-----", "private"),
)


def short(exc: BaseException) -> str:
    """The first line of an exception's message, for ours."""
    return str(exc).split("\n", 1)[0][:160] or type(exc).__name__


def der_to_pem(der: bytes, label: str = "CERTIFICATE") -> str:
    """A DER document as PEM text (64-character base64 lines)."""
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
