"""End-to-end pulls against the in-process registry: layout, idempotence, faults, resume."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

import ollama_seed
from ollama_seed import (
    InsufficientSpace,
    IntegrityError,
    LayerProgress,
    ModelName,
    ModelNotFound,
    ModelStore,
    RegistryProtocolError,
    Status,
    TransferError,
)
from ollama_seed.pulling.session import PullSession
from ollama_seed.wire.transfer import TransferConfig
from tests.support import MIB
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.invariants import tree
from tests.support.model import MT_SYSTEM, BuiltModel, make_model

pytestmark = pytest.mark.anyio
HOST = "reg.test"
NAME = f"{HOST}/library/tiny:latest"


def model(size: int = 5 * MIB + 3, **kw: Any) -> BuiltModel:
    return make_model(size_bytes=size, **kw)


def registry(m: BuiltModel, faults: Faults | None = None) -> FakeRegistry:
    reg = FakeRegistry(faults)
    reg.add("library/tiny", "latest", m)
    return reg


async def test_pull_writes_exactly_ollamas_layout(models_dir: Path, tmp_path: Path) -> None:
    m = model(one_byte_layer=True, duplicate_layer=1, extra_layers=[(MT_SYSTEM, b"")])
    reg = registry(m)
    result = await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport())
    expected = tmp_path / "expected"
    m.expected_store(expected, HOST, "library/tiny", "latest")
    assert tree(models_dir) == tree(expected)
    assert result.manifest_digest.hex == m.manifest_digest.removeprefix("sha256:")
    assert result.bytes_downloaded == m.total_size
    assert result.bytes_reused == 0
    assert result.blobs_downloaded == len(m.blobs)
    for p in models_dir.rglob("*"):
        if ".ollama-seed" in p.parts:
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), p
    assert stat.S_IMODE((models_dir / ".ollama-seed").stat().st_mode) == 0o700
    assert list((models_dir / ".ollama-seed" / "staging").iterdir()) == []


async def test_second_pull_sends_no_blob_request(models_dir: Path) -> None:
    reg = registry(model())
    await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport())
    first = len(reg.blob_requests())
    assert first > 0
    events: list[Any] = []
    result = await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport(), progress=events.append)
    assert len(reg.blob_requests()) == first
    assert result.bytes_downloaded == 0
    assert result.bytes_reused == result.total_size
    assert all(e.cached for e in events if isinstance(e, LayerProgress))


async def test_progress_events_follow_ollamas_phases(models_dir: Path) -> None:
    events: list[Any] = []
    m = model()
    await ollama_seed.apull(NAME, models_dir=models_dir, transport=registry(m).transport(), progress=events.append)
    phases = [e.status for e in events if isinstance(e, Status)]
    assert phases == ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]
    finals = {e.digest: e for e in events if isinstance(e, LayerProgress) and e.done}
    assert set(finals) == {b.digest for b in m.blobs}
    assert all(e.completed == e.total for e in finals.values())
    line = next(e for e in events if isinstance(e, LayerProgress)).to_ollama()
    assert line["status"].startswith("pulling ") and len(line["status"]) == len("pulling ") + 12


async def test_missing_model_is_not_found(models_dir: Path) -> None:
    reg = registry(model())
    with pytest.raises(ModelNotFound, match=r"'reg.test/library/nope:latest' not found at reg.test") as info:
        await ollama_seed.apull(f"{HOST}/library/nope", models_dir=models_dir, transport=reg.transport())
    assert info.value.exit_code == 3
    assert not (models_dir / "manifests").exists() or not any((models_dir / "manifests").rglob("*/*/*/*"))


@pytest.mark.parametrize(
    "faults",
    [
        Faults(drop_after=300_000, drops=3),
        Faults(ignore_range=True),
        Faults(statuses=[503, 429, 500], retry_after="0"),
        Faults(stall=3.0, stalls=2),
        Faults(corrupt_at=MIB + 17, corruptions=1),
        Faults(cdn_host="cdn.test"),
        Faults(cdn_host="cdn.test", cdn_expire_after=1),
        Faults(token="s3cret"),
    ],
    ids=["drops", "ignored-range", "5xx-429", "stall", "corrupt-once", "cdn", "cdn-expiring", "bearer-token"],
)
async def test_faults_end_with_a_correct_store(models_dir: Path, tmp_path: Path, faults: Faults) -> None:
    m = model()
    faults.blob_filter = m.model_layer.hex
    reg = registry(m, faults)
    await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport(), stall_timeout=1.0)
    expected = tmp_path / "expected"
    m.expected_store(expected, HOST, "library/tiny", "latest")
    assert tree(models_dir) == tree(expected)


async def test_authorization_never_reaches_the_cdn(models_dir: Path) -> None:
    m = model()
    reg = registry(m, Faults(cdn_host="cdn.test", token="s3cret"))
    await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport())
    cdn = [h for _, u, h in reg.requests if "cdn.test" in u]
    own = [h for _, u, h in reg.requests if f"{HOST}/v2/" in u]
    assert cdn and all("authorization" not in h for h in cdn)
    assert any(h.get("authorization") == "Bearer s3cret" for h in own)


async def test_corruption_every_time_is_an_integrity_error(models_dir: Path) -> None:
    m = model()
    reg = registry(m, Faults(corrupt_at=10, corruptions=100, blob_filter=m.model_layer.hex))
    with pytest.raises(IntegrityError, match="sha256 mismatch") as info:
        await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport())
    assert info.value.exit_code == 5
    assert not (models_dir / "blobs" / f"sha256-{m.model_layer.hex}").exists()
    assert not any((models_dir / "manifests").rglob("latest"))
    assert list((models_dir / ".ollama-seed" / "staging").iterdir()) == []


async def test_wrong_content_length_is_refused(models_dir: Path) -> None:
    m = model()
    reg = registry(m, Faults(ignore_range=True, wrong_length=True, blob_filter=m.model_layer.hex))
    with pytest.raises(RegistryProtocolError, match="Content-Length"):
        await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport())
    assert not any((models_dir / "manifests").rglob("latest"))


async def test_pinned_digest(models_dir: Path) -> None:
    m = model()
    reg = registry(m)
    other = "0" * 64
    with pytest.raises(IntegrityError, match="pins sha256:0000"):
        await ollama_seed.apull(f"{NAME}@sha256:{other}", models_dir=models_dir, transport=reg.transport())
    assert reg.blob_requests() == []
    result = await ollama_seed.apull(f"{NAME}@{m.manifest_digest}", models_dir=models_dir, transport=reg.transport())
    assert str(result.manifest_digest) == m.manifest_digest


async def test_free_space_is_checked_before_the_first_byte(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = registry(model())
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(InsufficientSpace, match=r"need .* but only 1.0 KB \(1000 bytes\) is free") as info:
        await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport())
    assert info.value.exit_code == 6
    assert reg.blob_requests() == []


async def test_gives_up_after_attempts_with_a_clear_error(models_dir: Path) -> None:
    m = model(size=MIB)
    reg = registry(m, Faults(statuses=[503] * 50, retry_after="0", blob_filter=m.model_layer.hex))
    store = ModelStore(models_dir)
    cfg = TransferConfig(connections=2, max_attempts=3, sleep=lambda s: None)
    async with PullSession(store, transport=reg.transport(), transfer=cfg) as session:
        with pytest.raises(TransferError, match=r"failed after 3 attempts: HTTP 503; run the pull again"):
            await session.pull(ModelName.parse(NAME))


async def test_resume_fetches_only_missing_bytes(models_dir: Path) -> None:
    """A pull that dies part-way leaves staging that the next pull continues from."""
    m = model(size=8 * MIB)
    size = m.model_layer.size
    store = ModelStore(models_dir)
    # first attempt: every connection drops after 1 MiB, and no retries are allowed
    faults = Faults(drop_after=MIB, drops=100, blob_filter=m.model_layer.hex)
    reg = registry(m, faults)
    cfg = TransferConfig(connections=2, max_attempts=1, sleep=lambda s: None)
    async with PullSession(store, transport=reg.transport(), transfer=cfg) as session:
        with pytest.raises(TransferError):
            await session.pull(ModelName.parse(NAME))
    first = reg.bytes_sent
    assert 0 < first < size
    staged = list((models_dir / ".ollama-seed" / "staging").iterdir())
    assert any(p.name.endswith(".data") for p in staged)
    assert not (models_dir / "blobs" / f"sha256-{m.model_layer.hex}").exists()
    # second attempt against a healthy registry: only what is missing goes over the wire
    reg2 = registry(m)
    await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg2.transport())
    model_bytes = reg2.bytes_sent - sum(b.size for b in m.blobs if b.hex != m.model_layer.hex)
    assert model_bytes == size - first
    assert ModelStore(models_dir).verify(ModelName.parse(NAME)) == []


async def test_a_shared_blob_is_fetched_once_per_session(models_dir: Path) -> None:
    a = make_model(size_bytes=2 * MIB, seed=1)
    b = make_model(size_bytes=2 * MIB, seed=1, template="another template")
    reg = FakeRegistry()
    reg.add("library/a", "latest", a)
    reg.add("library/b", "latest", b)
    import anyio

    async with PullSession(ModelStore(models_dir), transport=reg.transport()) as session:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.pull, ModelName.parse(f"{HOST}/library/a"))
            tg.start_soon(session.pull, ModelName.parse(f"{HOST}/library/b"))
    union = {x.digest: x.size for x in (*a.blobs, *b.blobs)}
    assert a.model_layer.digest == b.model_layer.digest
    assert reg.bytes_sent == sum(union.values())  # the shared 2 MiB layer went over the wire once


async def test_blocking_pull_inside_a_loop_says_what_to_do(models_dir: Path) -> None:
    with pytest.raises(RuntimeError, match=r"await ollama_seed.apull"):
        ollama_seed.pull(NAME, models_dir=models_dir)


def test_blocking_pull(models_dir: Path) -> None:
    m = model(size=MIB)
    result = ollama_seed.pull(NAME, models_dir=models_dir, transport=registry(m).transport())
    assert result.blobs_downloaded == len(m.blobs)
    assert os.path.exists(result.path)


async def test_http_scheme_needs_insecure(models_dir: Path) -> None:
    """As Ollama: an http:// name is refused unless the registry is marked insecure."""
    m = model(size=MIB)
    reg = registry(m)
    with pytest.raises(ollama_seed.InvalidName, match="insecure protocol http"):
        await ollama_seed.apull(f"http://{NAME}", models_dir=models_dir, transport=reg.transport())
    assert reg.requests == []
    await ollama_seed.apull(f"http://{NAME}", models_dir=models_dir, transport=reg.transport(), insecure=True)
    assert all(u.startswith("http://") for _, u, _ in reg.requests)


