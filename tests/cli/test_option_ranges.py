"""A number out of range is a usage error before any work: exit 2, a message naming the option and its
range, whether it comes from a flag, the config file or a keyword of the Python API (one check,
``core/bounds``).

Before, each failed in its own way against a live registry: ``pull --connections 0`` reported a false
"sha256 mismatch" (exit 5), ``--max-connections 0`` hung for ever (pull and ensure),
``--stall-timeout 0`` died of ``BlockingIOError``, ``ensure --connections 0`` silently used 16,
``serve --port 99999`` announced :99999 and listened elsewhere, ``serve --limit-concurrency -1`` was
accepted, and ``pull(..., connections=0)`` raised ``IntegrityError``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import ollama_seed
from ollama_seed import ConfigError
from ollama_seed.cli.main import main
from ollama_seed.mirror.cache import PullThroughCache
from ollama_seed.pulling.session import PullSession
from ollama_seed.store.store import ModelStore
from tests.support.mirror import serving
from tests.support.model import make_model

REPO, TAG = "library/demo", "v1"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A loopback registry (ollama-seed's own mirror) holding one small model: the bugs showed against one."""
    model = make_model(size_bytes=300_000, seed=11)
    model.expected_store(tmp_path / "registry", "registry.ollama.ai", REPO, TAG)
    with serving(tmp_path / "registry") as info:
        yield f"127.0.0.1:{info.port}/{REPO}:{TAG}"


FLAGS = [
    (["pull", "--connections", "0"], "--connections", "a whole number from 1 to 256, not '0'"),
    (["pull", "--connections", "100000"], "--connections", "a whole number from 1 to 256"),
    (["pull", "--max-connections", "0"], "--max-connections", "a whole number from 1 to 4096, not '0'"),
    (["pull", "--stall-timeout", "0"], "--stall-timeout", "a number of seconds more than 0 and at most 86400, not '0'"),
    (["pull", "--stall-timeout", "-5"], "--stall-timeout", "a number of seconds more than 0 and at most 86400"),
    (["pull", "--connections", "four"], "--connections", "not a whole number: 'four'"),
    (["ensure", "--connections", "0"], "--connections", "a whole number from 1 to 256, not '0'"),
    (["ensure", "--max-connections", "0"], "--max-connections", "a whole number from 1 to 4096"),
    (["ensure", "--timeout", "-1"], "--timeout", "a number of seconds at least 0, not '-1'"),
]


