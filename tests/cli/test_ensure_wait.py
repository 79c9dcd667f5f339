"""``ollama-seed ensure`` and ``ollama-seed wait``: exit codes, output, config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.fake_ollama import FakeOllama, ServerThread
from tests.support.model import make_model
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

HOST = "registry.ollama.ai"


@pytest.fixture
def installed(models_dir: Path) -> Path:
    make_model(size_bytes=4000).expected_store(models_dir, HOST, "library/tiny", "latest")
    return models_dir


def test_present_model_exits_0(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ensure", "tiny", "--models-dir", str(installed)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny:latest: present (0 B fetched")


def test_json_report(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ensure", "tiny", "--models-dir", str(installed), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert [(m["model"], m["status"], m["bytes_fetched"]) for m in doc["models"]] == [("tiny:latest", "present", 0)]


def test_offline_missing_exits_10(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ensure", "tiny", "gpt-oss:20b", "--models-dir", str(installed), "--offline", "--json"])
    assert code == 10
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc == {"ok": False, "error": doc["error"], "error_type": "OfflineError", "exit_code": 10}
    assert "gpt-oss:20b" in doc["error"]
    assert "gpt-oss:20b" in captured.err


def test_offline_env_missing_exits_10(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_SEED_OFFLINE", "1")
    assert main(["ensure", "tiny", "--models-dir", str(models_dir)]) == 10


def test_invalid_name_exits_2(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ensure", "no good", "--models-dir", str(models_dir)]) == 2
    assert "invalid model name" in capsys.readouterr().err


def test_server_not_ready_exits_11(installed: Path, dead_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "ensure",
            "tiny",
            "--models-dir",
            str(installed),
            "--server",
            f"127.0.0.1:{dead_port}",
            "--wait-timeout",
            "0.3",
        ]
    )
    assert code == 11
    assert f"http://127.0.0.1:{dead_port} was not ready" in capsys.readouterr().err


def test_overall_timeout_exits_9(installed: Path, dead_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "ensure",
            "tiny",
            "--models-dir",
            str(installed),
            "--server",
            f"127.0.0.1:{dead_port}",
            "--wait-timeout",
            "60",
            "--timeout",
            "0.4",
        ]
    )
    assert code == 9
    assert "did not finish within 0.4 s" in capsys.readouterr().err


def test_server_sees_model_and_warm(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = FakeOllama(installed)
    with ServerThread(app) as server:
        code = main(
            ["ensure", "tiny", "--models-dir", str(installed), "--server", server.url, "--warm", "--keep-alive", "-1"]
        )
    assert code == 0
    assert f"seen by {server.url}, loaded" in capsys.readouterr().out
    assert app.loaded == {"tiny:latest": -1}


def test_via_server_over_a_socket(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_model(size_bytes=10_000)
    app = FakeOllama(tmp_path / "server-models", catalog={"tiny": model})
    with ServerThread(app) as server:
        code = main(["ensure", "tiny", "--via-server", "--server", server.url, "--json", "--progress", "none"])
    assert code == 0
    [report] = json.loads(capsys.readouterr().out)["models"]
    assert (report["status"], report["via_server"], report["bytes_fetched"]) == ("pulled", True, model.total_size)


def test_via_server_error_line_exits_11(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = FakeOllama(tmp_path, pull_error="pull model manifest: file does not exist")
    with ServerThread(app) as server:
        code = main(["ensure", "nosuch", "--via-server", "--server", server.url, "--progress", "none"])
    assert code == 11
    assert "pull model manifest: file does not exist" in capsys.readouterr().err


def test_no_names_and_no_config_exits_2(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ensure", "--models-dir", str(models_dir)]) == 2
    err = capsys.readouterr().err
    assert "no models to ensure" in err
    assert "ollama-seed/config.toml" in err


def test_models_from_config_file(installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "seed.toml"
    config.write_text(f'models = ["tiny"]\nmodels_dir = "{installed}"\n')
    assert main(["ensure", "--config", str(config)]) == 0
    assert "tiny:latest: present" in capsys.readouterr().out


def test_config_in_user_config_dir(installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # conftest points XDG_CONFIG_HOME at tmp_path/home/.config, where platformdirs looks on Linux
    path = tmp_path / "home" / ".config" / "ollama-seed" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f'models = ["tiny:latest"]\nmodels_dir = "{installed}"\n[registry]\ninsecure = true\n')
    assert main(["ensure"]) == 0
    assert "tiny:latest: present" in capsys.readouterr().out


def test_config_from_environment(installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'models = ["tiny"]\nmodels_dir = "{installed}"\n')
    monkeypatch.setenv("OLLAMA_SEED_CONFIG", str(config))
    assert main(["ensure", "--offline"]) == 0


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('modles = ["tiny"]\n')
    assert main(["ensure", "--config", str(config)]) == 2
    assert "modles is not a known key" in capsys.readouterr().err
    assert main(["ensure", "--config", str(tmp_path / "missing.toml")]) == 2


def test_wait_exit_codes(tmp_path: Path, dead_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread(FakeOllama(tmp_path, version="0.11.4")) as server:
        assert main(["wait", "--server", server.url, "--timeout", "10"]) == 0
        assert f"ready: {server.url} (ollama 0.11.4)" in capsys.readouterr().out
        assert main(["wait", "--server", server.url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["version"] == "0.11.4"
    assert main(["wait", "--server", f"127.0.0.1:{dead_port}", "--timeout", "0.3"]) == 11
    assert f"127.0.0.1:{dead_port}" in capsys.readouterr().err


def test_wait_reads_ollama_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ServerThread(FakeOllama(tmp_path)) as server:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{server.port}")
        assert main(["wait", "--timeout", "10"]) == 0


def test_bad_server_scheme_exits_2(installed: Path) -> None:
    assert main(["ensure", "tiny", "--models-dir", str(installed), "--server", "tcp://x:1"]) == 2


@pytest.mark.registry
def test_real_registry_pull_then_offline(
    docker_registry: DockerRegistry, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(size_bytes=3 * 1024 * 1024, seed=11)
    seed_registry(docker_registry.url, "library/ensured", "v1", model)
    name = f"{docker_registry.host}/library/ensured:v1"
    common = ["--models-dir", str(models_dir), "--json", "--progress", "none"]
    assert main(["ensure", name, "--insecure", *common]) == 0
    [report] = json.loads(capsys.readouterr().out)["models"]
    assert (report["status"], report["bytes_fetched"]) == ("pulled", model.total_size)
    assert main(["ensure", name, "--offline", *common]) == 0
    [report] = json.loads(capsys.readouterr().out)["models"]
    assert (report["status"], report["bytes_fetched"]) == ("present", 0)
    manifest = models_dir / "manifests" / docker_registry.host / "library" / "ensured" / "v1"
    assert manifest.read_bytes() == model.manifest


def test_progress_lines_only_when_something_happens(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ensure", "tiny", "--models-dir", str(installed), "--progress", "plain"]) == 0
    assert capsys.readouterr().err == ""  # complete already: nothing drawn
    app = FakeOllama(tmp_path / "server-models", catalog={"tiny": make_model(size_bytes=1000)})
    with ServerThread(app) as server:
        assert main(["ensure", "tiny", "--via-server", "--server", server.url, "--progress", "plain"]) == 0
    err = capsys.readouterr().err
    assert "tiny:latest: pulling manifest" in err
    assert "tiny:latest: success" in err