async def test_results_name_the_scheme_actually_used(models_dir: Path, tmp_path: Path) -> None:
    """An --insecure pull reports http (and where the manifest came from), not the default https."""
    m = model(size=MIB)
    reg = registry(m)
    result = await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport(), insecure=True)
    assert result.name.scheme == "http" and result.source == f"http://{HOST}"
    assert all(u.startswith("http://") for _, u, _ in reg.requests)
    secure = await ollama_seed.apull(NAME, models_dir=tmp_path / "other", transport=registry(m).transport())
    assert secure.name.scheme == "https" and secure.source == f"https://{HOST}"
    [report] = await ollama_seed.aensure(
        NAME, models_dir=tmp_path / "third", transport=registry(m).transport(), insecure=True
    )
    assert report.status == "pulled" and report.to_dict()["source"] == f"http://{HOST}"


async def test_bytes_downloaded_counts_what_came_before_a_restart_from_zero(models_dir: Path) -> None:
    """A server that ignores Range and drops the whole-body stream: the blob starts over from byte 0,
    and the bytes of the dropped attempt still count as downloaded."""
    m = model()
    reg = registry(m, Faults(ignore_range=True, drop_after=300_000, drops=1, blob_filter=m.model_layer.hex))
    result = await ollama_seed.apull(NAME, models_dir=models_dir, transport=reg.transport(), stall_timeout=1.0)
    assert reg.bytes_sent > m.total_size  # the dropped attempt's bytes came too
    assert result.bytes_downloaded == reg.bytes_sent
