"""The mirror's request handling, in process (httpx.ASGITransport and raw ASGI calls): routes,
manifests, blobs with Range/HEAD, errors, read-only, URL spellings that try to leave the store."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ollama_seed.core.errors import ConfigError
from ollama_seed.mirror.app import MirrorApp, parse_range
from ollama_seed.mirror.serve import BlobRedirect, alternate_host, create_app, is_stock_ollama
from ollama_seed.store.store import ModelStore
from tests.support import SECRET
from tests.support.asgi import raw_asgi_call
from tests.support.model import BuiltModel, make_model

pytestmark = pytest.mark.anyio
OLLAMA_UA = "ollama/0.12.3 (amd64 linux) Go/go1.24.1"


@pytest.fixture
def model() -> BuiltModel:
    return make_model(size_bytes=300_001, seed=3)


@pytest.fixture
def store_dir(tmp_path: Path, model: BuiltModel) -> Path:
    root = tmp_path / "store"
    model.expected_store(root, "registry.ollama.ai", "library/tiny", "latest")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return root


@pytest.fixture
def app(store_dir: Path) -> MirrorApp:
    return MirrorApp(ModelStore(store_dir))


@pytest.fixture
async def client(app: MirrorApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://mirror.test") as c:
        yield c


def errors(resp: httpx.Response) -> list[str]:
    return [e["code"] for e in resp.json()["errors"]]


# -- routes ----------------------------------------------------------------------------------


async def test_base_catalog_and_tags(client: httpx.AsyncClient) -> None:
    r = await client.get("/v2/")
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    assert (await client.get("/v2/_catalog")).json() == {"repositories": ["library/tiny"]}
    r = await client.get("/v2/library/tiny/tags/list")
    assert r.json() == {"name": "library/tiny", "tags": ["latest"]}
    r = await client.get("/v2/library/nothing/tags/list")
    assert r.status_code == 404 and errors(r) == ["NAME_UNKNOWN"]


async def test_catalog_and_tags_paginate(store_dir: Path, client: httpx.AsyncClient, model: BuiltModel) -> None:
    for tag in ("a", "b", "c"):
        model.expected_store(store_dir, "registry.ollama.ai", "library/tiny", tag)
    model.expected_store(store_dir, "registry.ollama.ai", "library/zeta", "latest")
    r = await client.get("/v2/library/tiny/tags/list", params={"n": "2"})
    assert r.json()["tags"] == ["a", "b"]
    assert 'rel="next"' in r.headers["link"] and "last=b" in r.headers["link"]
    r = await client.get("/v2/library/tiny/tags/list", params={"n": "2", "last": "b"})
    assert r.json()["tags"] == ["c", "latest"] and "link" not in r.headers
    r = await client.get("/v2/_catalog", params={"n": "1"})
    assert r.json() == {"repositories": ["library/tiny"]} and "link" in r.headers
    for odd in ("\u00b2", "-1", "9" * 40, "x"):  # ignored: the whole list
        r = await client.get("/v2/library/tiny/tags/list", params={"n": odd})
        assert r.status_code == 200 and len(r.json()["tags"]) == 4, odd


async def test_a_corrupt_manifest_is_neither_listed_nor_served(
    store_dir: Path, client: httpx.AsyncClient, model: BuiltModel
) -> None:
    """The catalog and tags/list name only what a GET serves: a tag file that is not a manifest (torn
    by a power cut, say) answers 404 MANIFEST_UNKNOWN, so its tag is not listed, nor a repository
    with no other tag. (Before: listed by file name, then 404 on GET.)"""
    model.expected_store(store_dir, "registry.ollama.ai", "library/tiny", "torn")
    model.expected_store(store_dir, "registry.ollama.ai", "library/broken", "latest")
    tags = store_dir / "manifests" / "registry.ollama.ai" / "library"
    (tags / "tiny" / "torn").write_bytes(model.manifest[:40])
    (tags / "broken" / "latest").write_bytes(b"")
    for path in ("/v2/library/tiny/manifests/torn", "/v2/library/broken/manifests/latest"):
        r = await client.get(path)
        assert r.status_code == 404 and errors(r) == ["MANIFEST_UNKNOWN"], path
    assert (await client.get("/v2/_catalog")).json() == {"repositories": ["library/tiny"]}
    assert (await client.get("/v2/library/tiny/tags/list")).json()["tags"] == ["latest"]
    r = await client.get("/v2/library/broken/tags/list")
    assert r.status_code == 404 and errors(r) == ["NAME_UNKNOWN"]
    (tags / "broken" / "latest").write_bytes(model.manifest)  # repaired: listed again, at once
    assert (await client.get("/v2/library/broken/tags/list")).json()["tags"] == ["latest"]


async def test_a_name_no_request_may_spell_is_not_listed(
    store_dir: Path, client: httpx.AsyncClient, model: BuiltModel
) -> None:
    """Tag files and repository directories whose names a request may not spell (Ollama's name
    rules) answer 400 NAME_INVALID, so they are not listed either. (Before: listed, then 400.)"""
    tiny = store_dir / "manifests" / "registry.ollama.ai" / "library" / "tiny"
    for tag in ("-dash", "a:b", "x" * 200, "_under"):
        (tiny / tag).write_bytes(model.manifest)
    for repo in ("library/-bad", "Bad:ns/model"):
        model.expected_store(store_dir, "registry.ollama.ai", repo, "latest")
    for path in ("/v2/library/tiny/manifests/-dash", "/v2/library/-bad/tags/list", "/v2/Bad:ns/model/tags/list"):
        r = await client.get(path)
        assert r.status_code == 400 and errors(r) == ["NAME_INVALID"], path
    assert (await client.get("/v2/_catalog")).json() == {"repositories": ["library/tiny"]}
    tags = (await client.get("/v2/library/tiny/tags/list")).json()["tags"]
    assert tags == ["_under", "latest"]
    for tag in tags:  # every tag listed is served
        assert (await client.get(f"/v2/library/tiny/manifests/{tag}")).status_code == 200


async def test_manifest_by_tag_and_digest(client: httpx.AsyncClient, model: BuiltModel) -> None:
    for ref in ("latest", model.manifest_digest):
        r = await client.get(f"/v2/library/tiny/manifests/{ref}")
        assert r.status_code == 200
        assert r.content == model.manifest
        assert r.headers["content-type"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert r.headers["docker-content-digest"] == model.manifest_digest
        assert int(r.headers["content-length"]) == len(model.manifest)
        h = await client.head(f"/v2/library/tiny/manifests/{ref}")
        assert h.status_code == 200 and h.content == b""
        assert h.headers["docker-content-digest"] == model.manifest_digest
        assert int(h.headers["content-length"]) == len(model.manifest)
    r = await client.get("/v2/library/tiny/manifests/other")
    assert r.status_code == 404 and errors(r) == ["MANIFEST_UNKNOWN"]
    r = await client.get(f"/v2/library/tiny/manifests/sha256:{'0' * 64}")
    assert r.status_code == 404
    r = await client.get("/v2/library/tiny/manifests/sha256:XYZ")
    assert r.status_code == 400


async def test_manifest_content_type_comes_from_its_media_type(
    store_dir: Path, client: httpx.AsyncClient, model: BuiltModel
) -> None:
    doc = json.loads(model.manifest)
    doc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    raw = json.dumps(doc, indent=1).encode()  # other bytes, other digest: served exactly as stored
    path = store_dir / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "oci"
    path.write_bytes(raw)
    r = await client.get("/v2/library/tiny/manifests/oci")
    assert r.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
    assert r.content == raw


async def test_names_follow_ollamas_case_folding(client: httpx.AsyncClient, model: BuiltModel) -> None:
    r = await client.get("/v2/Library/TINY/manifests/Latest")
    assert r.status_code == 200 and r.content == model.manifest


async def test_other_registry_hosts(store_dir: Path, model: BuiltModel) -> None:
    other = make_model(size_bytes=1000, seed=9)
    other.expected_store(store_dir, "10.0.0.5:5000", "team/m", "v1")
    c = httpx.AsyncClient(transport=httpx.ASGITransport(MirrorApp(ModelStore(store_dir))), base_url="http://m")
    async with c:
        assert (await c.get("/v2/team/m/manifests/v1")).content == other.manifest
        assert (await c.get("/v2/10.0.0.5:5000/team/m/manifests/v1")).content == other.manifest
        assert (await c.get("/v2/_catalog")).json()["repositories"] == ["library/tiny", "team/m"]
    only = MirrorApp(ModelStore(store_dir), hosts=["registry.ollama.ai"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(only), base_url="http://m") as c:
        assert (await c.get("/v2/team/m/manifests/v1")).status_code == 404
        r = await c.get(f"/v2/10.0.0.5:5000/team/m/blobs/{other.model_layer.digest}")
        assert r.content == other.model_layer.read_bytes()
        assert (await c.get("/v2/_catalog")).json()["repositories"] == ["10.0.0.5:5000/team/m", "library/tiny"]


# -- blobs -------------------------------------------------------------------------------------


async def test_blob_get_head_and_ranges(client: httpx.AsyncClient, model: BuiltModel) -> None:
    blob = model.model_layer
    data = blob.read_bytes()
    url = f"/v2/library/tiny/blobs/{blob.digest}"
    r = await client.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["docker-content-digest"] == blob.digest
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-type"] == "application/octet-stream"
    h = await client.head(url)
    assert h.status_code == 200 and h.content == b"" and int(h.headers["content-length"]) == blob.size
    cases = {
        "bytes=10-19": (10, 20),
        "bytes=299990-": (299990, blob.size),
        "bytes=-7": (blob.size - 7, blob.size),
        f"bytes=5-{10**12}": (5, blob.size),
        "bytes=0-0": (0, 1),
    }
    for header, (start, end) in cases.items():
        r = await client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.content == data[start:end], header
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{blob.size}"
        h = await client.head(url, headers={"Range": header})
        assert h.status_code == 206 and int(h.headers["content-length"]) == end - start
    for ignored in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=x-"):
        r = await client.get(url, headers={"Range": ignored})
        assert r.status_code == 200 and r.content == data, ignored
    r = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"sha256:other"'})
    assert r.status_code == 200 and len(r.content) == blob.size
    r = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": f'"{blob.digest}"'})
    assert r.status_code == 206


@pytest.mark.parametrize("header", ["bytes=300001-", "bytes=400000-400010", "bytes=-0"])
async def test_unsatisfiable_range_is_416(client: httpx.AsyncClient, model: BuiltModel, header: str) -> None:
    r = await client.get(f"/v2/library/tiny/blobs/{model.model_layer.digest}", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{model.model_layer.size}"
    assert errors(r) == ["RANGE_INVALID"]


def test_parse_range_table() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-", 10) == (0, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("BYTES = 2-4", 10) == (2, 5)
    assert parse_range("bytes=1-2, 4-5", 10) is None
    assert parse_range("bytes=" + "9" * 30 + "-", 10) is None
    for odd in ("bytes=\u00b2-", "bytes=-\u00b2", "bytes=\u0661-\u0662", "bytes=1 -2", "bytes=+1-2"):
        assert parse_range(odd, 10) is None, odd


async def test_blob_must_belong_to_the_repository(
    store_dir: Path, client: httpx.AsyncClient, model: BuiltModel
) -> None:
    other = make_model(size_bytes=500, seed=4)
    other.expected_store(store_dir, "registry.ollama.ai", "library/other", "latest")
    r = await client.get(f"/v2/library/tiny/blobs/{other.model_layer.digest}")
    assert r.status_code == 404 and errors(r) == ["BLOB_UNKNOWN"]
    assert (await client.get(f"/v2/library/other/blobs/{other.model_layer.digest}")).status_code == 200
    r = await client.get(f"/v2/library/tiny/blobs/sha256-{model.model_layer.hex}")
    assert r.status_code == 400 and errors(r) == ["DIGEST_INVALID"]


async def test_missing_or_damaged_blob_is_404_not_wrong_bytes(
    store_dir: Path, client: httpx.AsyncClient, model: BuiltModel
) -> None:
    blob = store_dir / "blobs" / f"sha256-{model.model_layer.hex}"
    blob.write_bytes(b"short")
    r = await client.get(f"/v2/library/tiny/blobs/{model.model_layer.digest}")
    assert r.status_code == 404 and b"short" not in r.content
    blob.unlink()
    assert (await client.get(f"/v2/library/tiny/blobs/{model.model_layer.digest}")).status_code == 404


# -- read-only, errors, escapes -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "path",
    [
        "/v2/library/tiny/blobs/uploads/",
        "/v2/library/tiny/manifests/latest",
        "/v2/library/tiny/blobs/sha256:" + "a" * 64,
        "/v2/",
    ],
)
async def test_read_only(client: httpx.AsyncClient, store_dir: Path, method: str, path: str) -> None:
    before = sorted(p.relative_to(store_dir) for p in store_dir.rglob("*"))
    r = await client.request(method, path, content=b"x")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert errors(r) == ["UNSUPPORTED"]
    assert sorted(p.relative_to(store_dir) for p in store_dir.rglob("*")) == before


ESCAPES = [
    b"/v2/../secret.txt",
    b"/v2/library/../../secret.txt",
    b"/v2/library/%2e%2e/manifests/latest",
    b"/v2/%2e%2e/%2e%2e/manifests/secret.txt",
    b"/v2/library//tiny/manifests/latest",
    b"/v2/library/tiny/manifests/..%2f..%2f..%2f..%2fsecret.txt",
    b"/v2/library\\..\\..\\x/tiny/manifests/latest",
    b"/v2/library/tiny/manifests/latest%00",
    b"/v2/library/tiny/manifests/%2e%2e",
    b"/v2/library/tiny/manifests/.",
    b"/v2/library/tiny/manifests/%252e%252e%252fsecret.txt",
    b"/v2/library/tiny/blobs/sha256:..%2f..%2fsecret.txt",
    b"/v2/library/tiny/manifests/latest/../../../../../secret.txt",
    b"/v2/library/tiny/manifests/%c0%ae%c0%ae",
    b"/v2/library/tiny/manifests/" + b"a" * 5000,
    b"/v2/" + b"a/" * 600 + b"manifests/latest",
    b"//v2/library/tiny/manifests/latest",
    b"/v2/./library/tiny/manifests/latest",
    b"/secret.txt",
    b"/v2/library/tiny/manifests/latest\\..\\..\\secret.txt",
    b"/v2/library/ti%00ny/manifests/latest",
]


@pytest.mark.parametrize("raw", ESCAPES, ids=lambda b: b.decode("latin-1")[:60])
async def test_no_url_spelling_leaves_the_store(app: MirrorApp, raw: bytes) -> None:
    status, _headers, body = await raw_asgi_call(app, raw)
    assert status in (400, 404, 414)
    assert SECRET not in body
    assert json.loads(body)["errors"][0]["code"] in (
        "NAME_INVALID",
        "NOT_FOUND",
        "NAME_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_UNKNOWN",
    )


async def test_symlinks_inside_the_store_are_not_followed(
    store_dir: Path, tmp_path: Path, client: httpx.AsyncClient, model: BuiltModel
) -> None:
    tags = store_dir / "manifests" / "registry.ollama.ai" / "library" / "tiny"
    (tags / "evil").symlink_to(tmp_path / "secret.txt")
    r = await client.get("/v2/library/tiny/manifests/evil")
    assert r.status_code == 404 and SECRET not in r.content
    blob = store_dir / "blobs" / f"sha256-{model.model_layer.hex}"
    blob.unlink()
    blob.symlink_to(tmp_path / "secret.txt")
    r = await client.get(f"/v2/library/tiny/blobs/{model.model_layer.digest}")
    assert r.status_code == 404 and SECRET not in r.content


async def test_non_registry_paths_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/", "/api/tags", "/v2/library/tiny", "/v2/library/tiny/whatever/latest"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.json()["errors"][0]["code"] == "NOT_FOUND"


async def test_access_log(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, model: BuiltModel) -> None:
    with caplog.at_level(logging.INFO, logger="ollama_seed.mirror.access"):
        await client.get(
            f"/v2/library/tiny/blobs/{model.model_layer.digest}",
            headers={"Range": "bytes=0-99", "User-Agent": "tester/1"},
        )
    line = next(r.getMessage() for r in caplog.records if r.name == "ollama_seed.mirror.access")
    assert f"GET /v2/library/tiny/blobs/{model.model_layer.digest}" in line
    assert " 206 100 " in line and "tester/1" in line


async def test_lifespan_protocol(app: MirrorApp) -> None:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


# -- the 307 for stock Ollama --------------------------------------------------------------------


def scope_for(host: str, ua: str = OLLAMA_UA, server: tuple[str, int] = ("192.0.2.2", 8080)) -> dict[str, Any]:
    return {"scheme": "http", "headers": [(b"host", host.encode()), (b"user-agent", ua.encode())], "server": server}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8080", "http://localhost:8080"),
        ("localhost:8080", "http://127.0.0.1:8080"),
        ("192.168.1.10:8080", "http://[::ffff:192.168.1.10]:8080"),
        ("[::ffff:192.168.1.10]:8080", "http://192.168.1.10:8080"),
        ("[fd00::2]:8080", "http://[fd00:0000:0000:0000:0000:0000:0000:0002]:8080"),
        ("[fd00:0000:0000:0000:0000:0000:0000:0002]:8080", "http://[fd00::2]:8080"),
        ("mirror.lan:8080", "http://192.0.2.2:8080"),
        ("192.168.1.10", "http://[::ffff:192.168.1.10]"),
        ("127.0.0.1:\u00b2", None),
    ],
)
def test_auto_redirect_targets_another_name_of_the_same_address(host: str, expected: str | None) -> None:
    assert BlobRedirect("auto")(scope_for(host)) == expected


def test_redirect_modes() -> None:
    assert is_stock_ollama(OLLAMA_UA)
    assert not is_stock_ollama("ollama/0.0.0 (amd64 linux) ollama-seed/0.1.0")
    assert not is_stock_ollama("Go-http-client/1.1")
    assert BlobRedirect("auto")(scope_for("127.0.0.1:8080", ua="curl/8")) is None
    assert BlobRedirect("off")(scope_for("127.0.0.1:8080")) is None
    assert BlobRedirect(None)(scope_for("127.0.0.1:8080")) is None
    fixed = BlobRedirect("http://10.0.0.5:8080/")
    assert fixed(scope_for("mirror.lan:8080", ua="curl/8")) == "http://10.0.0.5:8080"
    assert alternate_host("mirror.lan") is None
    for bad in ("ftp://x", "http://x/path", "http://x?q=1", "nonsense", "http://u@x"):
        with pytest.raises(ConfigError):
            BlobRedirect(bad)


async def test_stock_ollama_gets_a_307_to_another_host_then_the_bytes(store_dir: Path, model: BuiltModel) -> None:
    app = create_app(store_dir)
    blob = model.model_layer
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:8080") as c:
        head = await c.head(f"/v2/library/tiny/blobs/{blob.digest}", headers={"User-Agent": OLLAMA_UA})
        assert head.status_code == 200 and int(head.headers["content-length"]) == blob.size
        r = await c.get(f"/v2/library/tiny/blobs/{blob.digest}", headers={"User-Agent": OLLAMA_UA})
        assert r.status_code == 307
        location = httpx.URL(r.headers["location"])
        assert location.host == "localhost" and location.port == 8080
        assert location.path == f"/v2/library/tiny/blobs/{blob.digest}" and location.query == b"direct=1"
        part = await c.get(str(location), headers={"Range": "bytes=100-199", "User-Agent": "Go-http-client/1.1"})
        assert part.status_code == 206 and part.content == blob.read_bytes()[100:200]
        ours = await c.get(f"/v2/library/tiny/blobs/{blob.digest}")  # ollama-seed and others: no redirect
        assert ours.status_code == 200 and ours.content == blob.read_bytes()


async def test_errors_are_json_for_head_too(client: httpx.AsyncClient) -> None:
    r = await client.head("/v2/library/tiny/manifests/nope")
    assert r.status_code == 404 and r.content == b""
    assert r.headers["content-type"] == "application/json"


async def test_blob_bodies_are_streamed_in_chunks(store_dir: Path, model: BuiltModel) -> None:
    app = MirrorApp(ModelStore(store_dir), chunk_size=4096)
    sizes: list[int] = []
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "query_string": b"",
        "headers": [],
        "path": f"/v2/library/tiny/blobs/{model.model_layer.digest}",
    }

    async def receive() -> dict[str, Any]:
        await anyio.sleep(0.01)
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sizes.append(len(message.get("body", b"")))

    await app(scope, receive, send)
    assert sum(sizes) == model.model_layer.size
    assert max(sizes) == 4096 and len(sizes) == -(-model.model_layer.size // 4096)
