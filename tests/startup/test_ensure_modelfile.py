"""ensure with Modelfiles: created when missing, again only when the Modelfile or a file it names changed,
and a model that is up to date costs a stat per file: no parse, no hash, no network stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ollama_seed
from ollama_seed.cli.main import main
from ollama_seed.core.errors import OfflineError
from ollama_seed.creation import api as create_api
from ollama_seed.store import ingest
from tests.creation.test_create import write_gguf
from tests.support.cli import cli_env


@pytest.fixture
def modelfile(tmp_path: Path) -> Path:
    src = tmp_path / "models-src"
    src.mkdir()
    write_gguf(src / "tiny.gguf")
    (src / "Modelfile").write_text("FROM ./tiny.gguf\nSYSTEM You are tiny.\n")
    return src / "Modelfile"


def test_created_then_present_then_created_again_when_a_file_changes(
    modelfile: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [first] = ollama_seed.ensure([], models_dir=models_dir, modelfiles={"tiny": modelfile})
    assert (first.model, first.status, first.bytes_fetched > 0) == ("tiny:latest", "created", True)

    def no(*_a: object, **_k: object) -> None:
        pytest.fail("an up-to-date model was parsed or hashed again")

    with monkeypatch.context() as m:
        m.setattr(create_api, "parse_modelfile", no)
        m.setattr(ingest, "_copy_in", no)
        [again] = ollama_seed.ensure([], models_dir=models_dir, modelfiles={"tiny": modelfile})
    assert again.status == "present" and again.manifest_digest == first.manifest_digest

    os.utime(modelfile.parent / "tiny.gguf", ns=(10**18, 10**18))  # touched, same bytes: checked, unchanged
    [touched] = ollama_seed.ensure([], models_dir=models_dir, modelfiles={"tiny": modelfile})
    assert touched.status == "present" and touched.manifest_digest == first.manifest_digest
    modelfile.write_text("FROM ./tiny.gguf\nSYSTEM You are very tiny.\n")
    [changed] = ollama_seed.ensure([], models_dir=models_dir, modelfiles={"tiny": modelfile})
    assert changed.status == "created" and changed.manifest_digest != first.manifest_digest
    assert changed.bytes_fetched == 0  # the GGUF was already in the store


def test_an_up_to_date_model_imports_no_network_stack(modelfile: Path, models_dir: Path) -> None:
    ollama_seed.ensure([], models_dir=models_dir, modelfiles={"tiny": modelfile})
    code = (
        "import sys, ollama_seed\n"
        f"r = ollama_seed.ensure([], models_dir={str(models_dir)!r}, modelfiles={{'tiny': {str(modelfile)!r}}})\n"
        "assert r[0].status == 'present', r\n"
        "bad = [m for m in ('httpx', 'anyio', 'ollama_seed.creation.api', 'ollama_seed.creation.gguf') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_offline_a_missing_base_is_named(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "Modelfile").write_text("FROM llama3.2:1b\nSYSTEM hi\n")
    with pytest.raises(OfflineError, match=r"llama3.2:1b is not in"):
        ollama_seed.ensure([], models_dir=models_dir, offline=True, modelfiles={"x": tmp_path / "Modelfile"})


def test_the_cli_takes_modelfiles_from_flags_and_from_the_config(
    modelfile: Path, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "ensure",
                "--modelfile",
                f"tiny={modelfile}",
                "--models-dir",
                str(models_dir),
                "--offline",
                "--json",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert [(m["model"], m["status"]) for m in doc["models"]] == [("tiny:latest", "created")]
    config = tmp_path / "seed.toml"
    config.write_text(
        f'models_dir = "{models_dir}"\n'
        'models = [{ name = "tiny", modelfile = "models-src/Modelfile" }, '
        '{ name = "tiny-two", modelfile = "models-src/Modelfile" }]\n'
    )
    assert main(["ensure", "--config", str(config), "--offline", "--json", "--progress", "none"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(m["model"], m["status"]) for m in doc["models"]] == [
        ("tiny:latest", "present"),
        ("tiny-two:latest", "created"),
    ]
    assert main(["ensure", "--modelfile", "no-equals-sign", "--models-dir", str(models_dir)]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('models = [{ name = "x" }]\n')
    assert main(["ensure", "--config", str(bad)]) == 2
    assert "modelfile" in capsys.readouterr().err