@pytest.mark.timeout(60)  # before, --max-connections 0 hung here
@pytest.mark.parametrize(("argv", "flag", "message"), FLAGS, ids=[" ".join(a) for a, _, _ in FLAGS])
def test_a_pull_flag_out_of_range_is_a_usage_error_naming_the_range(
    served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], flag: str, message: str
) -> None:
    models = tmp_path / "models"
    code = main([*argv, "--insecure", "--progress", "none", "--models-dir", str(models), served])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"argument {flag}: must be {message}" in err or f"argument {flag}: {message}" in err
    assert not (models / "manifests").exists()  # nothing was pulled


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "argument --port: must be a whole number from 0 to 65535, not '99999'"),
        (["--limit-concurrency", "-1"], "argument --limit-concurrency: must be a whole number at least 1, not '-1'"),
        (["--max-cache-size", "0"], "argument --max-cache-size: must be a whole number of bytes at least 1"),
        (["--header-timeout", "0"], "argument --header-timeout: must be a number of seconds more than 0"),
    ],
)
def test_a_serve_flag_out_of_range_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["serve", "--models-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("connections = 0", "connections must be a whole number from 1 to 256, not 0"),
        ("max_connections = 0", "max_connections must be a whole number from 1 to 4096, not 0"),
        ("stall_timeout = 0", "stall_timeout must be a number of seconds more than 0 and at most 86400, not 0"),
        ('max_rate = "0"', "max_rate is not a rate"),
    ],
)
def test_the_config_file_is_checked_by_the_same_ranges(
    served: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'models = ["{served}"]\n{line}\n[registry]\ninsecure = true\n')
    for command in (["ensure"], ["pull", served]):
        code = main([*command, "--config", str(config), "--models-dir", str(tmp_path / "m"), "--progress", "none"])
        err = capsys.readouterr().err
        assert code == 2, (command, err)
        assert f"config file {config}: {message}" in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"connections": 0}, "connections must be a whole number from 1 to 256, not 0"),
        ({"max_connections": 0}, "max_connections must be a whole number from 1 to 4096, not 0"),
        ({"stall_timeout": 0}, "stall_timeout must be a number of seconds more than 0 and at most 86400, not 0"),
        ({"stall_timeout": float("nan")}, "stall_timeout must be a number of seconds"),
        ({"max_rate": -1}, "max_rate must be a number of bytes/s more than 0, not -1"),
        ({"connections": True}, "connections must be a whole number from 1 to 256, not True"),
    ],
)
def test_the_python_api_raises_config_error_for_a_value_out_of_range(
    served: str, tmp_path: Path, options: dict[str, object], message: str
) -> None:
    models = tmp_path / "models"
    with pytest.raises(ConfigError, match=message) as caught:
        ollama_seed.pull(served, models_dir=models, insecure=True, **options)  # type: ignore[arg-type]
    assert caught.value.exit_code == 2
    assert not models.exists()
    with pytest.raises(ConfigError, match=message):
        ollama_seed.ensure(served, models_dir=models, insecure=True, **options)  # type: ignore[arg-type]


def test_ensure_checks_its_options_even_when_the_model_is_on_disk(tmp_path: Path) -> None:
    """The cheap path (no event loop) checks the same ranges and keywords as aensure."""
    make_model(size_bytes=5000).expected_store(tmp_path, "registry.ollama.ai", "library/tiny", "latest")
    assert ollama_seed.ensure("tiny", models_dir=tmp_path)[0].status == "present"
    with pytest.raises(ConfigError, match="connections must be a whole number from 1 to 256, not 0"):
        ollama_seed.ensure("tiny", models_dir=tmp_path, connections=0)
    with pytest.raises(ConfigError, match="timeout must be a number of seconds at least 0, not -1"):
        ollama_seed.ensure("tiny", models_dir=tmp_path, timeout=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'conections'"):
        ollama_seed.ensure("tiny", models_dir=tmp_path, conections=4)  # type: ignore[call-arg]


@pytest.mark.anyio
async def test_every_way_in_to_a_pull_session_is_checked(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(ConfigError, match="max_connections must be"):
        PullSession(store, max_connections=0)
    with pytest.raises(ConfigError, match="connections must be"):
        PullThroughCache(store, "http://127.0.0.1:9", connections=0)
    with pytest.raises(ConfigError, match="stall_timeout must be"):
        await ollama_seed.acreate("x", tmp_path / "Modelfile", models_dir=tmp_path, stall_timeout=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'conections'"):
        await ollama_seed.apull("x", models_dir=tmp_path, conections=4)  # type: ignore[call-arg]


def test_a_blocking_twin_names_itself_in_a_wrong_argument_error(tmp_path: Path) -> None:
    """``pull(..., conections=4)`` said ``apull() got an unexpected keyword argument``: a function the
    caller never called."""
    with pytest.raises(TypeError, match=r"^pull\(\) got an unexpected keyword argument 'conections'$"):
        ollama_seed.pull("x", models_dir=tmp_path, conections=4)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^create\(\) missing 1 required positional argument: 'modelfile'$"):
        ollama_seed.create("x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^apull\(\) got an unexpected keyword argument"):
        anyio.run(functools.partial(ollama_seed.apull, "x", models_dir=tmp_path, conections=4))  # type: ignore[call-arg]
