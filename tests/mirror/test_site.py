"""The mirror as a site runs it, in process: logins (htpasswd, tokens), per-repository access,
failed-login limits, signed redirects, /healthz /readyz /metrics, the JSON log format."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ollama_seed.cli.logjson import JsonFormatter
from ollama_seed.core.errors import ConfigError
from ollama_seed.mirror.auth import AccessRules, FailureLimiter, Htpasswd, StaticTokens
from ollama_seed.mirror.factory import create_app
from ollama_seed.mirror.site import SiteApp
from tests.support.mirror import write_htpasswd
from tests.support.model import BuiltModel, make_model

pytestmark = pytest.mark.anyio
PASSWORDS = {"alice": "wonder-land-7", "bob": "builder:with:colons"}


@pytest.fixture
def models() -> dict[str, BuiltModel]:
    return {
        "library/tiny": make_model(size_bytes=300_001, seed=3),
        "team/secret": make_model(size_bytes=70_000, seed=4),
    }


@pytest.fixture
def store_dir(tmp_path: Path, models: dict[str, BuiltModel]) -> Path:
    root = tmp_path / "store"
    for repo, model in models.items():
        model.expected_store(root, "registry.ollama.ai", repo, "latest")
    return root


@pytest.fixture
def site_files(tmp_path: Path) -> dict[str, Path]:
    access = tmp_path / "access.toml"
    access.write_text('[read]\nalice = ["library/*", "team/*"]\nbob = ["Library/T*"]\nci = ["*"]\n"*" = []\n')
    tokens = tmp_path / "tokens"
    tokens.write_text(
        "# CI runners\nci:plain-token-123\nops:sha256:" + hashlib.sha256(b"hashed-token").hexdigest() + "\n"
    )
    return {"htpasswd": write_htpasswd(tmp_path / "htpasswd", PASSWORDS), "access": access, "tokens": tokens}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def site(store_dir: Path, site_files: dict[str, Path]) -> AsyncIterator[tuple[SiteApp, httpx.AsyncClient]]:
    app = create_app(
        store_dir,
        htpasswd=site_files["htpasswd"],
        token_file=site_files["tokens"],
        access=site_files["access"],
        login_failures=(4, 60.0),
    )
    async with (
        app,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app, client=("10.1.2.3", 5000)), base_url="http://mirror.test"
        ) as c,
    ):
        yield app, c


async def test_no_or_wrong_credentials_get_401_with_the_basic_challenge(
    site: tuple[SiteApp, httpx.AsyncClient], models: dict[str, BuiltModel], caplog: pytest.LogCaptureFixture
) -> None:
    _app, c = site
    blob = models["library/tiny"].model_layer
    for path in ("/v2/", "/v2/library/tiny/manifests/latest", f"/v2/library/tiny/blobs/{blob.digest}", "/v2/_catalog"):
        r = await c.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == 'Basic realm="ollama-seed"'
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    with caplog.at_level(logging.INFO):
        for headers in (
            basic("alice", "wrong"),
            basic("mallory", PASSWORDS["alice"]),
            {"Authorization": "Bearer nope"},
            {"Authorization": "Basic !!!"},
        ):
            r = await c.get("/v2/library/tiny/manifests/latest", headers=headers)
            assert r.status_code == 401 and models["library/tiny"].manifest not in r.content
    text = caplog.text
    assert "failed login from 10.1.2.3: bad password (user 'alice')" in text
    assert "unknown user (user 'mallory')" in text
    for secret in (PASSWORDS["alice"], "wrong", base64.b64encode(b"alice:wrong").decode(), "nope"):
        assert secret not in text


async def test_right_credentials_read_byte_for_byte(
    site: tuple[SiteApp, httpx.AsyncClient], models: dict[str, BuiltModel]
) -> None:
    _app, c = site
    tiny = models["library/tiny"]
    for headers in (basic("alice", PASSWORDS["alice"]), {"Authorization": "Bearer plain-token-123"}):
        c.headers.update(headers)
        assert (await c.get("/v2/")).status_code == 200
        r = await c.get("/v2/library/tiny/manifests/latest")
        assert r.status_code == 200 and r.content == tiny.manifest
        for b in tiny.blobs:
            assert (await c.get(f"/v2/library/tiny/blobs/{b.digest}")).content == b.read_bytes()
    c.headers.update(basic("bob", PASSWORDS["bob"]))  # a password with colons: only the first one splits
    assert (await c.get("/v2/library/tiny/manifests/latest")).content == tiny.manifest


async def test_a_repository_the_user_may_not_read_is_404(
    site: tuple[SiteApp, httpx.AsyncClient], models: dict[str, BuiltModel]
) -> None:
    _app, c = site
    secret = models["team/secret"]
    c.headers.update(basic("bob", PASSWORDS["bob"]))  # bob: Library/T* (patterns match case-insensitively)
    for path in (
        "/v2/team/secret/manifests/latest",
        f"/v2/team/secret/blobs/{secret.model_layer.digest}",
        "/v2/team/secret/tags/list",
        "/v2/registry.ollama.ai/team/secret/manifests/latest",
        "/v2/TEAM/Secret/manifests/latest",
        "/v2/team/secret/manifests/nonexistent",
    ):
        r = await c.get(path)
        assert r.status_code == 404, path
        assert secret.manifest not in r.content
    absent = await c.get("/v2/team/absent/manifests/latest")  # the same answer as a repository that does not exist
    denied = await c.get("/v2/team/secret/manifests/latest")
    assert absent.json()["errors"][0]["code"] == denied.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert (await c.get("/v2/registry.ollama.ai/library/tiny/manifests/latest")).status_code == 200
    assert (await c.get("/v2/_catalog")).json() == {"repositories": ["library/tiny"]}
    c.headers.update({"Authorization": "Bearer hashed-token"})  # ops: no rule of its own, "*" = [] reads nothing
    assert (await c.get("/v2/library/tiny/manifests/latest")).status_code == 404
    assert (await c.get("/v2/_catalog")).json() == {"repositories": []}
    c.headers.update(basic("alice", PASSWORDS["alice"]))
    assert (await c.get("/v2/team/secret/manifests/latest")).content == secret.manifest
    assert (await c.get("/v2/_catalog")).json() == {"repositories": ["library/tiny", "team/secret"]}


async def test_failed_logins_are_limited_per_address(store_dir: Path, site_files: dict[str, Path]) -> None:
    app = create_app(store_dir, htpasswd=site_files["htpasswd"], login_failures=(3, 60.0))
    good = basic("alice", PASSWORDS["alice"])
    async with (
        app,
        httpx.AsyncClient(transport=httpx.ASGITransport(app, client=("10.0.0.66", 1)), base_url="http://m") as bad,
        httpx.AsyncClient(transport=httpx.ASGITransport(app, client=("10.0.0.7", 1)), base_url="http://m") as other,
    ):
        assert [(await bad.get("/v2/", headers=basic("alice", f"guess{i}"))).status_code for i in range(3)] == [401] * 3
        r = await bad.get("/v2/", headers=good)  # even the right password is not checked now
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert (await other.get("/v2/", headers=good)).status_code == 200
        assert (await bad.get("/v2/")).status_code == 401  # no credentials: nothing to limit, a challenge
    metrics = scrape(app.metrics.render())
    assert metrics[("ollama_seed_mirror_auth_failures_total", (("reason", "bad-password"),))] == 3
    assert metrics[("ollama_seed_mirror_auth_failures_total", (("reason", "rate-limited"),))] == 1


def test_failure_limiter_forgets_old_failures() -> None:
    now = [1000.0]
    limiter = FailureLimiter(2, 10.0, clock=lambda: now[0], max_addresses=2)
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == pytest.approx(10.0)
    now[0] += 10.5
    assert limiter.retry_after("a") is None
    for addr in ("b", "c", "d"):
        limiter.failed(addr)
    assert len(limiter._failures) == 2  # bounded however many addresses fail


def test_htpasswd_reads_bcrypt_only_and_again_when_changed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_htpasswd(tmp_path / "h", {"alice": "a"})
    with path.open("a") as f:
        f.write("# comment\napr:$apr1$abc$defghijkl\nsha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbroken line\n")
    now = [0.0]
    with caplog.at_level(logging.WARNING):
        h = Htpasswd(path, clock=lambda: now[0])
    assert len(h) == 1 and h.hash_of("apr") is None
    assert "user 'apr' has no bcrypt hash" in caplog.text and "$apr1$abc" not in caplog.text
    write_htpasswd(path, {"alice": "a", "carol": "c"}, prefix=b"$2b$")
    os.utime(path, ns=(1, 1))  # a different mtime whatever the clock's resolution
    now[0] += 2
    h.refresh()
    assert h.hash_of("carol") is not None and h.generation == 2
    (tmp_path / "empty").write_text("# nobody\n")
    with pytest.raises(ConfigError, match="no bcrypt entry"):
        Htpasswd(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot read"):
        Htpasswd(tmp_path / "absent")


def test_token_and_access_files_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "t"
    bad.write_text("no-colon-here\n")
    with pytest.raises(ConfigError, match="USER:TOKEN"):
        StaticTokens(bad)
    bad.write_text("u:sha256:12\n")
    with pytest.raises(ConfigError, match="64 hex"):
        StaticTokens(bad)
    for text in ('read = "x"', '[read]\nalice = "library/*"', '[other]\nx = ["y"]', "not toml ["):
        bad.write_text(text)
        with pytest.raises(ConfigError):
            AccessRules.load(bad)
    rules = AccessRules({"alice": ["hf.co/*"]})
    assert rules.allows("alice", ["hf.co/user/repo"]) and not rules.allows("alice", ["user/repo"])
    assert not rules.allows("nobody", ["hf.co/user/repo"])


def test_options_that_mean_nothing_are_refused(store_dir: Path, site_files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="needs --upstream"):
        create_app(store_dir, max_cache_size=10)
    with pytest.raises(ConfigError, match="need logins"):
        create_app(store_dir, access=site_files["access"])
    with pytest.raises(ConfigError, match="need logins"):
        create_app(store_dir, metrics_auth=True)


async def test_signed_redirects_need_no_login_and_cannot_be_forged(
    store_dir: Path, site_files: dict[str, Path], models: dict[str, BuiltModel]
) -> None:
    app = create_app(store_dir, htpasswd=site_files["htpasswd"], redirect_blobs_to="http://localhost:8080")
    blob = models["library/tiny"].model_layer
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:8080") as c:
        r = await c.get(f"/v2/library/tiny/blobs/{blob.digest}", headers=basic("alice", PASSWORDS["alice"]))
        assert r.status_code == 307
        location = httpx.URL(r.headers["location"])
        assert location.host == "localhost" and b"signature=" in location.query
        part = await c.get(str(location), headers={"Range": "bytes=0-99"})  # no credentials, as stock Ollama sends
        assert part.status_code == 206 and part.content == blob.read_bytes()[:100]
        forged = str(location).replace("signature=", "signature=0")
        assert (await c.get(forged)).status_code == 401
        other = models["team/secret"].model_layer  # a signature is for its own path only
        moved = str(location).replace(f"library/tiny/blobs/{blob.digest}", f"team/secret/blobs/{other.digest}")
        assert (await c.get(moved)).status_code == 401
        assert (await c.get(f"/v2/library/tiny/blobs/{blob.digest}?direct=1")).status_code == 401


async def test_health_and_metrics(store_dir: Path, site_files: dict[str, Path], models: dict[str, BuiltModel]) -> None:
    app = create_app(store_dir, htpasswd=site_files["htpasswd"])
    tiny = models["library/tiny"]
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        assert (await c.get("/healthz")).text == "ok\n"
        assert (await c.get("/readyz")).text == "ok\n"
        assert (await c.post("/healthz")).status_code == 405
        before = scrape((await c.get("/metrics")).content)  # open by default
        c.headers.update(basic("alice", PASSWORDS["alice"]))
        for _ in range(3):
            assert (await c.get("/v2/library/tiny/manifests/latest")).status_code == 200
        r = await c.get(f"/v2/library/tiny/blobs/{tiny.model_layer.digest}", headers={"Range": "bytes=0-999"})
        assert r.status_code == 206
        missing = await c.get("/v2/library/absent/manifests/latest")
        assert missing.status_code == 404
        after = scrape((await c.get("/metrics")).content)
    manifest_ok = ("ollama_seed_mirror_requests_total", (("method", "GET"), ("route", "manifest"), ("status", "200")))
    assert after[manifest_ok] - before.get(manifest_ok, 0) == 3
    blob_206 = ("ollama_seed_mirror_requests_total", (("method", "GET"), ("route", "blob"), ("status", "206")))
    assert after[blob_206] == 1
    assert (
        after[("ollama_seed_mirror_requests_total", (("method", "GET"), ("route", "manifest"), ("status", "404")))] == 1
    )
    sent = ("ollama_seed_mirror_response_bytes_total", (("route", "manifest"),))
    assert after[sent] - before.get(sent, 0) == 3 * len(tiny.manifest) + len(missing.content)
    assert after[("ollama_seed_mirror_response_bytes_total", (("route", "blob"),))] == 1000
    assert after[("ollama_seed_mirror_cache_bytes", ())] == sum(
        p.stat().st_size for p in (store_dir / "blobs").iterdir()
    )
    app = create_app(store_dir, htpasswd=site_files["htpasswd"], metrics_auth=True)
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers=basic("alice", PASSWORDS["alice"]))).status_code == 200
        assert (await c.get("/healthz")).status_code == 200  # probes stay open


async def test_readyz_fails_when_the_store_is_unreadable(tmp_path: Path) -> None:
    app = create_app(tmp_path / "never-made")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        r = await c.get("/readyz")
        assert r.status_code == 503 and "not readable" in r.text
        assert (await c.get("/healthz")).status_code == 200


def test_json_log_lines_carry_the_access_fields() -> None:
    record = logging.LogRecord("ollama_seed.mirror.access", logging.INFO, __file__, 1, "%s done", ("GET",), None)
    record.access = {"status": 206, "bytes": 1000, "user": "alice", "path": "/v2/x"}
    doc = json.loads(JsonFormatter().format(record))
    assert doc["message"] == "GET done" and doc["status"] == 206 and doc["user"] == "alice"
    assert doc["level"] == "info" and doc["logger"] == "ollama_seed.mirror.access" and doc["time"].endswith("+00:00")


def scrape(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
