"""The public API: complete, sorted, and cheap to import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ollama_seed


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert list(ollama_seed.__all__) == sorted(ollama_seed.__all__)
    for name in ollama_seed.__all__:
        assert getattr(ollama_seed, name) is not None, name
    assert set(dir(ollama_seed)) >= set(ollama_seed.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        ollama_seed.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_import_and_ensure_of_a_complete_model_load_no_network_stack() -> None:
    """`import ollama_seed` and the cheap ensure path import neither httpx nor anyio."""
    code = (
        "import sys, ollama_seed; ollama_seed.ensure; ollama_seed.ModelStore; "
        "print(sorted(m for m in ('httpx', 'anyio', 'rich', 'uvicorn', 'zstandard') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


_LOADED = """
import atexit, os, sys
def report():
    names = ('httpx', 'httpx._main', 'httpcore', 'anyio', 'rich', 'trio', 'click', 'uvicorn', 'zstandard')
    print('LOADED', sorted(m for m in names if sys.modules.get(m) is not None), file=sys.stderr, flush=True)
real_exit = os._exit
def fast_exit(code):  # entry() skips teardown (and atexit) with os._exit
    report()
    real_exit(code)
os._exit = fast_exit
atexit.register(report)
sys.argv = ['ollama-seed', *sys.argv[1:]]
from ollama_seed.cli.main import entry
entry()
"""


def _cli_modules(*argv: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    proc = subprocess.run([sys.executable, "-c", _LOADED, *argv], capture_output=True, text=True, timeout=60, env=env)
    line = [x for x in proc.stderr.splitlines() if x.startswith("LOADED ")][-1]
    return proc.returncode, eval(line[len("LOADED ") :])  # a repr of a list of str, printed by the child


def test_cli_ensure_of_a_complete_model_and_local_commands_load_no_network_stack(tmp_path: Path) -> None:
    """An init container's `ollama-seed ensure` of a present model starts as fast as `--version`."""
    from tests.support.model import make_model

    make_model(size_bytes=10_000).expected_store(tmp_path, "registry.ollama.ai", "library/tiny", "latest")
    for argv in (
        ["--version"],
        ["list", "--models-dir", str(tmp_path)],
        ["ensure", "tiny", "--models-dir", str(tmp_path)],
    ):
        code, loaded = _cli_modules(*argv)
        assert code == 0, argv
        assert loaded == [], (argv, loaded)


def test_cli_pull_loads_httpx_only_off_the_direct_path_and_never_its_optional_imports(tmp_path: Path) -> None:
    """A direct pull (plain http, no proxy) runs without httpx (~0.15 CPU-s of imports); where
    httpx is used, entry() keeps its own CLI (click, pygments, rich) and trio out (~90 ms)."""
    argv = (
        "pull",
        "--models-dir",
        str(tmp_path),
        "--progress",
        "none",
        "--insecure",
        "http://127.0.0.1:9/library/tiny:latest",
    )
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "OLLAMA_SEED_DIRECT"}
    code, loaded = _cli_modules(*argv, env=env)
    assert code == 4  # nothing listens on port 9: a network error, after the manifest request was tried
    assert "anyio" in loaded and not {"httpx", "httpcore"} & set(loaded), loaded
    code, loaded = _cli_modules(*argv, env={**env, "OLLAMA_SEED_DIRECT": "0"})
    assert code == 4
    assert "httpx" in loaded and "httpcore" in loaded
    assert not {"httpx._main", "trio", "click", "rich"} & set(loaded), loaded


def test_every_command_is_mapped_to_the_module_that_registers_it() -> None:
    """main() builds a parser with only the named command's module (see cli.main._modules_for):
    a command missing from the map would still work (the full parser), but slower; a wrong entry
    would make the command unknown."""
    import argparse

    from ollama_seed.cli import main as cli_main

    def commands(parser: argparse.ArgumentParser) -> set[str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return set(sub.choices)

    everything = commands(cli_main.build_parser())
    assert everything == set(cli_main._COMMAND_MODULES)
    for command in everything:
        assert command in commands(cli_main.build_parser(["-v", command], complete=False)), command
    assert commands(cli_main.build_parser(["--help"], complete=False)) == everything
    assert commands(cli_main.build_parser(["nonsense"], complete=False)) == everything
