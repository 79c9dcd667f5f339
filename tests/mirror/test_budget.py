"""The bounded pull-through cache (--max-cache-size): the least recently served model goes, whole,
through the store's own remove; kept and busy models stay; the order survives a restart."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ollama_seed
from ollama_seed.core.reference import ModelName
from ollama_seed.mirror.budget import STATE_FILE, CacheBudget
from ollama_seed.mirror.factory import create_app
from ollama_seed.store.store import ModelStore
from tests.support import MIB
from tests.support.fake_ollama import FakeOllama
from tests.support.fake_registry import FakeRegistry
from tests.support.invariants import assert_store_ok, tree
from tests.support.mirror import serving
from tests.support.model import BuiltModel, make_model

UPSTREAM = "https://upstream.test"
HOST = "upstream.test"


def union_size(*models: BuiltModel) -> int:
    return sum({b.digest: b.size for m in models for b in m.blobs}.values())


def tight_fetch_of_b(root: Path, b: BuiltModel) -> Callable[[], Awaitable[int]]:
    """A fetch of model *b* (its manifest, then each blob) through a pull-through mirror at *root*
    whose cache holds *b* and one MiB more; it answers the worst status of the blob GETs."""
    reg = FakeRegistry()
    reg.add("library/b", "latest", b)
    app = create_app(root, upstream=UPSTREAM, transport=reg.transport(), max_cache_size=union_size(b) + MIB)

    async def fetch_b() -> int:
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
            assert (await c.get("/v2/library/b/manifests/latest")).status_code == 200
            return max([(await c.get(f"/v2/library/b/blobs/{x.digest}")).status_code for x in b.blobs])

    return fetch_b


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def pull(url: str, repo: str, dest: Path) -> None:
    host = url.removeprefix("http://")
    ollama_seed.pull(f"{host}/{repo}:latest", models_dir=dest, insecure=True, connections=4, use_locks=False)


def stored(root: Path) -> set[str]:
    return {m.name.repository for m in ModelStore(root).list_models()}


def check_store(root: Path, models: dict[str, BuiltModel]) -> None:
    """Valid, every remaining model verifies, and Ollama's view lists exactly the manifests on disk."""
    assert_store_ok(root)
    store = ModelStore(root)
    for m in store.list_models():
        assert store.verify(m.name) == []
        assert m.manifest.raw == models[m.name.repository].manifest
    seen = {e["name"] for e in FakeOllama(root).models()}
    assert seen == {f"{HOST}/{r}:latest" for r in stored(root)}


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltModel]:
    d = tmp_path_factory.mktemp("models")
    return {f"library/{n}": make_model(d / n, size_bytes=2 * MIB + i, seed=30 + i) for i, n in enumerate("abc")}


