"""The local store: listing, verifying, removing, pruning, and refusing unsafe layouts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ollama_seed import Digest, Layer, ModelName, ModelNotFound, ModelStore, StoreError, default_models_dir
from ollama_seed.cli.main import main
from ollama_seed.core.manifest import Manifest
from tests.support.model import BuiltModel, make_model

HOST = "reg.test"


def install(root: Path, repo: str, tag: str, model: BuiltModel) -> Path:
    return model.expected_store(root, HOST, repo, tag)


@pytest.fixture
def two_models(models_dir: Path) -> tuple[BuiltModel, BuiltModel]:
    a = make_model(size_bytes=1000, seed=1)
    b = make_model(size_bytes=2000, seed=2)  # shares template, license and params with a
    install(models_dir, "library/a", "latest", a)
    install(models_dir, "library/b", "v1", b)
    return a, b


def test_default_models_dir_follows_ollama(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_models_dir({"OLLAMA_MODELS": str(tmp_path / "m")}) == tmp_path / "m"
    assert default_models_dir({"OLLAMA_MODELS": f'"{tmp_path}/q"'}) == tmp_path / "q"
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert default_models_dir({}) == tmp_path / "h" / ".ollama" / "models"
    assert default_models_dir({"OLLAMA_MODELS": "  "}) == tmp_path / "h" / ".ollama" / "models"


def test_list_and_get(models_dir: Path, two_models: tuple[BuiltModel, BuiltModel]) -> None:
    store = ModelStore(models_dir)
    names = sorted(m.name.display for m in store.list_models())
    assert names == [f"{HOST}/library/a:latest", f"{HOST}/library/b:v1"]
    got = store.get(ModelName.parse(f"{HOST}/library/a"))
    assert got.manifest.raw == two_models[0].manifest
    with pytest.raises(ModelNotFound, match="is not in"):
        store.get(ModelName.parse(f"{HOST}/library/zzz"))


def test_case_insensitive_resolution_reuses_existing_dirs(
    models_dir: Path, two_models: tuple[BuiltModel, BuiltModel]
) -> None:
    store = ModelStore(models_dir)
    resolved = store.resolve(ModelName.parse(f"{HOST.upper()}/Library/A:LATEST"))
    assert resolved.path_parts == (HOST, "library", "a", "latest")
    assert store.get(ModelName.parse(f"{HOST}/LIBRARY/a")).name.namespace == "library"


def test_list_skips_what_ollama_would_skip(models_dir: Path, two_models: tuple[BuiltModel, BuiltModel]) -> None:
    bad = models_dir / "manifests" / HOST / "library" / "broken" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"{not json")
    odd = models_dir / "manifests" / HOST / "bad.ns" / "m" / "t"
    odd.parent.mkdir(parents=True)
    odd.write_bytes(two_models[0].manifest)
    store = ModelStore(models_dir)
    assert len(store.list_models()) == 2
    problems = [item for item in store.iter_models() if isinstance(item, tuple)]
    assert {p[0].name for p in problems} == {"latest", "t"}


def test_verify_reports_each_bad_blob(models_dir: Path, two_models: tuple[BuiltModel, BuiltModel]) -> None:
    a, _ = two_models
    store = ModelStore(models_dir)
    name = ModelName.parse(f"{HOST}/library/a")
    assert store.verify(name) == []
    (models_dir / "blobs" / f"sha256-{a.model_layer.hex}").write_bytes(b"x" * a.model_layer.size)
    (models_dir / "blobs" / f"sha256-{a.config.hex}").unlink()
    problems = {str(p.layer.digest): p.problem for p in store.verify(name)}
    assert problems[a.model_layer.digest].startswith("sha256 is ")
    assert problems[a.config.digest] == "missing"


def test_rm_keeps_shared_blobs(models_dir: Path, two_models: tuple[BuiltModel, BuiltModel]) -> None:
    a, b = two_models
    store = ModelStore(models_dir)
    removed = {str(d) for d in store.remove(ModelName.parse(f"{HOST}/library/a"))}
    shared = {x.digest for x in a.blobs} & {x.digest for x in b.blobs}
    assert removed == {x.digest for x in a.blobs} - shared
    assert shared and all((models_dir / "blobs" / d.replace(":", "-")).exists() for d in shared)
    assert not (models_dir / "manifests" / HOST / "library" / "a").exists()
    assert store.verify(ModelName.parse(f"{HOST}/library/b:v1")) == []


def test_rm_keeps_every_blob_while_a_manifest_is_unreadable(
    models_dir: Path, two_models: tuple[BuiltModel, BuiltModel]
) -> None:
    bad = models_dir / "manifests" / HOST / "library" / "c" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    assert ModelStore(models_dir).remove(ModelName.parse(f"{HOST}/library/a")) == []
    assert len(list((models_dir / "blobs").iterdir())) == len({x.digest for m in two_models for x in m.blobs})


def test_prune_removes_old_orphans_and_abandoned_staging(
    models_dir: Path, two_models: tuple[BuiltModel, BuiltModel]
) -> None:
    store = ModelStore(models_dir)
    store.prepare()
    old, young = "1" * 64, "2" * 64
    for hexd in (old, young):
        (models_dir / "blobs" / f"sha256-{hexd}").write_bytes(b"orphan")
    past = time.time() - 7200
    os.utime(models_dir / "blobs" / f"sha256-{old}", (past, past))
    (store.layout.staging_dir / f"sha256-{'3' * 64}.data").write_bytes(b"partial")
    (store.layout.staging_dir / f"sha256-{'4' * 64}.data").write_bytes(b"in use")
    report = store.prune(staging_in_use={f"sha256-{'4' * 64}"})
    assert [d.hex for d in report.removed_blobs] == [old]
    assert report.removed_bytes == 6
    assert report.removed_staging == (f"sha256-{'3' * 64}.data",)
    assert (models_dir / "blobs" / f"sha256-{young}").exists()
    assert (store.layout.staging_dir / f"sha256-{'4' * 64}.data").exists()
    assert len(store.list_models()) == 2


def test_write_manifest_refuses_missing_blobs(models_dir: Path) -> None:
    m = make_model(size_bytes=10)
    store = ModelStore(models_dir)
    store.prepare()
    with pytest.raises(StoreError, match="blob\\(s\\) missing"):
        store.write_manifest(ModelName.parse(f"{HOST}/library/x"), Manifest.parse(m.manifest))
    assert not (models_dir / "manifests" / HOST).exists()


def test_staging_dir_symlink_is_refused(models_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (models_dir / ".ollama-seed").mkdir(parents=True)
    (models_dir / ".ollama-seed" / "staging").symlink_to(elsewhere)
    with pytest.raises(StoreError, match="symbolic link"):
        ModelStore(models_dir).prepare()
    assert list(elsewhere.iterdir()) == []


def test_cli_store_commands(
    models_dir: Path, two_models: tuple[BuiltModel, BuiltModel], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{HOST}/library/a:latest" in out and "ID" in out
    assert main(["show", f"{HOST}/library/b:v1", "--models-dir", str(models_dir)]) == 0
    assert two_models[1].model_layer.digest in capsys.readouterr().out
    assert main(["verify", "--models-dir", str(models_dir)]) == 0
    assert main(["rm", f"{HOST}/library/b:v1", "--models-dir", str(models_dir)]) == 0
    assert main(["show", f"{HOST}/library/b:v1", "--models-dir", str(models_dir)]) == 3
    assert "is not in" in capsys.readouterr().err
    assert main(["prune", "--models-dir", str(models_dir)]) == 0
    assert main(["pull", "not valid!"]) == 2
    assert main([]) == 2


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_root_hands_new_files_to_the_stores_owner(tmp_path: Path) -> None:
    """Written as root into a store owned by Ollama's service user, files stay deletable by it."""
    root = tmp_path / "models"
    root.mkdir()
    os.chown(root, 4321, 4321)
    m = make_model(size_bytes=100)
    store = ModelStore(root)
    store.prepare()
    staged = store.layout.staging_dir / "x.data"
    layers = [Layer(b.media_type, Digest.parse(b.digest), b.size) for b in m.blobs]
    for b, layer in zip(m.blobs, layers, strict=True):
        staged.write_bytes(b.read_bytes())
        store.install_blob(staged, layer)
    path = store.write_manifest(ModelName.parse(f"{HOST}/library/own"), Manifest.parse(m.manifest))
    for p in [path, *path.parents[:4], *(root / "blobs").iterdir(), root / "blobs", root / ".ollama-seed"]:
        assert (p.stat().st_uid, p.stat().st_gid) == (4321, 4321), p


