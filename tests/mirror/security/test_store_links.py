"""F2 (symlinked directories under manifests/ were followed, and file reads ran on the event loop) and
F7 (_catalog was O(store) synchronous work per call, a stray big file read whole)."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

import anyio
import httpx
import pytest

from ollama_seed.mirror.factory import create_app
from ollama_seed.mirror.index import MirrorIndex
from tests.support.model import make_model

pytestmark = pytest.mark.anyio


def outside_models(base: Path) -> Path:
    """A models tree outside the store, whose names a symlink would expose."""
    outside = base / "outside"
    make_model(size_bytes=2000, seed=77).expected_store(outside, "registry.ollama.ai", "secret/model", "leak")
    return outside / "manifests" / "registry.ollama.ai"


@pytest.mark.parametrize("level", ["host", "namespace", "model"])
async def test_symlinked_directories_are_not_followed(tmp_path: Path, store: Path, level: str) -> None:
    host_dir = outside_models(tmp_path)
    manifests = store / "manifests"
    if level == "host":
        (manifests / "evil.host").symlink_to(host_dir)
        paths = ["/v2/evil.host/secret/model/tags/list", "/v2/evil.host/secret/model/manifests/leak"]
    elif level == "namespace":
        (manifests / "registry.ollama.ai" / "secret").symlink_to(host_dir / "secret")
        paths = ["/v2/secret/model/tags/list", "/v2/secret/model/manifests/leak"]
    else:
        (manifests / "registry.ollama.ai" / "library" / "model").symlink_to(host_dir / "secret" / "model")
        paths = ["/v2/library/model/tags/list", "/v2/library/model/manifests/leak"]
    app = create_app(store)
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        for path in paths:
            r = await c.get(path)
            assert r.status_code == 404, (path, r.status_code, r.text[:200])  # before: the outside tags and manifest
        catalog = (await c.get("/v2/_catalog")).json()["repositories"]
    assert catalog == ["library/small"]


async def test_a_link_to_the_root_and_a_fifo_block_nothing(tmp_path: Path, store: Path) -> None:
    manifests = store / "manifests"
    (manifests / "root").symlink_to("/")
    fifo_dir = manifests / "registry.ollama.ai" / "library" / "fifo"
    fifo_dir.mkdir(parents=True)
    os.mkfifo(fifo_dir / "latest")  # opening it for reading would wait for a writer forever
    app = create_app(store)
    async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
        with anyio.fail_after(20):
            assert (await c.get("/v2/_catalog")).json()["repositories"] == ["library/small"]
            assert (await c.get("/v2/library/fifo/manifests/latest")).status_code == 404
            assert (await c.get("/v2/library/fifo/tags/list")).status_code in (200, 404)
            assert (await c.get("/healthz")).status_code == 200


async def test_the_catalog_runs_off_the_event_loop_and_reads_no_big_file(
    tmp_path: Path, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stray = store / "manifests" / "registry.ollama.ai" / "library" / "small" / "huge"
    with stray.open("wb") as f:
        f.truncate(1 << 30)  # sparse: a 1 GiB "manifest"
    threads: list[str] = []
    walk = MirrorIndex._repos

    def spy(self: MirrorIndex) -> list[tuple[str, str, str]]:
        threads.append(threading.current_thread().name)
        return walk(self)

    monkeypatch.setattr(MirrorIndex, "_repos", spy)
    app = create_app(store)
    tracemalloc.start()
    try:
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(c.get, "/v2/_catalog")
            assert (await c.get("/v2/library/small/manifests/huge")).status_code == 404
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert threads and threading.main_thread().name not in threads  # before: on the loop
    assert peak < 64 * 1024 * 1024, peak  # before: 1.1 GB per call


def test_the_catalog_is_walked_once_for_many_callers(store: Path) -> None:
    from ollama_seed.store.store import ModelStore

    index = MirrorIndex(ModelStore(store))
    started = time.monotonic()
    first = index.catalog()
    again = [index.catalog() for _ in range(100)]
    assert all(a == first for a in again)
    assert index._catalog is not None and index._catalog[0] <= started + 5
    make_model(size_bytes=100, seed=5).expected_store(store, "registry.ollama.ai", "library/new", "latest")
    assert "library/new" in index.catalog()  # a new model directory shows at once
