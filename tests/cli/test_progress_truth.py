"""Issue 25, item 4: progress lines say what was done, never "already in the store" for a blob that
was written. Before, a layer whose first event was its end (every blob of an export, an import, a
``bundle verify`` or a create) got "already in the store", next to a summary of "5 blob(s) written,
0 already in the store": in ``docker logs`` it read as "nothing was done".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.ggufmake import arch, gguf
from tests.support.model import BuiltModel, make_model

ALREADY = "already in the store"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, BuiltModel]:
    model = make_model(size_bytes=200_000, seed=3)
    model.expected_store(tmp_path / "src", "registry.ollama.ai", "library/demo", "v1")
    return tmp_path / "src", model


def _layer_lines(err: str, verb: str) -> list[str]:
    return [line for line in err.splitlines() if f": {verb} " in line and "100%" in line]


def test_export_import_and_bundle_verify_say_what_they_did(
    store: tuple[Path, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, model = store
    bundle = tmp_path / "b.tar"
    plain = ["--progress", "plain"]
    assert main(["export", "demo:v1", "--models-dir", str(src), "-o", str(bundle), *plain]) == 0
    lines = _layer_lines(capsys.readouterr().err, "exporting")
    assert len(lines) == len(model.blobs) and not any(ALREADY in line for line in lines)

    assert main(["bundle", "verify", str(bundle), *plain]) == 0
    lines = _layer_lines(capsys.readouterr().err, "verifying")
    assert len(lines) == len(model.blobs) and not any(ALREADY in line for line in lines)

    dest = tmp_path / "dest"
    assert main(["import", str(bundle), "--models-dir", str(dest), *plain]) == 0
    err = capsys.readouterr().err
    lines = _layer_lines(err, "importing")
    assert len(lines) == len(model.blobs) and not any(ALREADY in line for line in lines)
    assert f"{len(model.blobs)} blob(s) written" in err

    assert main(["import", str(bundle), "--models-dir", str(dest), *plain]) == 0  # again: now they are there
    err = capsys.readouterr().err
    lines = _layer_lines(err, "importing")
    assert len(lines) == len(model.blobs) and all(ALREADY in line for line in lines)
    assert f"0 blob(s) written (0 B), {len(model.blobs)} already in the store" in err


def test_create_says_copied_then_already_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.gguf").write_bytes(gguf([arch("llama")]))
    (tmp_path / "Modelfile").write_text("FROM ./m.gguf\n")
    argv = ["create", "mine", "-f", str(tmp_path / "Modelfile"), "--models-dir", str(tmp_path / "models")]
    assert main([*argv, "--progress", "plain"]) == 0
    lines = _layer_lines(capsys.readouterr().err, "copying")
    assert lines and not any(ALREADY in line for line in lines)
    (tmp_path / "Modelfile").write_text("FROM ./m.gguf\nSYSTEM hi\n")  # the same GGUF, a new model
    assert main([*argv, "--progress", "plain"]) == 0
    lines = _layer_lines(capsys.readouterr().err, "copying")
    assert lines and all(ALREADY in line for line in lines)
