"""Ollama's key signing, for private models on ollama.com (optional extra ``signing``: cryptography).

When registry.ollama.ai (or ollama.com) answers 401 with a Bearer challenge, Ollama asks the
token endpoint for a token and proves who it is with the ed25519 key at ``~/.ollama/id_ed25519``
(``server/auth.go``, ``auth/auth.go``):

1. the token URL is the realm plus the query ``service``, one ``scope`` per scope, ``ts`` (unix
   seconds) and ``nonce`` (16 random bytes, base64url without padding), keys sorted as Go's
   ``url.Values.Encode`` sorts them;
2. the realm must be on the registry's own host (Ollama refuses otherwise since v0.14.3);
3. it signs ``GET,<token URL>,<base64 of the hex sha256 of an empty body>`` with the key;
4. it sends ``Authorization: <public key, base64 of the SSH wire form>:<base64 signature>``
   (no ``Bearer``) and reads ``{"token": ...}`` back.

The key is the OpenSSH private key ``ollama serve`` creates (its ``.pub`` is what you add to your
ollama.com account). ``OLLAMA_SEED_SIGNING_KEY`` points elsewhere, e.g. the system service's
``/usr/share/ollama/.ollama/id_ed25519``. ``cryptography`` is imported only when a signature is needed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ..core.auth import Challenge
from ..core.errors import AuthenticationError
from .pem import INSTALL_HINT

__all__ = ["OLLAMA_HOSTS", "OllamaKeySigner", "default_key_path", "signed_data"]

OLLAMA_HOSTS = frozenset({"registry.ollama.ai", "ollama.com"})
KEY_ENV = "OLLAMA_SEED_SIGNING_KEY"
_EMPTY_BODY = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


def default_key_path(environ: dict[str, str] | None = None) -> Path:
    """``$OLLAMA_SEED_SIGNING_KEY``, else ``~/.ollama/id_ed25519`` (where ``ollama serve`` keeps it)."""
    env = os.environ if environ is None else environ
    value = env.get(KEY_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".ollama" / "id_ed25519"


def signed_data(method: str, url: str) -> bytes:
    """The bytes Ollama signs for a request with an empty body."""
    return f"{method},{url},{_EMPTY_BODY}".encode()


def _go_encode(pairs: list[tuple[str, str]]) -> str:
    """Go's ``url.Values.Encode``: keys sorted (stable), ``QueryEscape`` on both sides."""
    ordered = sorted(pairs, key=lambda kv: kv[0])
    return "&".join(f"{urllib.parse.quote_plus(k, safe='')}={urllib.parse.quote_plus(v, safe='')}" for k, v in ordered)


class OllamaKeySigner:
    """Signs token requests with an Ollama ed25519 key.

    Args:
        key_path: the OpenSSH private key; default :func:`default_key_path`.
        hosts: registry hosts to sign for (the key identifies you; it is not offered elsewhere).
        clock, nonce: for tests.
    """

    def __init__(
        self,
        key_path: str | os.PathLike[str] | None = None,
        *,
        hosts: Collection[str] = OLLAMA_HOSTS,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], bytes] = lambda: secrets.token_bytes(16),
    ) -> None:
        self.key_path = Path(key_path).expanduser() if key_path is not None else default_key_path()
        self.hosts = frozenset(hosts)
        self._clock, self._nonce = clock, nonce
        self._key: Any = None
        self._public = ""

    def applies(self, host: str) -> bool:
        """True when *host* is one we sign for and the key file exists."""
        return host in self.hosts and self.key_path.is_file()

    def _load(self) -> None:
        if self._key is not None:
            return
        try:
            from cryptography.exceptions import UnsupportedAlgorithm
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        except ImportError:
            raise AuthenticationError(
                "this registry wants a request signed with your Ollama key, which needs the 'cryptography' "
                f"package: {INSTALL_HINT}"
            ) from None
        try:
            data = self.key_path.read_bytes()
        except OSError as exc:
            raise AuthenticationError(f"cannot read the Ollama key {self.key_path}: {exc.strerror or exc}") from None
        try:
            key = serialization.load_ssh_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise AuthenticationError(
                f"{self.key_path} is not an unencrypted OpenSSH private key ({exc}); "
                "it should be the key 'ollama serve' created"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuthenticationError(f"{self.key_path} is not an ed25519 key; Ollama signs with ed25519")
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        self._key, self._public = key, line.split()[1].decode()

    @property
    def public_key(self) -> str:
        """The key's public half as in ``id_ed25519.pub`` without the type (``AAAAC3Nza...``).

        Raises:
            AuthenticationError: no usable key, or cryptography is missing.
        """
        self._load()
        return self._public

    def sign(self, data: bytes) -> str:
        """``<public key>:<base64 signature>``, Ollama's Authorization value.

        Raises:
            AuthenticationError: no usable key, or cryptography is missing.
        """
        self._load()
        signature: bytes = self._key.sign(data)
        return f"{self._public}:{base64.b64encode(signature).decode()}"

    def token_url(self, challenge: Challenge, default_scope: str) -> str:
        """The realm with ``service``, ``scope``, ``ts`` and ``nonce``, encoded as Ollama does."""
        parts = urllib.parse.urlsplit(challenge.realm)
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        pairs.append(("service", challenge.service or ""))
        pairs.extend(("scope", s) for s in (challenge.scopes or (default_scope,)))
        pairs.append(("ts", str(int(self._clock()))))
        pairs.append(("nonce", base64.urlsafe_b64encode(self._nonce()).decode().rstrip("=")))
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, _go_encode(pairs), ""))

    def token_request(self, challenge: Challenge, registry_host: str, default_scope: str) -> tuple[str, dict[str, str]]:
        """The signed token request for *challenge*: ``(url, headers)``.

        Raises:
            AuthenticationError: the realm is on another host, or the key cannot be used.
        """
        realm_host = urllib.parse.urlsplit(challenge.realm).netloc
        if realm_host != registry_host:
            raise AuthenticationError(
                f"realm host {realm_host!r} does not match original host {registry_host!r}; "
                "ollama-seed does not send your Ollama key's signature to another host (Ollama refuses too)",
                url=challenge.realm,
                status=401,
            )
        url = self.token_url(challenge, default_scope)
        return url, {"Authorization": self.sign(signed_data("GET", url))}
