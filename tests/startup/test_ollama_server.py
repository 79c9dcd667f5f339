"""The Ollama server client: OLLAMA_HOST parsing, readiness with backoff, show, pull, load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import ollama_seed
from ollama_seed import ConfigError, ServerError
from ollama_seed.core.progress import LayerProgress, ProgressEvent, Status
from ollama_seed.startup.server import ServerClient, parse_host
from tests.support.fake_ollama import FakeOllama, ServerThread
from tests.support.model import make_model


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "http://127.0.0.1:11434"),
        ("   ", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),  # bind-all is reached at loopback (ConnectableHost)
        ("0.0.0.0:11434", "http://127.0.0.1:11434"),
        (":11435", "http://127.0.0.1:11435"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        ("1.2.3.4:5678", "http://1.2.3.4:5678"),
        ("ollama", "http://ollama:11434"),
        ("ollama:8080", "http://ollama:8080"),
        ("example.com", "http://example.com:11434"),
        ("http://example.com", "http://example.com:80"),  # a scheme given: its default port
        ("https://example.com", "https://example.com:443"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("http://ollama:11434/", "http://ollama:11434"),
        ("http://proxy.lan/ollama", "http://proxy.lan:80/ollama"),  # a path is kept as a prefix
        ("ollama.com", "https://ollama.com:443"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("::1", "http://[::1]:11434"),
        ("[::]:11434", "http://[::1]:11434"),
        ("host:notaport", "http://host:11434"),  # an invalid port falls back to the default
        ("host:99999", "http://host:11434"),
        ('"127.0.0.1:1234"', "http://127.0.0.1:1234"),  # quotes are trimmed, as envconfig.Var does
    ],
)
def test_parse_host_matches_ollama(value: str, expected: str) -> None:
    assert parse_host(value) == expected


def test_parse_host_reads_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_host() == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "ollama:11500")
    assert parse_host() == "http://ollama:11500"
    assert parse_host(environ={"OLLAMA_HOST": "https://x"}) == "https://x:443"


def test_parse_host_rejects_unknown_scheme() -> None:
    with pytest.raises(ConfigError, match="neither http nor https"):
        parse_host("tcp://host:1")


def _client(app: Any) -> ServerClient:
    return ServerClient("http://127.0.0.1:11434", transport=httpx.ASGITransport(app))


@pytest.mark.anyio
async def test_wait_ready_answers_with_version(tmp_path: Path) -> None:
    async with _client(FakeOllama(tmp_path, version="0.9.1")) as client:
        info = await client.wait(1.0)
    assert info.version == "0.9.1"
    assert info.url == "http://127.0.0.1:11434"


@pytest.mark.anyio
async def test_wait_backs_off_while_server_answers_503(tmp_path: Path) -> None:
    app = FakeOllama(tmp_path, ready_after=3600)
    naps: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 6:
            app.ready_at = 0.0

    async with _client(app) as client:
        info = await client.wait(None, sleep=sleep)
    assert info.version == "0.12.0"
    assert len(naps) == 6
    # capped exponential backoff with +-20% jitter: 0.1, 0.2, 0.4, 0.8, 1.6, 2.0
    for nap, base in zip(naps, [0.1, 0.2, 0.4, 0.8, 1.6, 2.0], strict=True):
        assert base * 0.8 <= nap <= base * 1.2
    assert sum(1 for method, path, _ in app.requests if path == "/api/version") == 7


def test_wait_ready_for_a_server_that_starts_late(tmp_path: Path) -> None:
    with ServerThread(FakeOllama(tmp_path), delay=1.5) as server:
        info = ollama_seed.wait_ready(server.url, timeout=20)
    assert info.url == server.url
    assert info.waited >= 1.0  # it really was refused first


def test_wait_ready_timeout_names_address_and_last_failure(dead_port: int) -> None:
    with pytest.raises(ServerError) as caught:
        ollama_seed.wait_ready(f"127.0.0.1:{dead_port}", timeout=0.5)
    message = str(caught.value)
    assert f"http://127.0.0.1:{dead_port}" in message
    assert "not ready" in message
    assert "connection refused" in message.lower()
    assert caught.value.exit_code == 11


@pytest.mark.anyio
async def test_await_ready_timeout_on_503(tmp_path: Path) -> None:
    app = FakeOllama(tmp_path, ready_after=3600)
    with pytest.raises(ServerError, match="HTTP 503"):
        await ollama_seed.await_ready("127.0.0.1", timeout=0.3, transport=httpx.ASGITransport(app))


@pytest.mark.anyio
async def test_wait_ready_inside_loop_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"await ollama_seed\.await_ready"):
        ollama_seed.wait_ready("127.0.0.1:1", timeout=0)


@pytest.mark.anyio
async def test_show_present_and_absent(tmp_path: Path) -> None:
    model = make_model(size_bytes=2048)
    model.expected_store(tmp_path, "registry.ollama.ai", "library/tiny", "latest")
    async with _client(FakeOllama(tmp_path)) as client:
        assert await client.has_model("tiny")
        assert await client.has_model("TINY:latest")  # case-insensitive, as Ollama
        assert not await client.has_model("other:1b")
        tags = await client.tags()
    assert [t["name"] for t in tags] == ["tiny:latest"]
    assert tags[0]["digest"] == model.manifest_digest.removeprefix("sha256:")


@pytest.mark.anyio
async def test_pull_through_server_turns_ndjson_into_events(tmp_path: Path) -> None:
    model = make_model(size_bytes=4096)
    app = FakeOllama(tmp_path, catalog={"tiny:latest": model})
    events: list[ProgressEvent] = []
    async with _client(app) as client:
        outcome = await client.pull("tiny", progress=events.append)
        assert await client.has_model("tiny")
    assert outcome.bytes_fetched == model.total_size
    statuses = [e.status for e in events if isinstance(e, Status)]
    assert statuses == ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]
    done = {e.digest for e in events if isinstance(e, LayerProgress) and e.done}
    assert done == {b.digest for b in model.blobs}
    assert all(e.model == "tiny" for e in events)
    assert ("POST", "/api/pull", {"model": "tiny", "insecure": False, "stream": True}) in app.requests


@pytest.mark.anyio
async def test_pull_counts_blobs_the_server_had_as_reused(tmp_path: Path) -> None:
    model = make_model(size_bytes=4096)
    model.expected_store(tmp_path, "registry.ollama.ai", "library/tiny", "latest")
    async with _client(FakeOllama(tmp_path, catalog={"tiny": model})) as client:
        outcome = await client.pull("tiny")
    assert outcome.bytes_fetched == 0
    assert outcome.bytes_reused == model.total_size


@pytest.mark.anyio
async def test_pull_error_line_is_a_server_error(tmp_path: Path) -> None:
    app = FakeOllama(tmp_path, pull_error="pull model manifest: file does not exist")
    events: list[ProgressEvent] = []
    async with _client(app) as client:
        with pytest.raises(ServerError, match="could not pull nosuch: pull model manifest: file does not exist"):
            await client.pull("nosuch", progress=events.append)
    assert events == [Status("nosuch", "pulling manifest")]


@pytest.mark.anyio
async def test_pull_http_error_and_truncated_stream(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid model name"})

    async with ServerClient("x:1", transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(ServerError, match="invalid model name"):
            await client.pull("bad")

    def truncated(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps({"status": "pulling manifest"}).encode() + b"\n")

    async with ServerClient("x:1", transport=httpx.MockTransport(truncated)) as client:
        with pytest.raises(ServerError, match="ended without 'success'"):
            await client.pull("tiny")


@pytest.mark.anyio
async def test_load_sends_keep_alive_and_reports_refusals(tmp_path: Path) -> None:
    model = make_model(size_bytes=1024)
    model.expected_store(tmp_path, "registry.ollama.ai", "library/tiny", "latest")
    app = FakeOllama(tmp_path)
    async with _client(app) as client:
        await client.load("tiny", keep_alive="10m")
        with pytest.raises(ServerError, match="could not load ghost: model 'ghost' not found"):
            await client.load("ghost")
    assert app.loaded == {"tiny:latest": "10m"}


@pytest.mark.anyio
async def test_unreachable_server_is_a_server_error(dead_port: int) -> None:
    async with ServerClient(f"127.0.0.1:{dead_port}") as client:
        with pytest.raises(ServerError, match=f"127.0.0.1:{dead_port}.*show tiny failed"):
            await client.has_model("tiny")
