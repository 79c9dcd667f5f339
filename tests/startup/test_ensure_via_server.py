"""ensure() with an Ollama server: it must see the model, warm it, or pull it itself (via_server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import ollama_seed
from ollama_seed import OfflineError, SeedTimeout, ServerError
from ollama_seed.core.progress import LayerProgress, ProgressEvent
from tests.startup.test_ensure import HOST, NoNetwork
from tests.support.fake_ollama import FakeOllama, ServerThread
from tests.support.fake_registry import FakeRegistry
from tests.support.model import make_model


def _asgi(app: FakeOllama) -> httpx.ASGITransport:
    return httpx.ASGITransport(app)


def test_server_sees_complete_model(models_dir: Path) -> None:
    make_model(size_bytes=5000).expected_store(models_dir, HOST, "library/tiny", "latest")
    app = FakeOllama(models_dir)
    [report] = ollama_seed.ensure(
        "tiny", models_dir=models_dir, server="http://ollama:11434", transport=NoNetwork(), server_transport=_asgi(app)
    )
    assert report.status == "present"
    assert report.server == "http://ollama:11434"
    assert ("POST", "/api/show", {"model": "tiny:latest"}) in app.requests
    assert not report.warmed


def test_server_with_another_models_dir_is_an_error(models_dir: Path, tmp_path: Path) -> None:
    make_model(size_bytes=5000).expected_store(models_dir, HOST, "library/tiny", "latest")
    app = FakeOllama(tmp_path / "elsewhere")
    with pytest.raises(ServerError, match="does not see it: the server reads another models directory"):
        ollama_seed.ensure("tiny", models_dir=models_dir, server="ollama", server_transport=_asgi(app))


def test_pull_then_warm(models_dir: Path) -> None:
    model = make_model(size_bytes=30_000)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", model)
    app = FakeOllama(models_dir)
    [report] = ollama_seed.ensure(
        "tiny",
        models_dir=models_dir,
        warm=True,
        keep_alive="1h",
        transport=reg.transport(),
        server_transport=_asgi(app),
    )
    assert report.status == "pulled"
    assert report.warmed
    assert report.server == "http://127.0.0.1:11434"  # warm implies $OLLAMA_HOST
    assert app.loaded == {"tiny:latest": "1h"}


def test_server_that_starts_late_over_a_real_socket(models_dir: Path) -> None:
    make_model(size_bytes=5000).expected_store(models_dir, HOST, "library/tiny", "latest")
    with ServerThread(FakeOllama(models_dir), delay=1.0) as server:
        [report] = ollama_seed.ensure("tiny", models_dir=models_dir, server=server.url, wait_timeout=20)
    assert report.server == server.url


def test_server_never_ready(models_dir: Path, tmp_path: Path) -> None:
    make_model(size_bytes=5000).expected_store(models_dir, HOST, "library/tiny", "latest")
    app = FakeOllama(models_dir, ready_after=3600)
    with pytest.raises(ServerError, match=r"http://127\.0\.0\.1:11434 was not ready.*HTTP 503"):
        ollama_seed.ensure("tiny", models_dir=models_dir, server="", wait_timeout=0.3, server_transport=_asgi(app))


def test_overall_timeout_while_waiting_for_the_server(models_dir: Path) -> None:
    make_model(size_bytes=5000).expected_store(models_dir, HOST, "library/tiny", "latest")
    app = FakeOllama(models_dir, ready_after=3600)
    with pytest.raises(SeedTimeout, match="waiting for the Ollama server"):
        ollama_seed.ensure(
            "tiny", models_dir=models_dir, server="", wait_timeout=60, timeout=0.4, server_transport=_asgi(app)
        )


def test_via_server_pulls_when_absent(models_dir: Path) -> None:
    model = make_model(size_bytes=20_000)
    app = FakeOllama(models_dir, catalog={"tiny": model})
    events: list[ProgressEvent] = []
    [report] = ollama_seed.ensure(
        "tiny",
        via_server=True,
        server="ollama:11434",
        progress=events.append,
        transport=NoNetwork(),
        server_transport=_asgi(app),
    )
    assert report.status == "pulled"
    assert report.via_server
    assert report.bytes_fetched == model.total_size
    assert str(report.manifest_digest) == model.manifest_digest
    assert any(isinstance(e, LayerProgress) and e.done for e in events)
    assert (models_dir / "manifests" / HOST / "library" / "tiny" / "latest").read_bytes() == model.manifest


def test_via_server_present_does_not_pull(models_dir: Path) -> None:
    model = make_model(size_bytes=20_000)
    model.expected_store(models_dir, HOST, "library/tiny", "latest")
    app = FakeOllama(models_dir, catalog={"tiny": model})
    [report] = ollama_seed.ensure("tiny", via_server=True, warm=True, server_transport=_asgi(app))
    assert report.status == "present"
    assert report.warmed
    assert not any(path == "/api/pull" for _, path, _ in app.requests)
    assert "tiny:latest" in app.loaded


def test_via_server_update_reports_present_when_unchanged(models_dir: Path) -> None:
    model = make_model(size_bytes=20_000)
    model.expected_store(models_dir, HOST, "library/tiny", "latest")
    app = FakeOllama(models_dir, catalog={"tiny": model})
    [report] = ollama_seed.ensure("tiny", via_server=True, update=True, server_transport=_asgi(app))
    assert report.status == "present"
    assert report.bytes_fetched == 0
    assert any(path == "/api/pull" for _, path, _ in app.requests)


def test_via_server_error_line_fails(models_dir: Path) -> None:
    app = FakeOllama(models_dir, pull_error="max retries exceeded: EOF")
    with pytest.raises(ServerError, match="could not pull tiny:latest: max retries exceeded: EOF"):
        ollama_seed.ensure("tiny", via_server=True, server_transport=_asgi(app))


def test_via_server_offline_missing(models_dir: Path) -> None:
    app = FakeOllama(models_dir, catalog={"tiny": make_model(size_bytes=1000)})
    with pytest.raises(OfflineError, match="does not have tiny:latest"):
        ollama_seed.ensure("tiny", via_server=True, offline=True, server_transport=_asgi(app))
    assert not any(path == "/api/pull" for _, path, _ in app.requests)


def test_via_server_pulling_through_our_engine(models_dir: Path) -> None:
    """The fake server pulls with ollama_seed's own engine from an in-process registry."""
    model = make_model(size_bytes=100_000)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", model)
    app = FakeOllama(models_dir, registry_transport=reg.transport())
    [report] = ollama_seed.ensure("tiny", via_server=True, server_transport=_asgi(app))
    assert report.status == "pulled"
    assert report.bytes_fetched == model.total_size
    [again] = ollama_seed.ensure("tiny", models_dir=models_dir, transport=NoNetwork())
    assert again.status == "present"
