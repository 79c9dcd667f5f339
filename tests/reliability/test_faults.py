"""Fault injection on the wire: every scenario ends with a correct store, or a clear error and an untouched store.

The faults come from the shaping proxy in front of a real docker-registry (drops with FIN, RST
or silence, 5xx and 429 storms, a flipped byte, an expiring CDN redirect, Range ignored, a slow
trickle), and from the fake registry served over a real socket by uvicorn where the proxy
cannot lie (Content-Length that disagrees with the body). The store already holds another
model, which must come through every failure byte for byte. Pulls run in-process with a no-op
retry sleep so storms cost no wall time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ollama_seed import (
    IntegrityError,
    ModelName,
    ModelStore,
    PullResult,
    RegistryProtocolError,
    SeedError,
    TransferError,
)
from ollama_seed.pulling.session import PullSession
from ollama_seed.wire.transfer import TransferConfig
from tests.support import MIB
from tests.support.asgi import RegistryServer
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.invariants import assert_store_ok, tree
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

pytestmark = pytest.mark.registry
REPO = "library/faulty"


@pytest.fixture(scope="module")
def faulty(docker_registry: DockerRegistry) -> BuiltModel:
    m = make_model(size_bytes=6 * MIB + 333, seed=31, one_byte_layer=True)
    seed_registry(docker_registry.url, REPO, "latest", m)
    return m


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """A models directory holding another model already; it must survive every scenario."""
    root = tmp_path / "models"
    make_model(size_bytes=5000, seed=32).expected_store(root, "other.test", "library/kept", "v1")
    yield root
    assert_store_ok(root, modes=True)


def pull(
    models: Path,
    name: str,
    *,
    stall_timeout: float = 5.0,
    max_attempts: int = 20,
    connections: int = 4,
    transport: httpx.AsyncBaseTransport | None = None,
) -> PullResult:
    cfg = TransferConfig(
        connections=connections, stall_timeout=stall_timeout, max_attempts=max_attempts, sleep=lambda s: None
    )

    async def go() -> PullResult:
        async with PullSession(
            ModelStore(models), insecure=True, transfer=cfg, stall_timeout=stall_timeout, transport=transport
        ) as session:
            return await session.pull(ModelName.parse(name))

    return anyio.run(go)


def assert_untouched(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """What was there is unchanged, and nothing new but verified blobs (a resume point; no manifest)."""
    assert {k: after.get(k) for k in before} == before
    new = set(after) - set(before)
    assert all(k.startswith("blobs/sha256-") for k in new), new


def expected_tree(m: BuiltModel, root: Path, host: str, repo: str = REPO) -> dict[str, bytes]:
    m.expected_store(root, host, repo, "latest")
    return tree(root)


@dataclass
class Scenario:
    proxy: dict[str, Any]
    stall_timeout: float = 5.0
    faults_expected: bool = True


RECOVERABLE = {
    "drop-fin": Scenario({"drop_after_bytes": 300_000, "drop_style": "fin", "max_faults": 12}),
    "drop-rst": Scenario({"drop_after_bytes": 300_000, "drop_style": "rst", "max_faults": 12}),
    "drop-stall": Scenario(
        {"drop_after_bytes": 200_000, "drop_style": "stall", "stall_s": 3.0, "max_faults": 3}, stall_timeout=0.5
    ),
    "5xx-storm": Scenario({"fail_rate": 0.5, "fail_statuses": (500, 502, 503, 504), "max_faults": 30}),
    "429-storm": Scenario({"fail_rate": 0.6, "fail_statuses": (429,), "max_faults": 30}),
    "5xx-on-manifest-too": Scenario({"fail_rate": 1.0, "fail_statuses": (503,), "max_faults": 2, "fault_path": ""}),
    "corrupt-byte-once": Scenario({"corrupt_byte_at": 123_457, "max_faults": 1}),
    "expiring-cdn": Scenario({"redirect_blobs_to": "http://localhost:{port}", "cdn_expire_after": 3}),
    "range-ignored": Scenario({"ignore_range": True}, faults_expected=False),
}


@pytest.mark.parametrize("case", list(RECOVERABLE), ids=list(RECOVERABLE))
def test_recoverable_faults_end_with_a_correct_store(
    case: str, faulty: BuiltModel, docker_registry: DockerRegistry, store: Path, tmp_path: Path
) -> None:
    sc = RECOVERABLE[case]
    before = tree(store)
    with ProxyThread(docker_registry.url, seed=7, **sc.proxy) as proxy:
        host = proxy.url.removeprefix("http://")
        result = pull(store, f"{host}/{REPO}:latest", stall_timeout=sc.stall_timeout)
        snap = proxy.stats.snapshot()
    want = {**before, **expected_tree(faulty, tmp_path / "expected", host)}
    assert tree(store) == want
    assert result.bytes_downloaded >= faulty.model_layer.size
    assert list((store / ".ollama-seed" / "staging").iterdir()) == []
    if sc.faults_expected:
        assert snap["fault_total"] > 0 or snap["redirects"] > 0, snap


def test_slow_trickle_is_not_mistaken_for_a_stall(
    faulty: BuiltModel, docker_registry: DockerRegistry, store: Path
) -> None:
    """300 kB/s on one connection for about two seconds, with a 0.5 s stall timeout and no retry allowed:
    bytes keep coming (a few kB every 10 ms), so the slow body is never mistaken for a stall."""
    small = make_model(size_bytes=600_000, seed=33)
    seed_registry(docker_registry.url, "library/trickle", "latest", small)
    with ProxyThread(docker_registry.url, per_conn_bps=300e3) as proxy:
        host = proxy.url.removeprefix("http://")
        pull(store, f"{host}/library/trickle:latest", stall_timeout=0.5, max_attempts=1, connections=1)
        snap = proxy.stats.snapshot()
    assert snap["bytes_down"] <= small.total_size + 2 * len(small.manifest)  # nothing fetched twice
    assert ModelStore(store).verify(ModelName.parse(f"{host}/library/trickle:latest")) == []


FATAL: dict[str, tuple[dict[str, Any], type[SeedError], int, str]] = {
    "503-forever": ({"fail_rate": 1.0, "fail_statuses": (503,)}, TransferError, 4, "failed after 3 attempts: HTTP 503"),
    "stall-forever": (
        {"drop_after_bytes": 0, "drop_style": "stall", "stall_s": 3.0},
        TransferError,
        4,
        "failed after 3 attempts",
    ),
    "corrupt-always": ({"corrupt_byte_at": 1000}, IntegrityError, 5, "sha256 mismatch"),
    "404-blob": ({"fail_rate": 1.0, "fail_statuses": (404,)}, RegistryProtocolError, 4, "unexpected HTTP 404"),
}


@pytest.mark.parametrize("case", list(FATAL), ids=list(FATAL))
def test_persistent_faults_give_a_clear_error_and_an_untouched_store(
    case: str, faulty: BuiltModel, docker_registry: DockerRegistry, store: Path
) -> None:
    opts, error, code, message = FATAL[case]
    before = tree(store)
    with ProxyThread(docker_registry.url, **opts) as proxy:
        host = proxy.url.removeprefix("http://")
        with pytest.raises(SeedError) as info:
            pull(store, f"{host}/{REPO}:latest", stall_timeout=0.3, max_attempts=3)
    assert isinstance(info.value, error), info.value
    assert info.value.exit_code == code
    assert message in str(info.value)
    assert_untouched(before, tree(store))
    assert not (store / "blobs" / f"sha256-{faulty.model_layer.hex}").exists()


# --------------------------------------------------------------------------- Content-Length that lies, on a real socket


def lying_length(reg: FakeRegistry, *, delta: int, times: int) -> Any:
    """Answer the first *times* ranged blob GETs with a Content-Length *delta* bytes off the body's."""
    left = [times]

    async def handler(request: httpx.Request) -> httpx.Response:
        resp = await reg.handle(request)
        if resp.status_code == 206 and left[0] > 0:
            left[0] -= 1
            body = b"".join([chunk async for chunk in resp.aiter_raw()])
            headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body) + delta)))
            return httpx.Response(206, headers=headers, stream=_Once(body))
        return resp

    return handler


