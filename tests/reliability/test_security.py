"""Security: TLS always verified, plain http only when asked, credentials stay home, Ollama's file modes.

- TLS: a throw-away CA signs a certificate for 127.0.0.1; the fake registry serves it with uvicorn.
  Without the CA the CLI fails with exit 4 and names SSL_CERT_FILE; with SSL_CERT_FILE it works.
  A plain-http registry is only spoken to with ``--insecure``.
- Authorization goes to the registry's own host over https only: never to a CDN, another port,
  or a plain-http downgrade of the same host; credentials never go to a plain-http token endpoint.
- Tokens, passwords and their base64 never appear in ``-vv`` logs or in error messages.
- Files are 0644 and directories 0755 under ``blobs/`` and ``manifests/`` whatever the umask;
  ``.ollama-seed/`` and its staging files are private.
"""

from __future__ import annotations

import base64
import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

import ollama_seed
from ollama_seed import AuthenticationError, ModelName, ModelStore, TransferError
from ollama_seed.pulling.session import PullSession
from ollama_seed.wire.transfer import TransferConfig
from tests.support import MIB
from tests.support.asgi import RegistryServer
from tests.support.cli import run_cli
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.invariants import assert_store_ok, tree
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry
from tests.support.tls import CertFiles

REPO = "library/secure"
TOKEN = "tok-3f9a8c1d2e7b6a5948372615aabbccdd"
USER, PASSWORD = "alice", "pw-9c8b7a6f5e4d3c2b1a0"


@pytest.fixture(scope="module")
def model() -> BuiltModel:
    return make_model(size_bytes=MIB + 7, seed=51)


def registry(model: BuiltModel, faults: Faults | None = None) -> FakeRegistry:
    reg = FakeRegistry(faults)
    reg.add(REPO, "latest", model)
    return reg


@pytest.fixture
def tls_registry(certs: CertFiles, model: BuiltModel) -> Iterator[tuple[RegistryServer, FakeRegistry]]:
    reg = registry(model, Faults(token=TOKEN))
    with RegistryServer(reg, certs=certs) as srv:
        yield srv, reg


def pull_args(models: Path, name: str, *extra: str) -> list[str]:
    return ["pull", "--progress", "plain", "--models-dir", str(models), *extra, name]


def secrets_in(text: str) -> list[str]:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return [s for s in (TOKEN, PASSWORD, basic) if s in text]


# --------------------------------------------------------------------------- TLS


def test_tls_is_verified_and_the_error_names_ssl_cert_file(
    tls_registry: tuple[RegistryServer, FakeRegistry], tmp_path: Path
) -> None:
    srv, reg = tls_registry
    models = tmp_path / "models"
    proc = run_cli(*pull_args(models, f"{srv.host}/{REPO}"))
    assert proc.returncode == 4, proc.stderr
    assert "SSL_CERT_FILE" in proc.stderr
    assert "could not be verified" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert reg.requests == []  # not one HTTP request went over the unverified connection
    assert tree(models) == {}


def test_a_custom_ca_bundle_is_trusted_through_ssl_cert_file(
    tls_registry: tuple[RegistryServer, FakeRegistry], certs: CertFiles, model: BuiltModel, tmp_path: Path
) -> None:
    srv, reg = tls_registry
    models = tmp_path / "models"
    proc = run_cli(*pull_args(models, f"{srv.host}/{REPO}"), env={"SSL_CERT_FILE": str(certs.ca)})
    assert proc.returncode == 0, proc.stderr
    expected = tmp_path / "expected"
    model.expected_store(expected, srv.host, REPO, "latest")
    assert tree(models) == tree(expected)
    assert all(u.startswith("https://") for _, u, _ in reg.requests)


def test_plain_http_only_for_a_registry_marked_insecure(model: BuiltModel, tmp_path: Path) -> None:
    reg = registry(model)
    with RegistryServer(reg) as srv:  # plain http
        refused = run_cli(*pull_args(tmp_path / "a", f"{srv.host}/{REPO}"))
        assert refused.returncode == 4, refused.stderr
        assert reg.requests == []  # https was tried; no request went out in clear text
        allowed = run_cli(*pull_args(tmp_path / "b", f"{srv.host}/{REPO}", "--insecure"))
        assert allowed.returncode == 0, allowed.stderr
    assert tree(tmp_path / "a") == {}
    assert_store_ok(tmp_path / "b")
    assert reg.requests and all(u.startswith("http://") for _, u, _ in reg.requests)


