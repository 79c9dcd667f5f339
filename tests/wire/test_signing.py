"""Ollama key signing for private ollama.com models: the token request Ollama builds, signed with
~/.ollama/id_ed25519; the realm host check; a missing cryptography package."""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("cryptography", reason="the 'signing' extra is not installed")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import ollama_seed
from ollama_seed.core.auth import Challenge
from ollama_seed.core.errors import AuthenticationError
from ollama_seed.wire.signing import OllamaKeySigner, default_key_path, signed_data
from tests.support.fake_registry import FakeRegistry
from tests.support.model import make_model

# A throwaway key from 'ssh-keygen -t ed25519 -N pw' (passphrase-protected, which Ollama never writes).
ENCRYPTED_KEY = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABBhbvIhsX
5RjRi8rJexaon0AAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIJllUXX2Sm93pZ0/
iZh1vUUnIAFvEbl1NqYh1EiHgh5WAAAAkEvJmulg4AYr3r8oiJWfGbWK5Er+TXnj894Bx/
yLcSb2pHrEN7peDQmeZtS5L0cw8jnFoN6Zayp829OwDufFgCrrZlVGxVASpZOLAiu5mrBx
CFRrB4rBML9ST5jeZdVLVbhsxcLbSIR8dF+vN/sPQiO43wQsgHYD+I/C9cJsgoUtVlYf/M
gndatBC1ObPZ2xoA==
-----END OPENSSH PRIVATE KEY-----
"""
EMPTY_SHA256_HEX_B64 = "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="


def write_key_file(path: Path, key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> None:
    """*key* in OpenSSH's private key format, as ``ssh-keygen`` (and Ollama) write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    )


def write_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """A new Ed25519 key, as Ollama makes one, written to *path*."""
    private = ed25519.Ed25519PrivateKey.generate()
    write_key_file(path, private)
    return private


def challenge(realm: str = "https://registry.ollama.ai/token") -> Challenge:
    return Challenge("bearer", realm, "ollama.com", ("repository:private/m:pull",))


def test_signed_data_matches_ollama() -> None:
    assert base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode() == EMPTY_SHA256_HEX_B64
    assert signed_data("GET", "https://x/t?a=1") == f"GET,https://x/t?a=1,{EMPTY_SHA256_HEX_B64}".encode()


def test_token_request_is_built_and_signed_as_ollama_does(tmp_path: Path) -> None:
    key = write_key(tmp_path / "id_ed25519")
    signer = OllamaKeySigner(tmp_path / "id_ed25519", clock=lambda: 1700000000.7, nonce=lambda: b"\x01" * 16)
    url, headers = signer.token_request(
        challenge("https://registry.ollama.ai/token?z=1"), "registry.ollama.ai", "unused"
    )
    assert url == (
        "https://registry.ollama.ai/token?nonce=AQEBAQEBAQEBAQEBAQEBAQ"
        "&scope=repository%3Aprivate%2Fm%3Apull&service=ollama.com&ts=1700000000&z=1"
    )
    public, _, signature = headers["Authorization"].partition(":")
    assert not headers["Authorization"].startswith("Bearer")
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    blob = base64.b64decode(public)
    assert blob == struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + raw_public
    key.public_key().verify(base64.b64decode(signature), signed_data("GET", url))  # raises if wrong
    openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert signer.public_key == openssh.split()[1].decode()  # the id_ed25519.pub field


def test_realm_on_another_host_is_refused(tmp_path: Path) -> None:
    write_key(tmp_path / "k")
    signer = OllamaKeySigner(tmp_path / "k")
    with pytest.raises(AuthenticationError, match="does not match original host"):
        signer.token_request(challenge("https://ollama.com/token"), "registry.ollama.ai", "s")


def test_applies_only_to_ollama_hosts_with_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = OllamaKeySigner(tmp_path / "k")
    assert not signer.applies("registry.ollama.ai")
    write_key(tmp_path / "k")
    assert signer.applies("registry.ollama.ai") and signer.applies("ollama.com")
    assert not signer.applies("registry.example.com")
    assert default_key_path() == Path.home() / ".ollama" / "id_ed25519"
    monkeypatch.setenv("OLLAMA_SEED_SIGNING_KEY", str(tmp_path / "k"))
    assert default_key_path() == tmp_path / "k"


@pytest.mark.parametrize("kind", ["encrypted", "rsa", "garbage"])
def test_unusable_keys_are_clear_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "k"
    if kind == "encrypted":
        path.write_text(ENCRYPTED_KEY)
    elif kind == "rsa":
        write_key_file(path, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    else:
        path.write_text("not a key")
    with pytest.raises(AuthenticationError, match=str(path)):
        OllamaKeySigner(path).sign(b"x")


def test_missing_cryptography_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_key(tmp_path / "k")
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.ed25519", None)
    with pytest.raises(AuthenticationError, match=r"pip install 'ollama-seed\[signing\]'"):
        OllamaKeySigner(tmp_path / "k").sign(b"x")


class PrivateRegistry:
    """registry.ollama.ai as Ollama's client meets it for a private model: a token for a signed request."""

    def __init__(self, inner: FakeRegistry) -> None:
        self.inner = inner
        self.token_requests: list[httpx.Request] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            self.token_requests.append(request)
            public, _, signature = request.headers.get("authorization", "").partition(":")
            try:
                raw = base64.b64decode(public)[-32:]
                key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
                key.verify(base64.b64decode(signature), signed_data("GET", str(request.url)))
            except Exception:
                return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "sign it"}]})
            return httpx.Response(200, json={"token": "private-token"})
        if request.headers.get("authorization") != "Bearer private-token":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://registry.ollama.ai/token",'
                    'service="ollama.com",scope="repository:private/m:pull"'
                },
            )
        return await self.inner.handle(request)


@pytest.mark.anyio
async def test_private_pull_with_the_ollama_key(tmp_path: Path) -> None:
    model = make_model(size_bytes=50_000, seed=31)
    inner = FakeRegistry()
    inner.add("private/m", "latest", model)
    reg = PrivateRegistry(inner)
    with pytest.raises(AuthenticationError):  # no key yet: the token endpoint refuses
        await ollama_seed.apull("private/m", models_dir=tmp_path / "a", transport=httpx.MockTransport(reg.handle))
    write_key(Path.home() / ".ollama" / "id_ed25519")
    result = await ollama_seed.apull("private/m", models_dir=tmp_path / "b", transport=httpx.MockTransport(reg.handle))
    assert result.manifest_digest.hex == model.manifest_digest[7:]
    url = reg.token_requests[-1].url
    assert list(url.params.keys()) == ["nonce", "scope", "service", "ts"]
    assert url.params["scope"] == "repository:private/m:pull"