def test_prune_keeps_unique_staging_of_a_live_process(models_dir: Path) -> None:
    """Without locks, staging files carry their process's pid; prune keeps a live one's."""
    from ollama_seed.store.locks import staging_in_use

    store = ModelStore(models_dir)
    store.prepare()
    live = f"sha256-{'5' * 64}.data.{os.getpid()}-abcd1234"
    dead_pid = 2**22 + 12345  # above Linux's pid_max: never a live process
    dead = f"sha256-{'6' * 64}.data.{dead_pid}-abcd1234"
    for name in (live, dead):
        (store.layout.staging_dir / name).write_bytes(b"x")
    busy = staging_in_use(store)
    assert busy == {f"sha256-{'5' * 64}"}
    report = store.prune(staging_in_use=busy)
    assert report.removed_staging == (dead,)
    assert (store.layout.staging_dir / live).exists()


def test_ensure_dir_accepts_a_directory_another_process_creates_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight pulls starting at once into a new store: a directory may appear between our look and
    our mkdir (seen in CI as "exists and is not a directory" when the look took two steps)."""
    import os as _os

    from ollama_seed.store import fsutil

    target = tmp_path / "models"
    real_mkdir = _os.mkdir

    def racing_mkdir(path: object, mode: int = 0o777) -> None:
        real_mkdir(target)  # the other process wins
        raise FileExistsError(str(path))

    monkeypatch.setattr(os, "mkdir", racing_mkdir)  # fsutil.os is the os module
    fsutil.ensure_dir(target)
    assert target.is_dir()
    monkeypatch.undo()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(StoreError, match="exists and is not a directory"):
        fsutil.ensure_dir(tmp_path / "file")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        fsutil.ensure_dir(tmp_path / "link")
