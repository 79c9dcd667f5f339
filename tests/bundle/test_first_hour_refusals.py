"""Issue 25, items 8 and 10: the recovery paths the docs give work, and refusals say what the thing
is and what to do.

Before: the documented ``tar --zstd -xf`` failed on the uncompressed bundles ``--compress auto``
writes for incompressible weights; the zip hint was ``zip -dc FILE`` (not a command); a small text
file was "a truncated bundle"; a GGUF got "not a valid tar header"; a ``tar -C store .`` was refused
without saying to pack only ``manifests blobs``; a missing split part read "1 part(s)
m.tar.000..m.tar.000; m.tar.001 is missing is truncated"; a refused import left an empty store
skeleton behind; ``export -o FILE`` overwrote a file without a word.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.model import BuiltModel, make_model

NAME = "demo:v1"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, BuiltModel]:
    model = make_model(size_bytes=300_000, seed=9)  # pseudo-random weights: --compress auto keeps them plain
    model.expected_store(tmp_path / "src", "registry.ollama.ai", "library/demo", "v1")
    return tmp_path / "src", model


def _export(src: Path, out: Path, *extra: str) -> int:
    return main(["export", NAME, "--models-dir", str(src), "-o", str(out), "--progress", "none", *extra])


@pytest.mark.parametrize("compress", ["auto", "zstd"])
def test_the_documented_emergency_tar_unpacks_every_bundle(
    store: tuple[Path, BuiltModel], tmp_path: Path, compress: str
) -> None:
    """README and docs/bundle-format.md: ``tar -xf FILE -C ~/.ollama/models``."""
    src, model = store
    bundle = tmp_path / "m.bundle"
    assert _export(src, bundle, "--compress", compress) == 0
    assert (bundle.read_bytes()[:4] == b"\x28\xb5\x2f\xfd") == (compress == "zstd")
    dest = tmp_path / "dest"
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(bundle), "-C", str(dest)], check=True)  # the command the docs give
    assert (dest / "blobs" / f"sha256-{model.model_layer.hex}").read_bytes() == model.model_layer.read_bytes()
    assert main(["verify", "--models-dir", str(dest)]) == 0


def test_a_text_file_is_not_called_a_truncated_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "README.txt"
    note.write_text("how to restore the models\n")
    assert main(["import", str(note), "--models-dir", str(tmp_path / "m")]) == 12
    err = capsys.readouterr().err
    assert "not a bundle: it is a text file ('how to restore the models')" in err and "truncated" not in err


def test_a_gguf_points_to_create(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(2000))
    assert main(["import", str(gguf), "--models-dir", str(tmp_path / "m")]) == 12
    err = capsys.readouterr().err
    assert "GGUF model file" in err and "FROM ./model.gguf" in err and "ollama-seed create NAME -f Modelfile" in err


def test_a_zip_gets_a_command_that_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("m.tar", b"")
    assert main(["import", str(archive), "--models-dir", str(tmp_path / "m")]) == 12
    assert f"unzip -p {archive} | ollama-seed import -" in capsys.readouterr().err


def test_a_tar_of_a_whole_store_says_to_pack_manifests_and_blobs(
    store: tuple[Path, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = store
    (src / ".ollama-seed" / "locks").mkdir(parents=True)
    (src / ".ollama-seed" / "locks" / "x.lock").write_bytes(b"")
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as t:
        t.add(src, arcname=".")
    assert main(["import", str(whole), "--models-dir", str(tmp_path / "m")]) == 12
    assert "pack only manifests and blobs (tar -C DIR -cf FILE manifests blobs)" in capsys.readouterr().err


def test_a_missing_split_part_is_named_plainly(
    store: tuple[Path, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = store
    assert _export(src, tmp_path / "m.tar", "--split-size", "100Ki") == 0
    assert (tmp_path / "m.tar.003").is_file()
    (tmp_path / "m.tar.001").unlink()
    assert main(["import", str(tmp_path / "m.tar.000"), "--models-dir", str(tmp_path / "m")]) == 12
    err = capsys.readouterr().err
    assert f"{tmp_path / 'm.tar.000'} is truncated" in err
    assert "m.tar.001 is missing (later parts are there): copy it next to the others and run again" in err
    assert "part(s)" not in err and "is missing is truncated" not in err


def test_a_refused_import_leaves_no_store_skeleton(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"\x00\x01" * 600)
    for target in (tmp_path / "new", tmp_path / "deeper" / "new"):
        assert main(["import", str(tmp_path / "junk"), "--models-dir", str(target)]) == 12
        assert not target.exists()  # before: blobs/, manifests/ and .ollama-seed/ stayed


def test_a_refused_import_leaves_an_existing_store_as_it_was(store: tuple[Path, BuiltModel], tmp_path: Path) -> None:
    src, _ = store
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    (tmp_path / "junk").write_bytes(b"\x00\x01" * 600)
    assert main(["import", str(tmp_path / "junk"), "--models-dir", str(src)]) == 12
    assert sorted(p.relative_to(src) for p in src.rglob("*") if ".ollama-seed" not in p.parts) == [
        p for p in before if ".ollama-seed" not in p.parts
    ]


def test_export_does_not_overwrite_a_file_unless_forced(
    store: tuple[Path, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = store
    precious = tmp_path / "thesis.tar"
    precious.write_bytes(b"four years of work")
    assert _export(src, precious) == 2
    err = capsys.readouterr().err
    assert f"{precious} exists" in err and "pass --force" in err
    assert precious.read_bytes() == b"four years of work"
    assert _export(src, precious, "--force") == 0
    assert main(["bundle", "verify", str(precious)]) == 0


def test_a_forced_split_export_leaves_no_stale_part(store: tuple[Path, BuiltModel], tmp_path: Path) -> None:
    """Parts of an older, longer export would be read as part of the new one."""
    src, _ = store
    out = tmp_path / "m.tar"
    assert _export(src, out, "--split-size", "100Ki") == 0
    parts = sorted(tmp_path.glob("m.tar.*"))
    assert len(parts) >= 4
    assert _export(src, out, "--split-size", "100Ki") == 2  # the parts exist
    assert _export(src, out, "--split-size", "1Mi", "--force") == 0
    assert sorted(tmp_path.glob("m.tar.*")) == [tmp_path / "m.tar.000"]
    assert main(["import", str(tmp_path / "m.tar.000"), "--models-dir", str(tmp_path / "m")]) == 0


@pytest.fixture(autouse=True)
def _tar_reads_zstd() -> None:
    assert shutil.which("tar") and shutil.which("zstd"), "scripts/install-test-deps.sh installs tar and zstd"
