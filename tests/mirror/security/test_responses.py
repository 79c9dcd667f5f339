"""F3 (catalog paging named hidden repositories), F4 (any method became a metric label), F10 (a
manifest's mediaType as Content-Type), F11 (control characters forged log lines)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ollama_seed.core.manifest import MANIFEST_MEDIA_TYPE
from ollama_seed.mirror.factory import create_app
from tests.mirror.security.conftest import basic
from tests.support.mirror import write_htpasswd
from tests.support.model import make_model

pytestmark = pytest.mark.anyio


async def test_catalog_pages_name_only_what_the_user_may_read(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for repo in ("aaa/hidden", "library/one", "library/two", "zzz/hidden"):
        make_model(size_bytes=1000, seed=len(repo)).expected_store(root, "registry.ollama.ai", repo, "latest")
    access = tmp_path / "access.toml"
    access.write_text('[read]\nalice = ["library/*"]\n')
    app = create_app(root, htpasswd=write_htpasswd(tmp_path / "htpasswd", {"alice": "pw"}), access=access)
    seen: list[str] = []
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        url = "/v2/_catalog?n=1"
        for _ in range(5):
            r = await c.get(url, headers=basic("alice", "pw"))
            assert r.status_code == 200
            seen += r.json()["repositories"]
            link = r.headers.get("link", "")
            assert "hidden" not in link and "aaa" not in link and "zzz" not in link, link  # before: ?last=aaa/hidden
            if not link:
                break
            url = link.split(">", 1)[0].lstrip("<")
    assert seen == ["library/one", "library/two"]


async def test_metric_labels_are_a_fixed_set(tmp_path: Path) -> None:
    root = tmp_path / "store"
    app = create_app(root, htpasswd=write_htpasswd(tmp_path / "htpasswd", {"alice": "pw"}))
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        for i in range(40):
            await c.request(f"X{i}FOO", "/v2/")  # unauthenticated, odd methods
        text = (await c.get("/metrics")).text
    methods = {
        s.labels["method"] for f in text_string_to_metric_families(text) for s in f.samples if "method" in s.labels
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert "other" in methods


async def test_a_manifest_media_type_is_not_a_content_type(tmp_path: Path) -> None:
    root = tmp_path / "store"
    model = make_model(size_bytes=1000, seed=10)
    path = model.expected_store(root, "registry.ollama.ai", "library/html", "latest")
    doc = json.loads(model.manifest)
    doc["mediaType"] = "text/html"
    doc["x"] = "<script>alert(1)</script>"
    manifest = root / "manifests/registry.ollama.ai/library/html/latest"
    manifest.write_bytes(json.dumps(doc).encode())
    app = create_app(root)
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        r = await c.get("/v2/library/html/manifests/latest")
        err = await c.get("/v2/library/nothing/manifests/latest")
    assert r.status_code == 200, (r.status_code, path)
    assert r.headers["content-type"] == MANIFEST_MEDIA_TYPE  # before: text/html
    assert r.headers["x-content-type-options"] == "nosniff"
    assert err.headers["x-content-type-options"] == "nosniff"


async def test_control_characters_cannot_forge_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "store"
    app = create_app(root, htpasswd=write_htpasswd(tmp_path / "htpasswd", {"alice": "pw"}))
    forged = '/v2/x%0aINFO ollama_seed.mirror.access: 10.0.0.9 "GET /v2/ok" 200%0d%1b[2J'
    with caplog.at_level(logging.INFO, logger="ollama_seed.mirror"):
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
            await c.get(forged, headers={"User-Agent": "evil\nfailed login from 1.2.3.4", **basic("al\nice", "x")})
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("\n" not in m and "\r" not in m and "\x1b" not in m for m in lines), lines
    assert any("\\x0a" in m for m in lines)
