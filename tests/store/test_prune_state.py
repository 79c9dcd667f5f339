"""``prune`` reclaims what newer features keep in ``.ollama-seed/`` (store/gc): the image-layer digests
of blobs no longer in the store, image downloads abandoned past the grace period, and the signature
records of manifests no longer in the store. Before, all of it stayed for good."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ollama_seed import ModelName, ModelStore
from ollama_seed.cli.main import main
from ollama_seed.core.sigrecord import StoredSignature
from ollama_seed.store.signatures import SignatureStore
from tests.support.model import BuiltModel, make_model

HOST = "reg.test"
HOUR_AGO = time.time() - 7200


@pytest.fixture
def store(tmp_path: Path) -> tuple[ModelStore, BuiltModel, BuiltModel]:
    root = tmp_path / "models"
    a, b = make_model(size_bytes=1000, seed=1), make_model(size_bytes=2000, seed=2)  # sharing small blobs
    a.expected_store(root, HOST, "library/a", "latest")
    b.expected_store(root, HOST, "library/b", "v1")
    return ModelStore(root), a, b


def _age(path: Path) -> None:
    os.utime(path, (HOUR_AGO, HOUR_AGO))


def test_image_layer_digests_of_removed_blobs_go(
    store: tuple[ModelStore, BuiltModel, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s, a, b = store
    models = str(s.root)
    build = ["image", "build", "--models-dir", models, f"{HOST}/library/a", f"{HOST}/library/b:v1"]
    assert main([*build, "--oci-layout", str(tmp_path / "img"), "--progress", "none"]) == 0
    memo = s.layout.state_dir / "image-layers.json"
    before = json.loads(memo.read_bytes())
    only_a = {str(x.digest) for x in a.blobs} - {str(x.digest) for x in b.blobs}
    assert only_a and any(k.split("|")[0] in only_a for k in before)
    s.remove(ModelName.parse(f"{HOST}/library/a"))
    capsys.readouterr()
    assert main(["prune", "--models-dir", models, "--grace", "0"]) == 0
    out = capsys.readouterr().out
    after = json.loads(memo.read_bytes())
    assert {k.split("|")[0] for k in after} == {str(x.digest) for x in b.blobs}  # b's are kept
    gone = len(before) - len(after)
    assert gone > 0 and f"removed {gone} image-layer digests of removed blobs" in out


def test_signature_records_of_removed_models_go(store: tuple[ModelStore, BuiltModel, BuiltModel]) -> None:
    s, _, _ = store
    records = SignatureStore(s)
    a, b = (s.get(ModelName.parse(f"{HOST}/library/{n}")).manifest.digest for n in ("a", "b:v1"))
    for digest in (a, b):
        records.add(digest, StoredSignature("oms", bundle=b'{"bundle": 1}'))
    s.remove(ModelName.parse(f"{HOST}/library/a"))
    assert s.prune().state is not None and s.layout.signatures(a).is_dir()  # younger than the grace period
    _age(s.layout.signatures(a))
    broken = s.layout.manifests_dir / HOST / "library" / "broken" / "latest"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"{torn")
    report = s.prune(grace_seconds=0)
    assert report.state is not None and report.state.signatures == ()  # an unreadable manifest might be a's
    broken.unlink()
    report = s.prune(grace_seconds=0)
    assert report.state is not None and report.state.signatures == (a,)
    assert not s.layout.signatures(a).exists()
    assert records.records(b) and records.digests() == [b]


def test_abandoned_image_downloads_go_after_the_grace_period(store: tuple[ModelStore, BuiltModel, BuiltModel]) -> None:
    s, _, _ = store
    scratch = s.layout.state_dir / "image-layers"
    old = scratch / "blobs" / f"sha256-{'a' * 64}"
    partial = scratch / ".ollama-seed" / "staging" / f"sha256-{'b' * 64}.data"
    fresh = s.layout.state_dir / "image-base" / ".ollama-seed" / "staging" / f"sha256-{'c' * 64}.data"
    for path in (old, partial, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    _age(old)
    _age(partial)
    report = s.prune()
    assert report.state is not None and (report.state.scratch_files, report.state.scratch_bytes) == (2, 200)
    assert not scratch.exists()  # the directories left empty went too
    assert fresh.is_file()  # a download that may still run
    assert {m.name.display for m in s.list_models()} == {f"{HOST}/library/a:latest", f"{HOST}/library/b:v1"}


def test_dry_run_says_what_prune_removes_and_removes_nothing(
    store: tuple[ModelStore, BuiltModel, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s, _, _ = store
    models = str(s.root)
    build = ["image", "build", "--models-dir", models, f"{HOST}/library/a", "--oci-layout", str(tmp_path / "i")]
    assert main([*build, "--progress", "none"]) == 0
    a = s.get(ModelName.parse(f"{HOST}/library/a")).manifest.digest
    SignatureStore(s).add(a, StoredSignature("oms", bundle=b'{"bundle": 1}'))
    s.remove(ModelName.parse(f"{HOST}/library/a"))
    (s.layout.blobs_dir / f"sha256-{'e' * 64}").write_bytes(b"stray")
    (s.layout.staging_dir / f"sha256-{'f' * 64}.data").write_bytes(b"partial")
    tree = sorted(str(p) for p in s.root.rglob("*") if p.parent.name != "locks")  # prune probes the locks
    memo = (s.layout.state_dir / "image-layers.json").read_bytes()
    capsys.readouterr()
    assert main(["prune", "--models-dir", models, "--grace", "0", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert (
        sorted(str(p) for p in s.root.rglob("*") if p.parent.name != "locks") == tree
        and (s.layout.state_dir / "image-layers.json").read_bytes() == memo
    )
    assert "would remove 1 unreferenced blobs (5 bytes) and 1 abandoned staging files" in said
    assert f"  blob sha256:{'e' * 64}" in said and f"  signatures of {a}" in said
    assert main(["prune", "--models-dir", models, "--grace", "0"]) == 0
    done = capsys.readouterr().out
    assert done.splitlines()[0] == said.splitlines()[0].replace("would remove", "removed")
    assert [x for x in said.splitlines() if x.startswith("would")][1].replace("would remove", "removed") in done
    assert not s.layout.signatures(a).exists() and not (s.layout.blobs_dir / f"sha256-{'e' * 64}").exists()
