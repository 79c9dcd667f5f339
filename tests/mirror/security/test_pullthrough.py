"""Pull-through findings: F8 (orphan blobs never evicted), F12 (failed fetches' staging files not
counted or removed), F13 (redirects to internal addresses; credentials to a foreign plain-http realm),
issue 25 item 5 (a blob that can never fit evicted others first), and F9 (a truncating or trickling
upstream never ended a download) in the transfer code ``pull`` shares."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from ollama_seed.core.errors import TransferError
from ollama_seed.core.reference import ModelName
from ollama_seed.mirror.factory import create_app
from ollama_seed.pulling.session import PullSession
from ollama_seed.store.store import ModelStore
from ollama_seed.wire.transfer import TransferConfig
from tests.support import MIB
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.model import BuiltModel, make_model

pytestmark = pytest.mark.anyio
UPSTREAM = "https://upstream.test"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltModel, BuiltModel]:
    d = tmp_path_factory.mktemp("models")
    return make_model(d / "a", size_bytes=2 * MIB, seed=81), make_model(d / "b", size_bytes=2 * MIB + 1, seed=82)


def registry(*models: BuiltModel, faults: Faults | None = None) -> FakeRegistry:
    reg = FakeRegistry(faults)
    for i, m in enumerate(models):
        reg.add(f"library/{'ab'[i]}", "latest", m)
    return reg


async def test_a_blob_fetched_by_digest_alone_can_be_evicted(
    tmp_path: Path, pair: tuple[BuiltModel, BuiltModel]
) -> None:
    a, b = pair
    reg = registry(a, b)
    root = tmp_path / "mirror"
    cap = sum(x.size for x in b.blobs) + a.model_layer.size // 2  # b fits only if a's orphan goes
    app = create_app(root, upstream=UPSTREAM, transport=reg.transport(), max_cache_size=cap, connections=2)
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        orphan = await c.get(f"/v2/library/a/blobs/{a.model_layer.digest}")  # no manifest asked: in no model
        assert orphan.status_code == 200
        assert (await c.get("/v2/library/b/manifests/latest")).status_code == 200
        r = await c.get(f"/v2/library/b/blobs/{b.model_layer.digest}")
        assert r.status_code == 200, r.text  # before: 507, the orphan held the space for good
    assert not (root / "blobs" / f"sha256-{a.model_layer.hex}").exists()
    state = json.loads((root / ".ollama-seed" / "mirror-served.json").read_bytes())
    assert state["orphans"] == {}


async def test_a_blob_bigger_than_the_cache_evicts_nothing(tmp_path: Path, pair: tuple[BuiltModel, BuiltModel]) -> None:
    a, b = pair
    reg = registry(a, b)
    root = tmp_path / "mirror"
    # a's small blobs fit; b's 2 MiB layer never can, with or without them
    app = create_app(root, upstream=UPSTREAM, transport=reg.transport(), max_cache_size=MIB * 3 // 2, connections=2)
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        small = [x for x in a.blobs if x.size < MIB]
        for blob in small:
            assert (await c.get(f"/v2/library/a/blobs/{blob.digest}")).status_code == 200
        before = sorted(p.name for p in (root / "blobs").iterdir())
        r = await c.get(f"/v2/library/b/blobs/{b.model_layer.digest}")
        assert r.status_code == 507
        assert "more than the whole --max-cache-size" in r.text
        assert sorted(p.name for p in (root / "blobs").iterdir()) == before  # before: evicted first


async def test_a_failed_fetch_leaves_no_staging_files(tmp_path: Path, pair: tuple[BuiltModel, BuiltModel]) -> None:
    a, _ = pair
    reg = registry(a, faults=Faults(drop_after=300_000, drops=10**6))
    root = tmp_path / "mirror"
    app = create_app(root, upstream=UPSTREAM, transport=reg.transport(), connections=2, stall_timeout=2)
    app.mirror.cache._session_args["transfer"] = TransferConfig(connections=2, max_attempts=2, sleep=lambda s: None)  # type: ignore[union-attr, typeddict-unknown-key]
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        r = await c.get(f"/v2/library/a/blobs/{a.model_layer.digest}")
        assert r.status_code == 502
    staging = root / ".ollama-seed" / "staging"
    left = [p.name for p in staging.iterdir()] if staging.exists() else []
    assert left == []  # before: a full-size preallocated .data file, not counted by --max-cache-size


async def test_redirects_to_internal_addresses_are_refused(tmp_path: Path, pair: tuple[BuiltModel, BuiltModel]) -> None:
    a, _ = pair
    reg = registry(a, faults=Faults(cdn_host="127.0.0.1:9"))
    root = tmp_path / "mirror"
    for allowed in (False, True):
        reg.requests.clear()
        app = create_app(
            root / str(allowed), upstream=UPSTREAM, transport=reg.transport(), upstream_private_redirects=allowed
        )
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
            r = await c.head(f"/v2/library/a/blobs/{a.model_layer.digest}")
        internal = [u for _, u, _ in reg.requests if "127.0.0.1:9" in u]
        if allowed:
            assert internal  # the operator said so: followed
        else:
            assert r.status_code == 502 and internal == []  # before: its status and length, to anyone


async def test_credentials_never_go_to_a_foreign_plain_http_realm(tmp_path: Path) -> None:
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host} {request.headers.get('authorization', '-')}")
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://evil.test/token",service="x"'})

    app = create_app(
        tmp_path / "mirror",
        upstream="http://reg.test",
        transport=httpx.MockTransport(handler),
        credentials=lambda host: ("site-user", "site-password"),
    )
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        r = await c.get("/v2/library/a/manifests/latest")
    assert r.status_code in (401, 502), r.text
    assert not any(s.startswith("evil.test") for s in seen), seen  # before: Basic credentials over http


async def _pull(root: Path, transport: httpx.AsyncBaseTransport, cfg: TransferConfig) -> None:
    async with PullSession(ModelStore(root), insecure=True, transfer=cfg, transport=transport) as session:
        await session.pull(ModelName.parse("upstream.test/library/a:latest"))


async def test_an_upstream_that_ignores_range_and_cuts_bodies_ends(
    tmp_path: Path, pair: tuple[BuiltModel, BuiltModel]
) -> None:
    a, _ = pair
    reg = registry(a, faults=Faults(ignore_range=True, drop_after=500_000, drops=10**6, blob_filter=a.model_layer.hex))
    cfg = TransferConfig(connections=2, max_attempts=4, sleep=lambda s: None)
    with anyio.fail_after(60), pytest.raises(TransferError, match="failed after 4 attempts"):
        await _pull(tmp_path / "store", reg.transport(), cfg)  # before: restarted from byte 0 forever
    assert len(reg.blob_requests()) < 40


class _Trickle(httpx.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(len(self.data)):
            yield self.data[i : i + 1]
            await anyio.sleep(0.02)


async def test_a_trickling_upstream_ends(tmp_path: Path, pair: tuple[BuiltModel, BuiltModel]) -> None:
    a, _ = pair
    reg = registry(a)

    async def handler(request: httpx.Request) -> httpx.Response:
        if a.model_layer.hex in request.url.path and request.method == "GET":
            body = a.model_layer.read_bytes()
            return httpx.Response(200, headers={"Content-Length": str(len(body))}, stream=_Trickle(body))
        return await reg.handle(request)

    cfg = TransferConfig(connections=1, stall_timeout=0.5, max_attempts=3, sleep=lambda s: None)
    with anyio.fail_after(60), pytest.raises(TransferError, match="slower than"):
        await _pull(tmp_path / "store", httpx.MockTransport(handler), cfg)  # before: 50 bytes/s forever
