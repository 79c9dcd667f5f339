"""Pull-through: misses are fetched from the upstream once (shared by concurrent clients), verified,
stored, then served; upstream failures become registry errors, never wrong bytes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest

import ollama_seed
from ollama_seed.core.errors import ConfigError
from ollama_seed.mirror.app import MirrorApp
from ollama_seed.mirror.cache import PullThroughCache, parse_upstream
from ollama_seed.mirror.factory import create_app
from ollama_seed.mirror.serve import ServeInfo, aserve
from ollama_seed.store.store import ModelStore
from tests.support import MIB
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

UPSTREAM = "https://upstream.test"


def fake(model: BuiltModel, faults: Faults | None = None) -> FakeRegistry:
    reg = FakeRegistry(faults)
    reg.add("library/tiny", "latest", model)
    return reg


@contextlib.asynccontextmanager
async def mirror(root: Path, reg: FakeRegistry) -> AsyncIterator[tuple[httpx.AsyncClient, MirrorApp]]:
    store = ModelStore(root)
    app = MirrorApp(store, cache=PullThroughCache(store, UPSTREAM, transport=reg.transport(), connections=4))
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://mirror.test") as c:
        yield c, app


def manifest_gets(reg: FakeRegistry) -> int:
    return sum(1 for m, u, _ in reg.requests if m == "GET" and "/manifests/" in u)


@pytest.mark.anyio
async def test_two_clients_one_upstream_download(tmp_path: Path) -> None:
    model = make_model(size_bytes=3 * MIB + 5, seed=1)
    reg = fake(model)
    blob = model.model_layer
    async with mirror(tmp_path / "m", reg) as (c, _app):
        got: list[httpx.Response] = []

        async def manifest() -> None:
            got.append(await c.get("/v2/library/tiny/manifests/latest"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(manifest)
            tg.start_soon(manifest)
        assert [r.content for r in got] == [model.manifest, model.manifest]
        assert manifest_gets(reg) == 1
        bodies: list[bytes] = []

        async def get_blob() -> None:
            r = await c.get(f"/v2/library/tiny/blobs/{blob.digest}")
            assert r.status_code == 200
            bodies.append(r.content)

        async with anyio.create_task_group() as tg:
            tg.start_soon(get_blob)
            tg.start_soon(get_blob)
        assert bodies == [blob.read_bytes()] * 2
        assert reg.bytes_sent == blob.size  # one download, shared by both
        for b in model.blobs:
            if b is not blob:
                assert (await c.get(f"/v2/library/tiny/blobs/{b.digest}")).content == b.read_bytes()
        assert reg.bytes_sent == model.total_size
    stored = ModelStore(tmp_path / "m").read_manifest(ollama_seed.ModelName.parse("upstream.test/library/tiny"))
    assert stored is not None and stored.raw == model.manifest  # complete: written under the upstream's host
    async with mirror(tmp_path / "m", reg) as (c, _app):  # a restart serves from the store, upstream untouched
        before = len(reg.requests)
        assert (await c.get("/v2/library/tiny/manifests/latest")).content == model.manifest
        assert (await c.get(f"/v2/library/tiny/blobs/{blob.digest}")).content == blob.read_bytes()
        assert len(reg.requests) == before


@pytest.mark.anyio
async def test_blob_without_manifest_first_and_head(tmp_path: Path) -> None:
    model = make_model(size_bytes=200_000, seed=2)
    reg = fake(model)
    blob = model.model_layer
    async with mirror(tmp_path / "m", reg) as (c, _app):
        h = await c.head(f"/v2/library/tiny/blobs/{blob.digest}")
        assert h.status_code == 200 and int(h.headers["content-length"]) == blob.size
        assert reg.bytes_sent == 0  # a HEAD does not download
        r = await c.get(f"/v2/library/tiny/blobs/{blob.digest}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == blob.read_bytes()[10:20]
        r = await c.get(f"/v2/library/tiny/blobs/sha256:{'1' * 64}")
        assert r.status_code == 404


@pytest.mark.anyio
async def test_manifest_by_digest_is_checked(tmp_path: Path) -> None:
    model = make_model(size_bytes=1000, seed=3)
    reg = fake(model)
    async with mirror(tmp_path / "m", reg) as (c, _app):
        r = await c.get(f"/v2/library/tiny/manifests/{model.manifest_digest}")
        assert r.status_code == 200 and r.content == model.manifest
        assert r.headers["docker-content-digest"] == model.manifest_digest
        reg.repos[("library/tiny", f"sha256:{'2' * 64}")] = model.manifest  # lies about the digest
        r = await c.get(f"/v2/library/tiny/manifests/sha256:{'2' * 64}")
        assert r.status_code == 502 and "digest" in r.text


@pytest.mark.anyio
async def test_upstream_misses_and_failures(tmp_path: Path) -> None:
    model = make_model(size_bytes=100_000, seed=4)
    reg = fake(model, Faults(corrupt_at=10, corruptions=10))
    async with mirror(tmp_path / "m", reg) as (c, _app):
        r = await c.get("/v2/library/absent/manifests/latest")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert (await c.get("/v2/library/tiny/manifests/latest")).status_code == 200
        r = await c.get(f"/v2/library/tiny/blobs/{model.model_layer.digest}")
        assert r.status_code == 502 and "sha256 mismatch" in r.text
    assert not (tmp_path / "m" / "blobs" / f"sha256-{model.model_layer.hex}").exists()
    assert ModelStore(tmp_path / "m").list_models() == []


@pytest.mark.anyio
async def test_tags_include_fetched_ones(tmp_path: Path) -> None:
    model = make_model(size_bytes=1000, seed=6)
    reg = fake(model)
    async with mirror(tmp_path / "m", reg) as (c, _app):
        assert (await c.get("/v2/library/tiny/tags/list")).status_code == 404
        await c.head("/v2/library/tiny/manifests/latest")
        assert (await c.get("/v2/library/tiny/tags/list")).json()["tags"] == ["latest"]


def test_parse_upstream() -> None:
    assert parse_upstream("https://registry.ollama.ai/") == ("https", "registry.ollama.ai")
    assert parse_upstream("http://10.0.0.5:5000") == ("http", "10.0.0.5:5000")
    assert parse_upstream("registry.lan") == ("https", "registry.lan")
    for bad in ("ftp://x", "https://x/v2", "https://u:p@x", "https://x?y=1", "https://"):
        with pytest.raises(ConfigError):
            parse_upstream(bad)


@contextlib.contextmanager
def serving(models_dir: Path, **options: Any) -> Iterator[ServeInfo]:
    with anyio.from_thread.start_blocking_portal() as portal:
        future, info = portal.start_task(partial(aserve, create_app(models_dir, **options), port=0))
        try:
            yield info
        finally:
            future.cancel()


@pytest.mark.registry
@pytest.mark.anyio
async def test_pull_through_a_real_registry_downloads_each_blob_once(
    docker_registry: DockerRegistry, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "model", size_bytes=6 * MIB + 1, seed=11)
    seed_registry(docker_registry.url, "library/pt", "latest", model)
    with ProxyThread(docker_registry.url) as proxy, serving(tmp_path / "mirror", upstream=proxy.url) as info:
        host = f"127.0.0.1:{info.port}"
        async with anyio.create_task_group() as tg:
            for i in range(2):
                tg.start_soon(
                    partial(
                        ollama_seed.apull,
                        f"{host}/library/pt",
                        models_dir=tmp_path / f"c{i}",
                        insecure=True,
                        use_locks=False,
                    )
                )
        per_path = proxy.stats.snapshot()["per_path"]
    for b in model.blobs:
        assert per_path[f"/v2/library/pt/blobs/{b.digest}"] == b.size, b.role  # upstream sent it exactly once
        for i in range(2):
            assert (tmp_path / f"c{i}" / "blobs" / f"sha256-{b.hex}").read_bytes() == b.read_bytes()
    for i in range(2):
        path = tmp_path / f"c{i}" / "manifests" / host / "library" / "pt" / "latest"
        assert path.read_bytes() == model.manifest
    upstream_host = proxy.url.removeprefix("http://")
    assert (
        tmp_path / "mirror" / "manifests" / upstream_host / "library" / "pt" / "latest"
    ).read_bytes() == model.manifest
