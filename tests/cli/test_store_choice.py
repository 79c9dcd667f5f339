"""Issue 25, item 6 and parts of item 10: every store command reads the config file's models_dir
and OLLAMA_SEED_OFFLINE, says which models directory it read, refuses a named directory that is
not there, and fails in the form it was asked for (--json, the subcommand's own usage).

Before: with ``models_dir`` in config.toml (the init-containers.md example) ``ensure`` pulled into it
and ``show``, ``list``, ``verify``, ``pull``, ``export`` and ``serve`` looked in ~/.ollama/models;
``create`` ignored OLLAMA_SEED_OFFLINE=1; ``list --models-dir <typo>`` printed an empty table, exit 0;
``pull --json``/``create --json`` printed no JSON on failure; a wrong option printed the top-level usage.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.mirror import serving
from tests.support.model import make_model

REPO, TAG = "library/demo", "v1"


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store named only by a config file (found through OLLAMA_SEED_CONFIG), holding demo:v1."""
    store = tmp_path / "srv-models"
    make_model(size_bytes=2000, seed=1).expected_store(store, "registry.ollama.ai", REPO, TAG)
    config = tmp_path / "config.toml"
    config.write_text(f'models_dir = "{store}"\n')
    monkeypatch.setenv("OLLAMA_SEED_CONFIG", str(config))
    return store


def test_store_commands_use_the_config_file_s_models_dir(
    configured: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr()
    assert "demo:v1" in out.out
    assert f"1 model(s) in {configured} (from models_dir in {tmp_path / 'config.toml'})" in out.err
    assert main(["show", "demo:v1"]) == 0
    assert f"models directory: {configured} (from models_dir in" in capsys.readouterr().out
    assert main(["verify", "demo:v1"]) == 0
    assert main(["export", "demo:v1", "-o", str(tmp_path / "b.tar"), "--progress", "none"]) == 0
    assert main(["cp", "demo:v1", "demo:copy"]) == 0
    assert (configured / "manifests" / "registry.ollama.ai" / "library" / "demo" / "copy").is_file()
    assert main(["rm", "demo:copy"]) == 0
    other = make_model(size_bytes=3000, seed=2)
    other.expected_store(tmp_path / "registry", "registry.ollama.ai", "library/other", TAG)
    with serving(tmp_path / "registry") as reg:
        assert main(["pull", "--insecure", "--progress", "none", f"127.0.0.1:{reg.port}/library/other:{TAG}"]) == 0
    assert (configured / "blobs" / f"sha256-{other.model_layer.hex}").is_file()
    assert main(["list", "--models-dir", str(tmp_path / "x"), "--config", "/no"]) == 8  # the flag: no config read


def test_the_flag_wins_over_the_config_file(configured: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert main(["show", "demo:v1", "--models-dir", str(elsewhere)]) == 3


def test_a_models_dir_that_is_not_there_is_an_error_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    typo = tmp_path / "modles"
    assert main(["list", "--models-dir", str(typo)]) == 8
    err = capsys.readouterr().err
    assert f"the models directory {typo} (from --models-dir) does not exist" in err
    monkeypatch.setenv("OLLAMA_MODELS", str(typo))
    assert main(["list"]) == 8
    assert "(from $OLLAMA_MODELS)" in capsys.readouterr().err
    monkeypatch.delenv("OLLAMA_MODELS")
    assert main(["list"]) == 0  # the default directory may not exist yet: nothing was pulled here
    assert "does not exist yet" in capsys.readouterr().err


def test_a_bad_config_file_is_a_usage_error_for_every_store_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("models_dri = '/x'\n")
    assert main(["list", "--config", str(bad)]) == 2
    assert "models_dri is not a known key" in capsys.readouterr().err


def test_offline_applies_to_pull_push_create_and_image_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_SEED_OFFLINE", "1")
    with socket.create_server(("127.0.0.1", 0)) as listener:  # a registry that must never be asked
        listener.settimeout(0)
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        models = str(tmp_path / "m")
        assert main(["pull", "--insecure", "--models-dir", models, f"{host}/{REPO}:{TAG}"]) == 10
        assert "OLLAMA_SEED_OFFLINE is set" in capsys.readouterr().err
        assert main(["push", "--models-dir", models, "demo:v1", f"{host}/ns/demo:v1"]) == 10
        (tmp_path / "Modelfile").write_text(f"FROM {host}/library/base:v1\n")
        code = main(["create", "mine", "-f", str(tmp_path / "Modelfile"), "--insecure", "--models-dir", models])
        assert code == 10  # before: a registry pull of the base
        assert "base:v1" in capsys.readouterr().err
        img = str(tmp_path / "img")
        assert main(["image", "build", f"{host}/library/base:v1", "--oci-layout", img, "--models-dir", models]) == 10
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_json_commands_fail_in_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", "--json", "--models-dir", str(tmp_path / "m"), "bad name!"]) == 2
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert doc["ok"] is False and doc["exit_code"] == 2 and "bad name!" in doc["error"]
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("PARAMETER nonsense 1\n")
    assert main(["create", "x", "-f", str(modelfile), "--json", "--models-dir", str(tmp_path / "m")]) == 2
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert doc["error_type"] == "InvalidModelfile" and doc["exit_code"] == 2


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["pull", "--bogus", "x"], "usage: ollama-seed pull"),
        (["bundle", "ls", "x", "--bogus"], "usage: ollama-seed bundle ls"),
        (["list", "--connections", "3"], "usage: ollama-seed list"),
    ],
)
def test_a_wrong_option_prints_the_subcommand_s_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert usage in err and "unrecognized arguments" in err
