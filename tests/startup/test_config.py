"""The config file: where it is looked for, what it may say, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollama_seed import ConfigError
from ollama_seed.startup.config import Config, default_config_path, load_config, parse_config

FULL = """
models = ["gpt-oss:20b", "llama3.2:1b", "hf.co/user/repo:Q4_K_M"]
models_dir = "/srv/ollama/models"
connections = 8
max_rate = "400Mbit"

[registry]
insecure = true
mirrors = ["http://mirror.lan:5000/", "https://mirror2.lan"]
"""


def test_full_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(FULL)
    config = load_config(path)
    assert config == Config(
        models=("gpt-oss:20b", "llama3.2:1b", "hf.co/user/repo:Q4_K_M"),
        models_dir="/srv/ollama/models",
        connections=8,
        max_rate=50e6,
        insecure=True,
        mirrors=("http://mirror.lan:5000", "https://mirror2.lan"),
    )
    assert config.path == path


def test_missing_file_is_empty_unless_required(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.toml") == Config()
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", required=True)


def test_default_path_follows_platformdirs_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_config_path() == tmp_path / "home" / ".config" / "ollama-seed" / "config.toml"
    assert default_config_path({"OLLAMA_SEED_CONFIG": "/etc/seed.toml"}) == Path("/etc/seed.toml")
    monkeypatch.setenv("OLLAMA_SEED_CONFIG", str(tmp_path / "x.toml"))
    (tmp_path / "x.toml").write_text('models = ["a"]\n')
    assert load_config().models == ("a",)


@pytest.mark.parametrize(
    "env",
    [
        {"XDG_CONFIG_HOME": "/srv/conf", "HOME": "/home/u"},
        {"XDG_CONFIG_HOME": "relative/conf", "HOME": "/home/u"},  # not absolute: ignored, as the spec says
        {"XDG_CONFIG_HOME": "", "HOME": "/home/u"},
        {"HOME": "/home/u"},
        {"HOME": "relative-home"},  # platformdirs asks the password database then
        {"HOME": "/home/u", "ANDROID_DATA": "/data", "ANDROID_ROOT": "/system"},
    ],
)
def test_default_path_is_platformdirs_answer(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On Linux the path is found without importing platformdirs (9 ms of a command's start-up):
    the same answer, whatever the environment says."""
    import platformdirs

    for key in ("XDG_CONFIG_HOME", "HOME", "ANDROID_DATA", "ANDROID_ROOT", "OLLAMA_SEED_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    expected = Path(platformdirs.user_config_dir("ollama-seed", appauthor=False)) / "config.toml"
    assert default_config_path() == expected


def test_numeric_rate(tmp_path: Path) -> None:
    assert parse_config({"max_rate": 1000}).max_rate == 1000.0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"modles": []}, "modles is not a known key"),
        ({"models": "llama3.2:1b"}, "models must be a list"),
        ({"models": ["bad name"]}, "models has a bad entry"),
        ({"models_dir": 3}, "models_dir must be a non-empty path"),
        ({"connections": 0}, "connections must be a whole number from 1 to 256"),
        ({"connections": True}, "connections must be"),
        ({"max_rate": "fast"}, "max_rate is not a rate"),
        ({"max_rate": -5}, "max_rate must be a number of bytes/s more than 0, not -5"),
        ({"max_connections": 0}, "max_connections must be a whole number from 1 to 4096, not 0"),
        ({"stall_timeout": "30"}, "stall_timeout must be a number of seconds"),
        ({"registry": []}, "registry must be a table"),
        ({"registry": {"insecure": "yes"}}, "registry.insecure must be true or false"),
        ({"registry": {"mirror": []}}, "registry.mirror is not a known key"),
        ({"registry": {"mirrors": "http://x"}}, "registry.mirrors must be a list"),
        ({"registry": {"mirrors": ["ftp://x"]}}, "registry.mirrors has a bad entry"),
    ],
)
def test_invalid_configs_name_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(doc, Path("/etc/seed.toml"))


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("models = [\n")
    with pytest.raises(ConfigError, match=f"{path} is not valid TOML"):
        load_config(path)
