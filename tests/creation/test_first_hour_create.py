"""Issue 25, item 9: ``create`` mistakes get the message that fits them, with exit 2 and nothing written.

Before: ``FROM missing.gguf`` (no ``./``) became a registry pull of ``missing.gguf:latest`` and a
network error (exit 4); ``FROM /abs/missing.gguf`` said "no such file next to the Modelfile"; a file
that is not a GGUF was told to try "a folder of safetensors weights", which is not supported; a
deprecated parameter printed "warning: warning:"; a refused create left an empty store behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.ggufmake import arch, gguf


def _create(tmp_path: Path, modelfile: str) -> int:
    (tmp_path / "Modelfile").write_text(modelfile)
    return main(["create", "mine", "-f", str(tmp_path / "Modelfile"), "--models-dir", str(tmp_path / "models")])


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ("FROM missing.gguf", "no such file: {dir}/missing.gguf; a relative path is read from the Modelfile's folder"),
        ("FROM ./missing.gguf", "no such file: {dir}/missing.gguf"),
        ("FROM /nowhere/missing.gguf", "FROM /nowhere/missing.gguf: no such file: /nowhere/missing.gguf"),
        ("FROM ./m.gguf\nADAPTER lora.gguf", "ADAPTER lora.gguf: no such file: {dir}/lora.gguf"),
    ],
)
def test_a_missing_file_is_named_not_pulled(
    line: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # any attempt to reach a registry would fail loudly
    (tmp_path / "m.gguf").write_bytes(gguf([arch("llama")]))
    assert _create(tmp_path, line + "\n") == 2  # before: exit 4, a pull of missing.gguf:latest
    err = capsys.readouterr().err
    assert said.format(dir=tmp_path) in err
    assert "pulling" not in err and "next to the Modelfile" not in err
    assert not (tmp_path / "models").exists()  # nothing written, not even an empty store


def test_not_a_gguf_offers_only_what_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "weights.bin").write_bytes(b"hello, not weights")
    assert _create(tmp_path, "FROM ./weights.bin\n") == 2
    err = capsys.readouterr().err
    assert "not in GGUF format" in err and "convert_hf_to_gguf.py" in err
    assert "folder of safetensors" not in err
    assert not (tmp_path / "models").exists()


def test_a_deprecated_parameter_warns_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.gguf").write_bytes(gguf([arch("llama")]))
    assert _create(tmp_path, "FROM ./m.gguf\nPARAMETER mirostat 1\n") == 0
    err = capsys.readouterr().err
    assert "ollama-seed: warning: parameter mirostat is deprecated" in err
    assert "warning: warning:" not in err


def test_a_name_that_is_a_model_still_means_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``FROM llama3.2`` (dots, no suffix of a weights file) names a model, as in Ollama."""
    assert main(["create", "mine", "-f", str(_modelfile(tmp_path, "FROM llama3.2\n")), "--offline",
                 "--models-dir", str(tmp_path / "models")]) == 10  # fmt: skip
    assert "the base model llama3.2:latest is not in" in capsys.readouterr().err


def _modelfile(tmp_path: Path, text: str) -> Path:
    (tmp_path / "Modelfile").write_text(text)
    return tmp_path / "Modelfile"
