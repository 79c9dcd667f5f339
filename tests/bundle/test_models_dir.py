"""Another Ollama models directory as a source (``cp -a`` copies, planted symlinks), ``export --format dir``, ``cp``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ollama_seed import (
    BundleError,
    LayerProgress,
    ModelName,
    ModelNotFound,
    ProgressEvent,
    Status,
    StoreError,
    export_bundle,
    import_bundle,
    inspect_bundle,
    verify_bundle,
)
from ollama_seed.cli.main import main
from ollama_seed.store.store import ModelStore
from tests.support.craft import Model, install, snapshot
from tests.support.fake_ollama import FakeOllama
from tests.support.invariants import assert_store_ok, tree
from tests.support.model import make_model

NAMES = ["alpha:latest", "hf.co/some-user/tiny-GGUF:Q4_K_M", "beta:2"]


@pytest.fixture
def usb(tmp_path: Path) -> Path:
    """A models directory as ``cp -a ~/.ollama/models /mnt/usb/`` leaves it (with our state directory in it too)."""
    src = tmp_path / "src"
    install(
        src, [Model(ModelName.parse(n), make_model(size_bytes=150_000 + i, seed=40 + i)) for i, n in enumerate(NAMES)]
    )
    ModelStore(src).prepare()
    copy = tmp_path / "usb" / "models"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(src), str(copy)], check=True)
    return copy


def digest(root: Path, name: str) -> str:
    seen = FakeOllama(root).find(name)
    assert seen is not None, f"Ollama would not see {name} in {root}"
    return str(seen["digest"])


def test_import_all_models_of_a_copied_directory(usb: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    result = import_bundle(usb, models_dir=dst)
    assert sorted(n.display for n in result.models) == sorted(NAMES)
    assert result.format == "models-dir" and result.blobs_written == 3 * 2 + 3  # shared text blobs once
    for name in NAMES:
        assert digest(dst, name) == digest(usb, name)
    assert tree(dst) == tree(usb)
    assert_store_ok(dst)
    assert not list((dst / ".ollama-seed" / "staging").iterdir())


def test_import_named_models_skips_blobs_already_present(usb: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    first = import_bundle(usb, models_dir=dst, names=["ALPHA"])  # matched case-insensitively, as Ollama does
    assert [n.display for n in first.models] == ["alpha:latest"]
    assert FakeOllama(dst).find(NAMES[1]) is None
    second = import_bundle(usb, models_dir=dst, names=[NAMES[1]])
    assert [n.display for n in second.models] == [NAMES[1]]
    assert second.blobs_skipped == 3 and second.blobs_written == 2  # the shared template, license, params
    assert digest(dst, NAMES[1]) == digest(usb, NAMES[1])
    with pytest.raises(ModelNotFound, match="not in"):
        import_bundle(usb, models_dir=dst, names=["nope:1"])


def test_names_only_with_a_directory(usb: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "x.bundle"
    export_bundle(["alpha"], bundle, models_dir=usb, compress="none")
    with pytest.raises(ValueError, match="only a models directory"):
        import_bundle(bundle, models_dir=tmp_path / "dst", names=["alpha"])


def test_ls_and_verify_a_directory(usb: Path) -> None:
    info = inspect_bundle(usb)
    assert info.format == "models-dir" and sorted(m.name.display for m in info.models) == sorted(NAMES)
    assert len(info.blobs) == 9 and all(m.blobs == 5 for m in info.models)
    assert len(verify_bundle(usb).models) == 3


def _plant_blob_link(usb: Path) -> None:
    blob = next(p for p in (usb / "blobs").iterdir() if p.stat().st_size > 100_000)
    real = usb.parent / "elsewhere"
    shutil.move(blob, real)
    blob.symlink_to(real)


def _plant_manifest_link(usb: Path) -> None:
    manifest = usb / "manifests" / "registry.ollama.ai" / "library" / "alpha" / "latest"
    manifest.rename(usb.parent / "m")
    manifest.symlink_to(usb.parent / "m")


def _plant_dir_link(usb: Path) -> None:
    (usb / "manifests" / "registry.ollama.ai" / "evil").symlink_to("/etc", target_is_directory=True)


def _blobs_dir_link(usb: Path) -> None:
    (usb / "blobs").rename(usb.parent / "real-blobs")
    (usb / "blobs").symlink_to(usb.parent / "real-blobs", target_is_directory=True)


def _stray_blob(usb: Path) -> None:
    (usb / "blobs" / "notes.txt").write_text("hello")


def _stray_manifest(usb: Path) -> None:
    (usb / "manifests" / "registry.ollama.ai" / "library" / "stray").write_text("{}")


def _bad_name(usb: Path) -> None:
    d = usb / "manifests" / "registry.ollama.ai" / "library" / "-bad"
    d.mkdir()
    (d / "latest").write_bytes((usb / "manifests" / "registry.ollama.ai" / "library" / "alpha" / "latest").read_bytes())


def _fifo(usb: Path) -> None:
    os.mkfifo(usb / "blobs" / ("sha256-" + "0" * 64))


def _corrupt_blob(usb: Path) -> None:
    blob = next(p for p in (usb / "blobs").iterdir() if p.stat().st_size > 100_000)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 1
    blob.write_bytes(bytes(data))


def _wrong_size(usb: Path) -> None:
    blob = next(p for p in (usb / "blobs").iterdir() if p.stat().st_size > 100_000)
    with open(blob, "ab") as f:
        f.write(b"more")


HOSTILE = {
    "blob-symlink": (_plant_blob_link, "symbolic link"),
    "manifest-symlink": (_plant_manifest_link, "symbolic link"),
    "manifests-dir-symlink": (_plant_dir_link, "symbolic link"),
    "blobs-dir-symlink": (_blobs_dir_link, "symbolic link"),
    "stray-in-blobs": (_stray_blob, "sha256-<64 lowercase hex>"),
    "stray-in-manifests": (_stray_manifest, "only manifests/"),
    "invalid-model-name": (_bad_name, "not a valid model name"),
    "fifo": (_fifo, "regular files"),
    "blob-bytes-differ": (_corrupt_blob, "hashes to"),
    "blob-wrong-size": (_wrong_size, "bytes, but the bundle says"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_directory_is_refused_and_store_unchanged(case: str, usb: Path, store: Path) -> None:
    plant, expected = HOSTILE[case]
    plant(usb)
    before = snapshot(store)
    with pytest.raises(BundleError, match=expected):
        import_bundle(usb, models_dir=store, names=["alpha"] if case.startswith(("blob-", "fifo")) else ())
    assert snapshot(store) == before
    assert list((store / ".ollama-seed" / "staging").iterdir()) == []


def test_ollama_partial_downloads_are_skipped(usb: Path, tmp_path: Path) -> None:
    (usb / "blobs" / ("sha256-" + "a" * 64 + "-partial")).write_bytes(b"half")
    (usb / "blobs" / ("sha256-" + "a" * 64 + "-partial-0")).write_bytes(b"{}")
    result = import_bundle(usb, models_dir=tmp_path / "dst")
    assert len(result.models) == 3
    assert not any("partial" in p.name for p in (tmp_path / "dst" / "blobs").iterdir())


# -- export --format dir ----------------------------------------------------------------------


def test_export_format_dir_writes_blobs_first_manifests_last(usb: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    events: list[ProgressEvent] = []
    result = export_bundle(NAMES[:2], out, models_dir=usb, format="dir", progress=events.append)
    assert result.format == "dir" and result.paths == (str(out),) and result.blobs == 7
    for name in NAMES[:2]:
        assert digest(out, name) == digest(usb, name)
    assert FakeOllama(out).find(NAMES[2]) is None
    assert not (out / ".ollama-seed").exists()  # a fresh directory keeps only what Ollama reads
    assert_store_ok(out)
    last_blob = max(i for i, e in enumerate(events) if isinstance(e, LayerProgress) and e.done)
    first_manifest = min(i for i, e in enumerate(events) if isinstance(e, Status) and e.status == "writing manifest")
    assert last_blob < first_manifest
    again = export_bundle(NAMES, out, models_dir=usb, format="dir")  # into a tree that has some already
    assert again.blobs == 2 and FakeOllama(out).find(NAMES[2]) is not None
    back = import_bundle(out, models_dir=tmp_path / "back")  # and the tree is a source again
    assert len(back.models) == 3


def test_export_format_dir_refuses_options_that_do_not_apply(usb: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="directory tree"):
        export_bundle(["alpha"], tmp_path / "o", models_dir=usb, format="dir", compress="zstd")
    with pytest.raises(ValueError, match="directory tree"):
        export_bundle(["alpha"], "-", models_dir=usb, format="dir")
    with pytest.raises(StoreError, match="store the models come from"):
        export_bundle(["alpha"], usb, models_dir=usb, format="dir")


def test_cli_export_dir_and_import_dir(usb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rsync-me"
    assert (
        main(
            [
                "export",
                "alpha",
                "beta:2",
                "--format",
                "dir",
                "-o",
                str(out),
                "--models-dir",
                str(usb),
                "--json",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["format"] == "dir"
    dst = tmp_path / "dst"
    assert main(["import", str(out), "beta:2", "--models-dir", str(dst), "--json", "--progress", "none"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"] == ["beta:2"] and doc["format"] == "models-dir"
    assert main(["bundle", "ls", str(out)]) == 0
    assert "models-dir bundle" in capsys.readouterr().out


# -- cp -------------------------------------------------------------------------------------------


def test_cp_copies_the_manifest_only_as_ollama_does(usb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blobs_before = sorted(p.name for p in (usb / "blobs").iterdir())
    assert main(["cp", "alpha", "my/alpha-copy:v1", "--models-dir", str(usb)]) == 0
    assert capsys.readouterr().out.strip() == "copied 'alpha' to 'my/alpha-copy:v1'"
    assert digest(usb, "my/alpha-copy:v1") == digest(usb, "alpha")
    copied = usb / "manifests" / "registry.ollama.ai" / "my" / "alpha-copy" / "v1"
    assert (
        copied.read_bytes() == (usb / "manifests" / "registry.ollama.ai" / "library" / "alpha" / "latest").read_bytes()
    )
    assert sorted(p.name for p in (usb / "blobs").iterdir()) == blobs_before
    assert not list((usb / ".ollama-seed" / "tmp").iterdir())
    # onto an existing name of other case: that file is replaced, as Ollama maps names
    assert main(["cp", "beta:2", "MY/Alpha-Copy:V1", "--models-dir", str(usb)]) == 0
    assert digest(usb, "my/alpha-copy:v1") == digest(usb, "beta:2")
    assert not (usb / "manifests" / "registry.ollama.ai" / "MY").exists()
    # same path: nothing happens
    assert main(["cp", "alpha", "ALPHA:latest", "--models-dir", str(usb)]) == 0
    assert main(["cp", "nope", "x", "--models-dir", str(usb)]) == 3
    assert_store_ok(usb)


def test_cp_refuses_a_model_with_a_missing_blob(usb: Path) -> None:
    store = ModelStore(usb)
    layer = store.get(ModelName.parse("alpha")).manifest.layers[0]
    (usb / "blobs" / layer.digest.filename).unlink()
    with pytest.raises(StoreError, match="blob"):
        store.copy(ModelName.parse("alpha"), ModelName.parse("other"))
    assert FakeOllama(usb).find("other") is None