def test_the_least_recently_served_model_is_evicted_and_the_order_survives_a_restart(
    tmp_path: Path, trio: dict[str, BuiltModel]
) -> None:
    reg = FakeRegistry()
    for repo, m in trio.items():
        reg.add(repo, "latest", m)
    a, b, c = trio.values()
    shared = {x.digest for x in a.blobs} & {x.digest for x in b.blobs} & {x.digest for x in c.blobs}
    assert shared  # the template, license and params layers: blobs other models use must stay
    cap = union_size(a, b) + c.model_layer.size // 2  # room for two models, not three
    root = tmp_path / "mirror"
    options = {"upstream": UPSTREAM, "transport": reg.transport(), "max_cache_size": cap, "connections": 4}
    with serving(root, **options) as info:
        pull(info.url, "library/a", tmp_path / "c1")
        pull(info.url, "library/b", tmp_path / "c1")
        assert stored(root) == {"library/a", "library/b"}
        assert httpx.get(f"{info.url}/v2/library/a/manifests/latest", timeout=30).status_code == 200  # a: newest
        pull(info.url, "library/c", tmp_path / "c1")
        assert stored(root) == {"library/a", "library/c"}  # b was served least recently
        assert metric(info.url, "ollama_seed_mirror_evictions_total") == 1
        assert metric(info.url, "ollama_seed_mirror_evicted_bytes_total") == b.total_size - sum(
            x.size for x in b.blobs if x.digest in shared
        )
        assert metric(info.url, "ollama_seed_mirror_cache_bytes") <= cap
        assert metric(info.url, "ollama_seed_mirror_cache_limit_bytes") == cap
        assert metric(info.url, "ollama_seed_mirror_upstream_bytes_total") == union_size(a, b, c)  # shared: once
        assert metric(info.url, "ollama_seed_mirror_upstream_downloads_active") == 0
        misses = [
            s
            for f in text_string_to_metric_families(httpx.get(f"{info.url}/metrics", timeout=30).text)
            for s in f.samples
            if s.name == "ollama_seed_mirror_pullthrough_total"
        ]
        by = {(s.labels["kind"], s.labels["result"]): s.value for s in misses}
        assert by[("manifest", "miss")] == 3 and by[("manifest", "hit")] >= 1  # a's second GET came from the store
        assert by[("blob", "miss")] >= len({x.digest for m in (a, b, c) for x in m.blobs})  # ranged: several each
        assert httpx.get(f"{info.url}/v2/library/c/manifests/latest", timeout=30).status_code == 200  # c: newest
    check_store(root, trio)
    assert all((root / "blobs" / d.replace(":", "-")).is_file() for d in shared)
    served = json.loads((root / ".ollama-seed" / STATE_FILE).read_text())["served"]
    assert set(served) == {f"{HOST}/library/a:latest", f"{HOST}/library/c:latest"}
    assert served[f"{HOST}/library/a:latest"] < served[f"{HOST}/library/c:latest"]
    with serving(root, **options) as info:  # a restart: a and c are pulled-through models, a is older
        pull(info.url, "library/b", tmp_path / "c2")
        assert stored(root) == {"library/b", "library/c"}
    check_store(root, trio)
    for i in (1, 2):
        assert_store_ok(tmp_path / f"c{i}")


