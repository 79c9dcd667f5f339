"""ensure()/aensure(): no network when complete, only what is missing otherwise, offline, update, timeouts."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

import ollama_seed
from ollama_seed import (
    EnsureReport,
    InvalidName,
    ModelNotFound,
    OfflineError,
    SeedTimeout,
)
from ollama_seed.core.progress import ProgressEvent, Status
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.model import MT_TEMPLATE, BuiltModel, bytes_blob, compact_json, make_model

HOST = "registry.ollama.ai"


class NoNetwork(httpx.AsyncBaseTransport):
    """A transport that fails the test on any request."""

    def __init__(self) -> None:
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise AssertionError(f"ensure made a network request: {request.method} {request.url}")


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a socket connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _install(model: BuiltModel, root: Path, repo: str = "library/tiny", tag: str = "latest") -> Path:
    return model.expected_store(root, HOST, repo, tag)


def test_complete_model_makes_no_network_call(models_dir: Path, no_sockets: None) -> None:
    model = make_model(size_bytes=50_000)
    _install(model, models_dir)
    transport = NoNetwork()
    reports = ollama_seed.ensure("tiny", models_dir=models_dir, transport=transport)
    assert transport.calls == 0
    assert [r.status for r in reports] == ["present"]
    assert reports[0].bytes_fetched == 0
    assert reports[0].manifest_digest is not None
    assert str(reports[0].manifest_digest) == model.manifest_digest
    assert reports[0].model == "tiny:latest"


@pytest.mark.anyio
async def test_aensure_complete_model_makes_no_network_call(models_dir: Path, no_sockets: None) -> None:
    model = make_model(size_bytes=50_000)
    _install(model, models_dir)
    _install(make_model(size_bytes=1000, seed=3), models_dir, "library/other", "1b")
    transport = NoNetwork()
    reports = await ollama_seed.aensure(["tiny", "other:1b"], models_dir=models_dir, transport=transport)
    assert transport.calls == 0
    assert [(r.model, r.status) for r in reports] == [("tiny:latest", "present"), ("other:1b", "present")]


def test_absent_model_is_pulled_then_present_without_network(models_dir: Path) -> None:
    model = make_model(size_bytes=200_000)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", model)
    events: list[ProgressEvent] = []
    [report] = ollama_seed.ensure("tiny", models_dir=models_dir, transport=reg.transport(), progress=events.append)
    assert report.status == "pulled"
    assert report.bytes_fetched == model.total_size
    assert Status("tiny:latest", "success") in events
    manifest = models_dir / "manifests" / HOST / "library" / "tiny" / "latest"
    assert manifest.read_bytes() == model.manifest
    [again] = ollama_seed.ensure("tiny", models_dir=models_dir, transport=NoNetwork())
    assert again.status == "present"


def test_only_missing_blob_is_fetched_using_the_manifest_on_disk(models_dir: Path) -> None:
    model = make_model(size_bytes=100_000)
    _install(model, models_dir)
    (models_dir / "blobs" / f"sha256-{model.model_layer.hex}").unlink()
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", model)
    [report] = ollama_seed.ensure("tiny", models_dir=models_dir, transport=reg.transport())
    assert report.status == "pulled"
    assert report.bytes_fetched == model.model_layer.size
    assert all(model.model_layer.hex in url for url in reg.blob_requests())
    assert not any("/manifests/" in url for _, url, _ in reg.requests)  # the manifest on disk was used


def test_wrong_size_blob_counts_as_missing(models_dir: Path) -> None:
    model = make_model(size_bytes=10_000)
    _install(model, models_dir)
    blob = models_dir / "blobs" / f"sha256-{model.model_layer.hex}"
    blob.write_bytes(blob.read_bytes()[:-1])
    with pytest.raises(OfflineError, match="1 blob"):
        ollama_seed.ensure("tiny", models_dir=models_dir, offline=True)


def test_several_models_share_a_blob_fetched_once(models_dir: Path) -> None:
    a = make_model(size_bytes=300_000, seed=1)
    b = make_model(size_bytes=300_000, seed=1, template="another template")  # same weights, other template
    assert a.model_layer.digest == b.model_layer.digest
    reg = FakeRegistry()
    reg.add("library/a", "latest", a)
    reg.add("library/b", "latest", b)
    reports = ollama_seed.ensure(["a", "b"], models_dir=models_dir, transport=reg.transport())
    assert [r.status for r in reports] == ["pulled", "pulled"]
    distinct = {x.digest: x.size for x in (*a.blobs, *b.blobs)}
    assert reg.bytes_sent == sum(distinct.values())  # every distinct blob's bytes crossed the wire once
    assert sum(r.bytes_fetched for r in reports) == sum(distinct.values())


def test_duplicate_names_are_ensured_once(models_dir: Path) -> None:
    model = make_model(size_bytes=1000)
    _install(model, models_dir)
    reports = ollama_seed.ensure(
        ["tiny", "tiny:latest", "registry.ollama.ai/library/tiny:latest"], models_dir=models_dir, transport=NoNetwork()
    )
    assert len(reports) == 1


def test_names_given_as_an_iterator_are_read_once(models_dir: Path) -> None:
    """The cheap check and the pull both need the names: a generator is not used up by the first."""
    _install(make_model(size_bytes=1000, seed=3), models_dir)
    reg = FakeRegistry()
    reg.add("library/other", "latest", make_model(size_bytes=2000, seed=4))
    reports = ollama_seed.ensure((n for n in ["tiny", "other"]), models_dir=models_dir, transport=reg.transport())
    assert [(r.model, r.status) for r in reports] == [("tiny:latest", "present"), ("other:latest", "pulled")]


def _with_new_template(model: BuiltModel, text: str) -> BuiltModel:
    """The same model with its template layer replaced (an upstream update)."""
    layers = [
        bytes_blob(MT_TEMPLATE, text.encode(), "template") if b.media_type == MT_TEMPLATE else b for b in model.layers
    ]
    doc = json.loads(model.manifest)
    doc["layers"] = [b.descriptor() for b in layers]
    return BuiltModel(compact_json(doc), model.config, layers)


def test_update_fetches_only_changed_layers(models_dir: Path) -> None:
    old = make_model(size_bytes=200_000)
    _install(old, models_dir)
    new = _with_new_template(old, "{{ .Prompt }} (v2)")
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", new)
    [report] = ollama_seed.ensure("tiny", models_dir=models_dir, update=True, transport=reg.transport())
    assert report.status == "updated"
    changed = next(b for b in new.layers if b.media_type == MT_TEMPLATE)
    assert report.bytes_fetched == changed.size
    assert reg.blob_requests() and all(changed.hex in u for u in reg.blob_requests())
    assert (models_dir / "manifests" / HOST / "library" / "tiny" / "latest").read_bytes() == new.manifest


def test_update_when_current_fetches_the_manifest_only(models_dir: Path) -> None:
    model = make_model(size_bytes=20_000)
    _install(model, models_dir)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", model)
    [report] = ollama_seed.ensure("tiny", models_dir=models_dir, update=True, transport=reg.transport())
    assert report.status == "present"
    assert [u for _, u, _ in reg.requests] == [f"https://{HOST}/v2/library/tiny/manifests/latest"]


def test_offline_with_missing_model_fails_naming_it(models_dir: Path, no_sockets: None) -> None:
    _install(make_model(size_bytes=1000), models_dir)
    with pytest.raises(OfflineError) as caught:
        ollama_seed.ensure(["tiny", "gpt-oss:20b"], models_dir=models_dir, offline=True, transport=NoNetwork())
    assert "gpt-oss:20b" in str(caught.value)
    assert "tiny" not in str(caught.value).split("complete in", 1)[1].split(":", 1)[1]
    assert caught.value.exit_code == 10


def test_offline_from_environment(models_dir: Path, monkeypatch: pytest.MonkeyPatch, no_sockets: None) -> None:
    monkeypatch.setenv("OLLAMA_SEED_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"llama3\.2:1b"):
        ollama_seed.ensure("llama3.2:1b", models_dir=models_dir, transport=NoNetwork())
    monkeypatch.setenv("OLLAMA_SEED_OFFLINE", "0")
    reg = FakeRegistry()
    reg.add("library/llama3.2", "1b", make_model(size_bytes=1000))
    [report] = ollama_seed.ensure("llama3.2:1b", models_dir=models_dir, transport=reg.transport())
    assert report.status == "pulled"


def test_offline_wins_over_update(models_dir: Path, no_sockets: None) -> None:
    _install(make_model(size_bytes=1000), models_dir)
    [report] = ollama_seed.ensure("tiny", models_dir=models_dir, offline=True, update=True, transport=NoNetwork())
    assert report.status == "present"


def test_verify_refetches_a_corrupt_blob(models_dir: Path) -> None:
    model = make_model(size_bytes=30_000)
    _install(model, models_dir)
    blob = models_dir / "blobs" / f"sha256-{model.model_layer.hex}"
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))  # same size: the cheap check cannot see it
    assert ollama_seed.ensure("tiny", models_dir=models_dir, transport=NoNetwork())[0].status == "present"
    with pytest.raises(OfflineError, match="sha256 does not match"):
        ollama_seed.ensure("tiny", models_dir=models_dir, verify=True, offline=True)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", model)
    [report] = ollama_seed.ensure("tiny", models_dir=models_dir, verify=True, transport=reg.transport())
    assert report.status == "pulled"
    assert report.bytes_fetched == model.model_layer.size
    assert blob.read_bytes() == model.model_layer.read_bytes()


def test_pinned_digest_mismatch_is_not_complete(models_dir: Path) -> None:
    _install(make_model(size_bytes=1000), models_dir)
    pin = "sha256:" + "0" * 64
    with pytest.raises(OfflineError, match="not the pinned"):
        ollama_seed.ensure(f"tiny@{pin}", models_dir=models_dir, offline=True)


def test_overall_timeout(models_dir: Path) -> None:
    reg = FakeRegistry(Faults(stall=30.0, stalls=100))
    reg.add("library/tiny", "latest", make_model(size_bytes=100_000))
    with pytest.raises(SeedTimeout) as caught:
        ollama_seed.ensure("tiny", models_dir=models_dir, transport=reg.transport(), timeout=0.5)
    assert "0.5 s" in str(caught.value)
    assert "tiny:latest" in str(caught.value)
    assert caught.value.exit_code == 9


def test_one_failing_model_does_not_stop_the_others(models_dir: Path) -> None:
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", make_model(size_bytes=50_000))
    with pytest.raises(ModelNotFound, match="nosuch"):
        ollama_seed.ensure(["nosuch", "tiny"], models_dir=models_dir, transport=reg.transport())
    assert ollama_seed.ensure("tiny", models_dir=models_dir, transport=NoNetwork())[0].status == "present"


def test_invalid_name_is_rejected_before_anything(models_dir: Path) -> None:
    with pytest.raises(InvalidName):
        ollama_seed.ensure(["tiny", "bad name"], models_dir=models_dir, transport=NoNetwork())


@pytest.mark.anyio
async def test_blocking_ensure_inside_event_loop_is_a_clear_error(models_dir: Path) -> None:
    with pytest.raises(RuntimeError, match=r"await ollama_seed\.aensure"):
        ollama_seed.ensure("tiny", models_dir=models_dir)


def test_report_to_dict_is_json_ready(models_dir: Path) -> None:
    _install(make_model(size_bytes=1000), models_dir)
    [report] = ollama_seed.ensure("tiny", models_dir=models_dir)
    assert isinstance(report, EnsureReport)
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["model"] == "tiny:latest"
    assert doc["status"] == "present"
    assert doc["bytes_fetched"] == 0
    assert not report.fetched


def test_mirrors_are_tried_first_and_skipped_when_down(models_dir: Path) -> None:
    """ensure passes mirrors to the pull engine: a dead mirror is skipped, a good one serves."""
    model = make_model(size_bytes=40_000)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", model)
    hosts: list[str] = []

    async def route(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "down.lan":
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.host == "mirror.lan":
            return await reg.handle(request)
        return httpx.Response(500)  # the real registry must not be needed

    [report] = ollama_seed.ensure(
        "tiny",
        models_dir=models_dir,
        transport=httpx.MockTransport(route),
        mirrors=["http://down.lan:5000", "http://mirror.lan:5000"],
    )
    assert report.status == "pulled"
    assert report.bytes_fetched == model.total_size
    assert HOST not in hosts
    assert "down.lan" in hosts