class _Once(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aiter__(self) -> Any:
        yield self.body


# The fake server breaks HTTP on purpose here (a body shorter than its Content-Length), and uvicorn
# can then leave its side of the socket for the garbage collector: on a loaded machine that
# ResourceWarning lands inside this test. It is the test server's socket, not ollama-seed's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("delta", [1000, -1000], ids=["longer-than-body", "shorter-than-body"])
def test_content_length_that_lies_is_resumed_from_the_last_good_byte(delta: int, store: Path, tmp_path: Path) -> None:
    m = make_model(size_bytes=3 * MIB + 5, seed=34)
    reg = FakeRegistry()
    reg.add(REPO, "latest", m)
    with RegistryServer(lying_length(reg, delta=delta, times=3)) as srv:
        before = tree(store)
        result = pull(store, f"{srv.host}/{REPO}:latest")
    assert tree(store) == {**before, **expected_tree(m, tmp_path / "expected", srv.host)}
    assert result.bytes_downloaded == m.total_size - result.bytes_reused  # not one byte fetched twice
    if delta < 0:  # a body cut short by its own Content-Length is resumed where it stopped
        assert len([u for u in reg.blob_requests() if m.model_layer.hex in u]) > 3


def test_200_with_the_wrong_content_length_is_refused(store: Path) -> None:
    m = make_model(size_bytes=MIB, seed=35)
    reg = FakeRegistry(Faults(ignore_range=True, wrong_length=True, blob_filter=m.model_layer.hex))
    reg.add(REPO, "latest", m)
    before = tree(store)
    with RegistryServer(reg) as srv, pytest.raises(RegistryProtocolError, match="Content-Length") as info:
        pull(store, f"{srv.host}/{REPO}:latest")
    assert info.value.exit_code == 4
    assert_untouched(before, tree(store))