def test_a_model_being_served_is_never_evicted_mid_response(tmp_path: Path) -> None:
    a = make_model(tmp_path / "a", size_bytes=40 * MIB, seed=41)  # more than the socket buffers hold
    b = make_model(tmp_path / "b", size_bytes=MIB, seed=42)
    c = make_model(tmp_path / "c", size_bytes=MIB + 1, seed=43)
    reg = FakeRegistry()
    for repo, m in (("library/a", a), ("library/b", b), ("library/c", c)):
        reg.add(repo, "latest", m)
    root = tmp_path / "mirror"
    cap = union_size(a, b) + c.model_layer.size // 2
    with serving(root, upstream=UPSTREAM, transport=reg.transport(), max_cache_size=cap, connections=4) as info:
        pull(info.url, "library/a", tmp_path / "client")
        pull(info.url, "library/b", tmp_path / "client")
        with socket.create_connection(("127.0.0.1", info.port), timeout=60) as s:
            s.sendall(f"GET /v2/library/a/blobs/{a.model_layer.digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = bytearray(s.recv(65536))  # the response has begun; a is least recently served, and busy
            assert data.startswith(b"HTTP/1.1 200")
            assert httpx.get(f"{info.url}/v2/library/b/manifests/latest", timeout=30).status_code == 200
            pull(info.url, "library/c", tmp_path / "client2")
            assert stored(root) == {"library/a", "library/c"}  # b went, although served after a
            while len(data) < a.model_layer.size + 200:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data.extend(chunk)
                if b"\r\n\r\n" in data and len(data.partition(b"\r\n\r\n")[2]) >= a.model_layer.size:
                    break
        assert bytes(data).partition(b"\r\n\r\n")[2] == a.model_layer.read_bytes()
    check_store(root, {"library/a": a, "library/b": b, "library/c": c})


def test_models_that_were_there_before_are_kept_and_a_full_cache_answers_507(tmp_path: Path) -> None:
    old = make_model(size_bytes=300_000, seed=51)
    new = make_model(size_bytes=200_000, seed=52)
    pinned = make_model(size_bytes=100_000, seed=53)
    reg = FakeRegistry()
    reg.add("library/new", "latest", new)
    reg.add("library/pinned", "latest", pinned)
    root = tmp_path / "mirror"
    old.expected_store(root, HOST, "library/old", "latest")  # in the store before the server started
    before = tree(root)
    app = create_app(
        root, upstream=UPSTREAM, transport=reg.transport(), max_cache_size=union_size(old) + 1000, connections=2
    )

    async def run() -> None:
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
            assert (await c.get("/v2/library/new/manifests/latest")).status_code == 200
            r = await c.get(f"/v2/library/new/blobs/{new.model_layer.digest}")
            assert r.status_code == 507 and r.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert "--max-cache-size" in r.text
            assert (await c.get(f"/v2/library/old/blobs/{old.model_layer.digest}")).status_code == 200

    import anyio

    anyio.run(run)
    assert tree(root) == before  # the old model was not touched, nothing was added
    budget = CacheBudget(ModelStore(root), 10, keep=["upstream.test/library/pinned"])
    budget.start()
    budget.adopt(ModelName.parse("upstream.test/library/pinned"))
    assert budget.evictable() == []  # --keep


@pytest.mark.anyio
async def test_blobs_no_manifest_lists_are_reclaimed_once_past_their_grace(
    tmp_path: Path, trio: dict[str, BuiltModel]
) -> None:
    a, b, _ = trio.values()
    root = tmp_path / "mirror"
    # a's blobs without its manifest: a pull-through stopped before the manifest, or a removal cut short
    os.remove(a.expected_store(root, HOST, "library/a", "latest"))
    strays = sorted(p.name for p in (root / "blobs").iterdir())
    fetch_b = tight_fetch_of_b(root, b)
    assert await fetch_b() == 507  # young strays may be a pull's whose manifest comes next: kept
    assert sorted(p.name for p in (root / "blobs").iterdir() if p.name in strays) == strays
    old = time.time() - 7200
    for name in strays:
        os.utime(root / "blobs" / name, (old, old))
    torn = root / "manifests" / HOST / "library" / "torn" / "latest"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(b'{"schemaVersion": 2, "lay')
    assert await fetch_b() == 507  # an unreadable manifest might list them: kept, as prune keeps them
    torn.unlink()
    assert await fetch_b() == 200  # before: 507 for good, the strays counted and never evicted
    kept = {p.name for p in (root / "blobs").iterdir()}
    assert kept == {f"sha256-{x.hex}" for x in b.blobs}  # a's blobs shared with b stay
    check_store(root, {"library/b": b})


@pytest.mark.anyio
async def test_a_killed_fetch_s_staging_files_are_reclaimed_once_past_their_grace(
    tmp_path: Path, trio: dict[str, BuiltModel]
) -> None:
    _, b, _ = trio.values()
    root = tmp_path / "mirror"
    staging = root / ".ollama-seed" / "staging"
    staging.mkdir(parents=True)
    left = staging / f"sha256-{'d' * 64}.data"  # a mirror killed mid-fetch: counted, never resumed
    left.write_bytes(bytes(MIB + MIB // 2))
    (staging / f"sha256-{'d' * 64}.state").write_bytes(b"state")
    fetch_b = tight_fetch_of_b(root, b)
    assert await fetch_b() == 507 and left.exists()  # it may be another process's download: kept
    old = time.time() - 7200
    os.utime(left, (old, old))
    assert await fetch_b() == 200  # before: 507 for good
    assert list(staging.iterdir()) == []
    check_store(root, {"library/b": b})
