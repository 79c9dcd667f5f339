"""Mirror sources: tried in order, then the upstream; a lying or dead mirror is skipped per blob."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import ollama_seed
from ollama_seed import InvalidName, ModelName, ModelStore
from ollama_seed.pulling.session import normalize_mirror
from tests.support import MIB
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.model import make_model

pytestmark = pytest.mark.anyio
NAME = "upstream.test/library/m:latest"


class Router:
    """One MockTransport that sends each host to its own fake registry (unknown hosts: refused)."""

    def __init__(self, **hosts: FakeRegistry) -> None:
        self.hosts = {h.replace("_", "."): r for h, r in hosts.items()}
        self.seen: list[str] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url.host)
        reg = self.hosts.get(request.url.host)
        if reg is None:
            raise httpx.ConnectError("connection refused", request=request)
        return await reg.handle(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def regs(faults_mirror: Faults | None = None) -> tuple[FakeRegistry, FakeRegistry, object]:
    m = make_model(size_bytes=3 * MIB)
    up, mirror = FakeRegistry(), FakeRegistry(faults_mirror)
    up.add("library/m", "latest", m)
    mirror.add("library/m", "latest", m)
    return up, mirror, m


async def test_mirror_serves_everything_when_healthy(models_dir: Path) -> None:
    up, mirror, _ = regs()
    router = Router(upstream_test=up, mirror_test=mirror)
    await ollama_seed.apull(NAME, models_dir=models_dir, transport=router.transport(), mirrors=["https://mirror.test"])
    assert up.requests == []
    assert mirror.blob_requests()
    # the store keeps the model under its own name, not the mirror's
    assert ModelStore(models_dir).get(ModelName.parse(NAME)).manifest is not None


async def test_a_mirror_with_a_corrupt_blob_is_dropped_for_that_blob(models_dir: Path) -> None:
    up, mirror, m = regs()
    mirror.faults = Faults(corrupt_at=5, corruptions=100, blob_filter=m.model_layer.hex)  # type: ignore[attr-defined]
    router = Router(upstream_test=up, mirror_test=mirror)
    events: list[object] = []
    await ollama_seed.apull(
        NAME,
        models_dir=models_dir,
        transport=router.transport(),
        mirrors=["https://mirror.test"],
        progress=events.append,
    )
    up_blobs = up.blob_requests()
    assert up_blobs and all(m.model_layer.hex in u for u in up_blobs)  # type: ignore[attr-defined]
    assert ModelStore(models_dir).verify(ModelName.parse(NAME)) == []
    assert any("mirror https://mirror.test failed" in getattr(e, "status", "") for e in events)


async def test_dead_mirrors_fall_through_to_the_next_source(models_dir: Path) -> None:
    up, mirror, _ = regs()
    router = Router(upstream_test=up, mirror2_test=mirror)
    await ollama_seed.apull(
        NAME, models_dir=models_dir, transport=router.transport(), mirrors=["https://dead.test", "https://mirror2.test"]
    )
    assert "dead.test" in router.seen
    assert up.requests == []
    assert mirror.blob_requests()


async def test_mirror_without_the_model_falls_back_to_upstream(models_dir: Path) -> None:
    up, _, _ = regs()
    empty = FakeRegistry()
    router = Router(upstream_test=up, mirror_test=empty)
    result = await ollama_seed.apull(
        NAME, models_dir=models_dir, transport=router.transport(), mirrors=["https://mirror.test"]
    )
    assert result.blobs_downloaded > 0
    assert up.blob_requests()


@pytest.mark.parametrize(
    ("given", "expected"),
    [("http://m:8080/", "http://m:8080"), ("m.example", "https://m.example"), ("https://m/prefix", "https://m/prefix")],
)
def test_normalize_mirror(given: str, expected: str) -> None:
    assert normalize_mirror(given) == expected


@pytest.mark.parametrize("bad", ["ftp://m", "http://", "://x"])
def test_bad_mirror_urls(bad: str) -> None:
    with pytest.raises(InvalidName, match="mirror URL"):
        normalize_mirror(bad)
