"""A registry that redirects every blob to storage on another host (as ollama.com does), or that
answers 503 for a while, must not cost a new connection for every such answer: its small body is
read so that its connection is kept, on both body paths. Through the shaping proxy in front of a
real docker-registry, which counts the connections it accepts; it redirects to itself under
another name (localhost), so the pull keeps one pool for the registry and one for "storage"."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from ollama_seed import ModelName, ModelStore
from ollama_seed.pulling.session import PullSession
from ollama_seed.wire.transfer import TransferConfig
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

pytestmark = pytest.mark.registry
REPOS = ("library/reuse-a", "library/reuse-b")


@pytest.fixture(scope="module")
def models(docker_registry: DockerRegistry) -> list[BuiltModel]:
    built = []
    for seed, repo in enumerate(REPOS, start=41):  # the same shape: as many blobs each
        m = make_model(
            size_bytes=300_000 + seed,
            seed=seed,
            template=f"{{{{ .Prompt }}}} {seed}",
            license_text=f"license {seed}",
            params={"seed": seed},
            one_byte_layer=False,
        )
        seed_registry(docker_registry.url, repo, "latest", m)
        built.append(m)
    return built


def test_a_second_model_through_a_redirecting_registry_opens_no_new_connection(
    models: list[BuiltModel], docker_registry: DockerRegistry, tmp_path: Path
) -> None:
    """On the direct path. (On the httpx path, max_connections=1 caps httpx's pool at one
    connection for both hosts, so it must close one to reach the other; the storm below tests
    that path's draining on one host.)"""
    store = tmp_path / "models"
    with ProxyThread(docker_registry.url, redirect_blobs_to="http://localhost:{port}") as p:
        host = p.url.removeprefix("http://")
        opened: list[int] = []

        async def go() -> None:
            async with PullSession(ModelStore(store), insecure=True, max_connections=1) as session:
                for repo in REPOS:
                    await session.pull(ModelName.parse(f"{host}/{repo}:latest"))
                    opened.append(p.stats.snapshot()["connections"])

        anyio.run(go)
        redirects = p.stats.snapshot()["redirects"]
    for repo in REPOS:
        assert ModelStore(store).verify(ModelName.parse(f"{host}/{repo}:latest")) == []
    assert redirects == sum(len(m.layers) + 1 for m in models)  # every blob went through storage
    # One request at a time: the manifest's connection (httpx), one for the registry's redirects
    # and one for storage. Closing each redirect's connection made it one more per blob, for the
    # second model too.
    assert opened[0] <= 3
    assert opened[1] == opened[0]


@pytest.mark.parametrize("direct", ["1", "0"], ids=["direct", "httpx"])
def test_a_503_storm_costs_no_connection_per_answer(
    direct: str,
    models: list[BuiltModel],
    docker_registry: DockerRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_SEED_DIRECT", direct)
    store = tmp_path / "models"
    with ProxyThread(docker_registry.url, fail_rate=0.95, fail_statuses=(503,), max_faults=20, seed=5) as p:
        name = ModelName.parse(f"{p.url.removeprefix('http://')}/{REPOS[0]}:latest")

        async def go() -> None:
            cfg = TransferConfig(max_attempts=100, sleep=lambda s: None)
            async with PullSession(ModelStore(store), insecure=True, transfer=cfg, max_connections=1) as session:
                await session.pull(name)

        anyio.run(go)
        stats = p.stats.snapshot()
    assert ModelStore(store).verify(name) == []
    assert stats["faults"] == {"fail": 20}
    # One request at a time: the manifest's connection (httpx) and one for the blobs (the same
    # on the httpx path); a connection closed after each 503 made it 20 more.
    assert stats["connections"] <= 2, stats