def test_an_untrusted_certificate_is_not_retried(models_dir: Path) -> None:
    """Regression: the manifest GET retried a certificate failure four times, with backoff, for nothing."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url)
        cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
        cause.verify_message = "self-signed certificate"
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from cause

    with pytest.raises(TransferError, match="SSL_CERT_FILE") as info:
        ollama_seed.pull(f"reg.test/{REPO}", models_dir=models_dir, transport=httpx.MockTransport(handler))
    assert info.value.exit_code == 4
    assert len(calls) == 1


# --------------------------------------------------------------------------- Authorization stays home


@pytest.mark.parametrize(
    "target",
    ["https://cdn.test", "https://reg.test:8443", "http://reg.test"],
    ids=["another-host", "another-port", "http-downgrade-same-host"],
)
def test_authorization_never_follows_a_redirect_elsewhere(target: str, model: BuiltModel, models_dir: Path) -> None:
    reg = registry(model, Faults(token=TOKEN))
    elsewhere: list[dict[str, str]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.host == "reg.test" and url.scheme == "https" and url.port is None and "/blobs/" in url.path:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return await reg.handle(request)  # the 401 challenge
            return httpx.Response(307, headers={"Location": f"{target}{url.path}"})
        if "/blobs/" in url.path:  # the redirect target: record, then serve like a public CDN
            elsewhere.append({k.lower(): v for k, v in request.headers.items()})
            return await reg.handle(
                httpx.Request(
                    "GET",
                    f"https://reg.test{url.path}",
                    headers={**request.headers, "Authorization": f"Bearer {TOKEN}"},
                )
            )
        return await reg.handle(request)

    ollama_seed.pull(f"reg.test/{REPO}", models_dir=models_dir, transport=httpx.MockTransport(handler))
    assert elsewhere, "no request reached the redirect target"
    assert all("authorization" not in h for h in elsewhere)
    own = [h for _, u, h in reg.requests if u.startswith("https://reg.test/v2/") and "/manifests/" in u]
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in own)  # the token was in use at home
    assert_store_ok(models_dir)


def test_credentials_never_go_to_a_plain_http_token_endpoint(model: BuiltModel, models_dir: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.test/token",service="x"'})

    with pytest.raises(AuthenticationError, match="plain-http token endpoint"):
        ollama_seed.pull(
            f"reg.test/{REPO}",
            models_dir=models_dir,
            transport=httpx.MockTransport(handler),
            credentials=lambda host: (USER, PASSWORD),
        )
    assert all(r.url.host != "auth.test" for r in seen)
    assert all("authorization" not in r.headers for r in seen)


def test_tokens_and_passwords_never_in_logs_or_errors(
    tls_registry: tuple[RegistryServer, FakeRegistry], certs: CertFiles, tmp_path: Path
) -> None:
    srv, reg = tls_registry
    env = {"SSL_CERT_FILE": str(certs.ca), "OLLAMA_SEED_REGISTRY_USER": USER, "OLLAMA_SEED_REGISTRY_PASSWORD": PASSWORD}
    ok = run_cli("-vv", *pull_args(tmp_path / "models", f"{srv.host}/{REPO}"), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "HTTP Request" in ok.stderr  # -vv really logged the HTTP traffic
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h in reg.requests)  # the token was used
    missing = run_cli("-vv", *pull_args(tmp_path / "models", f"{srv.host}/library/absent"), env=env)
    assert missing.returncode == 3, missing.stderr
    for out in (ok.stdout, ok.stderr, missing.stdout, missing.stderr):
        assert secrets_in(out) == []


def test_a_refused_token_request_does_not_echo_credentials(
    model: BuiltModel, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "access denied"}]})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://reg.test/token",service="x"'})

    caplog.set_level("DEBUG")
    with pytest.raises(AuthenticationError) as info:
        ollama_seed.pull(
            f"reg.test/{REPO}",
            models_dir=models_dir,
            transport=httpx.MockTransport(handler),
            credentials=lambda host: (USER, PASSWORD),
        )
    assert info.value.exit_code == 7
    assert secrets_in(str(info.value)) == []
    assert secrets_in(caplog.text) == []


# --------------------------------------------------------------------------- file modes


def _modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): stat.S_IMODE(os.lstat(p).st_mode) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask", [0o077, 0o000, 0o022], ids=["umask-077", "umask-000", "umask-022"])
def test_file_modes_are_ollamas_whatever_the_umask(umask: int, model: BuiltModel, models_dir: Path) -> None:
    old = os.umask(umask)
    try:
        ollama_seed.pull(f"reg.test/{REPO}", models_dir=models_dir, transport=registry(model).transport())
    finally:
        os.umask(old)
    modes = _modes(models_dir)
    for rel, mode in modes.items():
        if rel == "." or rel.startswith(".ollama-seed"):
            continue
        assert mode == (0o755 if (models_dir / rel).is_dir() else 0o644), (rel, oct(mode))
    for d in (".ollama-seed", ".ollama-seed/staging", ".ollama-seed/locks", ".ollama-seed/tmp"):
        assert modes[d] == 0o700, (d, oct(modes[d]))
    assert_store_ok(models_dir, modes=True)


def test_staging_files_are_private(model: BuiltModel, models_dir: Path) -> None:
    reg = registry(model, Faults(drop_after=300_000, drops=100, blob_filter=model.model_layer.hex))
    old = os.umask(0)
    try:

        async def go() -> None:
            cfg = TransferConfig(connections=1, max_attempts=1, sleep=lambda s: None)
            async with PullSession(ModelStore(models_dir), transport=reg.transport(), transfer=cfg) as session:
                await session.pull(ModelName.parse(f"reg.test/{REPO}"))

        with pytest.raises(TransferError):
            anyio.run(go)
    finally:
        os.umask(old)
    staged = list((models_dir / ".ollama-seed" / "staging").iterdir())
    assert {p.suffix for p in staged} == {".data", ".state"}
    assert all(stat.S_IMODE(os.lstat(p).st_mode) & 0o077 == 0 for p in staged), [
        (p.name, oct(p.stat().st_mode)) for p in staged
    ]


# --------------------------------------------------------------------------- signed URLs in -vv logs


@pytest.mark.registry
def test_signed_storage_urls_never_reach_the_log(
    docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path
) -> None:
    """Regression: at -vv httpx logged each request URL and httpcore each response head, signed query and all."""
    seed_registry(docker_registry.url, REPO, "latest", model)
    with ProxyThread(docker_registry.url, redirect_blobs_to="http://localhost:{port}", cdn_expire_after=1000) as p:
        proc = run_cli("-vv", *pull_args(tmp_path / "models", f"{p.url.removeprefix('http://')}/{REPO}", "--insecure"))
        assert p.stats.snapshot()["redirects"] > 0
    assert proc.returncode == 0, proc.stderr
    assert "?<redacted>" in proc.stderr  # the storage URLs were logged, without their query
    assert "seed_token=" not in proc.stderr
    assert "seed_cdn=" not in proc.stderr


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (
            'HTTP Request: GET https://cdn.test/b?X-Amz-Signature=0a1b2c3d&X-Amz-Credential=AKIA "HTTP/1.1 200 OK"',
            "0a1b2c3d",
        ),
        (f"(b'Location', b'https://cdn.test/blob/x?sig={TOKEN}')", TOKEN),
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (
            f"{{'authorization': 'Basic {base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()}'}}",
            base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        ),
    ],
    ids=["signed-url", "location-header", "bearer", "basic"],
)
def test_redact_masks_queries_and_authorization(line: str, secret: str) -> None:
    from ollama_seed.core.redact import redact

    assert secret not in redact(line)
    assert redact("GET https://reg.test/v2/library/m/manifests/latest") == (
        "GET https://reg.test/v2/library/m/manifests/latest"
    )
