"""What the store does so that a power cut leaves nothing it cannot repair (issue 22): syncs that
fail say so, directories and blobs are durable before anything names them, and a manifest that
cannot be read is removed, overwritten and reported by the tool's own commands.

The crash-state explorer (tests/reliability/crash) proves the ordering over whole workloads;
these tests pin each mechanism down on its own."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

import ollama_seed
from ollama_seed.cli.main import main
from ollama_seed.core.digest import Digest
from ollama_seed.core.errors import StoreError
from ollama_seed.core.manifest import Layer, Manifest
from ollama_seed.core.reference import ModelName
from ollama_seed.store import oscalls
from ollama_seed.store.fsutil import ensure_dir
from ollama_seed.store.store import ModelStore
from tests.reliability.crash.record import Recorder, recording
from tests.support.fake_registry import FakeRegistry
from tests.support.model import make_model

NAME = "reg.test/library/tiny:latest"


def test_a_directory_sync_that_fails_with_eio_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    plat = oscalls.emulate("linux")
    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(OSError, match="I/O error") as caught:
        plat.fsync_dir(tmp_path)
    assert caught.value.errno == errno.EIO


def test_a_file_system_that_cannot_sync_a_directory_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def einval(fd: int) -> None:
        raise OSError(errno.EINVAL, "not supported here")

    monkeypatch.setattr(os, "fsync", einval)
    oscalls.emulate("linux").fsync_dir(tmp_path)


def test_each_new_directory_is_synced_into_its_parent(tmp_path: Path) -> None:
    rec = Recorder([tmp_path])
    with recording(rec):
        ensure_dir(tmp_path / "a" / "b")
        ensure_dir(tmp_path / "a" / "b")  # there already: nothing to do
    assert [(op.kind, op.path) for op in rec.ops] == [
        ("mkdir", "0:a"),
        ("fsync_dir", "0:"),
        ("mkdir", "0:a/b"),
        ("fsync_dir", "0:a"),
    ]


def test_a_blob_is_sealed_mode_first_then_synced_then_renamed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.prepare()
    staged = store.layout.staging_dir / "x"
    staged.write_bytes(b"blob")
    os.chmod(staged, 0o600)
    layer = Layer("application/vnd.ollama.image.model", Digest.parse(f"sha256:{_sha(b'blob')}"), 4)
    rec = Recorder([store.root])
    with recording(rec):
        store.install_blob(staged, layer)
    kinds = [op.kind for op in rec.ops if op.kind in ("attr", "fsync", "rename", "fsync_dir")]
    assert kinds[:4] == ["attr", "fsync", "rename", "fsync_dir"]
    assert (store.layout.blob(layer.digest).stat().st_mode & 0o777) == 0o644


def test_a_manifest_names_only_blobs_made_durable_first(tmp_path: Path) -> None:
    """Blobs another writer left (Ollama syncs nothing) are synced before a manifest names them."""
    m = make_model(size_bytes=1000)
    store = ModelStore(tmp_path / "models")
    store.prepare()
    for b in m.blobs:
        store.layout.blob(Digest.parse(b.digest)).write_bytes(b.read_bytes())
    rec = Recorder([store.root])
    with recording(rec):
        ModelStore(store.root).write_manifest(ModelName.parse(NAME), Manifest.parse(m.manifest))
    synced = [op for op in rec.ops if op.kind == "fsync"]
    rename = next(i for i, op in enumerate(rec.ops) if op.kind == "rename")
    assert len(synced) == len(m.blobs) + 1  # each blob, then the manifest's temporary file
    assert all(rec.ops.index(op) < rename for op in synced)
    assert ("fsync_dir", "0:blobs") in [(op.kind, op.path) for op in rec.ops[:rename]]


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def torn(tmp_path: Path) -> Path:
    """A store with a complete model whose manifest Ollama left zero-length (a power cut after
    its ``os.Create``), and another model sharing nothing."""
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", make_model(size_bytes=2000, seed=1))
    reg.add("library/other", "latest", make_model(size_bytes=3000, seed=2))
    root = tmp_path / "models"
    ollama_seed.pull(NAME, models_dir=root, transport=reg.transport())
    ollama_seed.pull("reg.test/library/other:latest", models_dir=root, transport=reg.transport())
    (root / "manifests/reg.test/library/tiny/latest").write_bytes(b"")
    return root


def test_rm_removes_an_unreadable_manifest_and_keeps_every_blob(torn: Path) -> None:
    blobs = sorted(p.name for p in (torn / "blobs").iterdir())
    assert main(["rm", "--models-dir", str(torn), NAME]) == 0
    assert not (torn / "manifests/reg.test/library/tiny").exists()
    assert sorted(p.name for p in (torn / "blobs").iterdir()) == blobs  # prune reclaims them later
    assert main(["prune", "--models-dir", str(torn), "--grace", "0"]) == 0
    assert len(list((torn / "blobs").iterdir())) < len(blobs)


def test_rm_of_an_unreadable_link_or_nothing_still_refuses(torn: Path) -> None:
    with pytest.raises(ollama_seed.ModelNotFound):
        ModelStore(torn).remove(ModelName.parse("reg.test/library/absent:latest"))


def test_verify_and_list_report_an_unreadable_manifest_without_failing(
    torn: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--models-dir", str(torn)]) == 0
    out = capsys.readouterr()
    assert "other" in out.out and "cannot be read" in out.err and f"ollama-seed rm {NAME}" in out.err
    assert main(["verify", "--models-dir", str(torn)]) == 5  # damage found, as for a damaged blob
    out = capsys.readouterr()
    assert "cannot be read" in out.out and "BAD" in out.out and "ollama-seed rm" in out.err + out.out


def test_the_mirror_evicts_a_model_whose_manifest_is_unreadable(torn: Path) -> None:
    from ollama_seed.mirror.budget import CacheBudget

    budget = CacheBudget(ModelStore(torn), max_bytes=1 << 30)
    budget.start()
    budget._evict("reg.test/library/tiny:latest")
    assert not (torn / "manifests/reg.test/library/tiny/latest").exists()


def test_reading_an_unreadable_manifest_advises_rm_which_works(torn: Path) -> None:
    with pytest.raises(StoreError, match=re.escape(f"rm {NAME}")):
        ModelStore(torn).read_manifest(ModelName.parse(NAME))
    ModelStore(torn).remove(ModelName.parse(NAME))


def test_create_overwrites_an_unreadable_manifest(torn: Path, tmp_path: Path) -> None:
    from tests.reliability.crash.workloads import write_gguf

    write_gguf(tmp_path / "m.gguf")
    (tmp_path / "Modelfile").write_text("FROM ./m.gguf\n")
    assert main(["create", "--models-dir", str(torn), NAME, "-f", str(tmp_path / "Modelfile"), "--offline"]) == 0
    assert ModelStore(torn).verify(ModelName.parse(NAME)) == []


def test_ensure_verify_replaces_zero_filled_weights_by_rename_never_deleting_first(tmp_path: Path) -> None:
    """What Ollama's sparse Truncate leaves after a crash: the right size, all zeros. verify finds
    it; ensure --verify renames the fetched bytes over it, with no moment where the manifest names
    a missing blob."""
    reg = FakeRegistry()
    m = make_model(size_bytes=5000, seed=3)
    reg.add("library/tiny", "latest", m)
    root = tmp_path / "models"
    ollama_seed.pull(NAME, models_dir=root, transport=reg.transport())
    blob = root / "blobs" / f"sha256-{m.model_layer.hex}"
    size = blob.stat().st_size
    blob.unlink()
    with open(blob, "wb") as f:
        f.truncate(size)
    assert main(["verify", "--models-dir", str(root)]) == 5
    rec = Recorder([root])
    with recording(rec):
        ollama_seed.ensure(NAME, models_dir=root, verify=True, transport=reg.transport())
    assert blob.read_bytes() == m.model_layer.read_bytes()
    rel = f"0:blobs/{blob.name}"
    assert ("unlink", rel) not in [(op.kind, op.path) for op in rec.ops]
    assert any(op.kind == "rename" and op.dst == rel for op in rec.ops)


def test_cp_overwrites_an_unreadable_manifest(torn: Path) -> None:
    assert main(["cp", "--models-dir", str(torn), "reg.test/library/other:latest", NAME]) == 0
    assert ModelStore(torn).verify(ModelName.parse(NAME)) == []
