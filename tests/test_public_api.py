"""The public API: complete, sorted, and cheap to import."""

from __future__ import annotations

import ast
import json
import os
import re
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


def test_the_lazy_table_the_type_checking_imports_and_all_agree() -> None:
    """``ollama_seed/__init__.py`` names each public name three times (huggingface_hub's
    check_static_imports does the same check): the eager imports plus the TYPE_CHECKING imports
    are exactly ``__all__``, and the TYPE_CHECKING imports are exactly ``_LAZY``, module for module."""
    tree = ast.parse(Path(ollama_seed.__file__).read_text())
    typed: dict[str, str] = {}
    eager: set[str] = {"__version__"}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                typed.update({a.asname or a.name: "." * stmt.level + (stmt.module or "") for a in stmt.names})
        elif isinstance(node, ast.ImportFrom) and node.level:
            eager.update(a.asname or a.name for a in node.names)
    assert typed == ollama_seed._LAZY
    assert set(ollama_seed.__all__) == eager | set(typed), set(ollama_seed.__all__) ^ (eager | set(typed))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        ollama_seed.no_such_thing  # noqa: B018


# What `import ollama_seed` and `ensure()` of a complete model load: every application pays for
# each of these modules at start-up (docs/performance.md, "Start-up"). A module that joins this set
# must earn its place with `python -X importtime` figures there; otherwise import it where it is used
# (a function-level import, or under TYPE_CHECKING for a type).
CHEAP_PATH_MODULES = frozenset(
    {
        "ollama_seed",
        "ollama_seed.__about__",
        "ollama_seed.core",
        "ollama_seed.core.digest",
        "ollama_seed.core.errors",
        "ollama_seed.core.layout",
        "ollama_seed.core.manifest",
        "ollama_seed.core.progress",
        "ollama_seed.core.reference",
        "ollama_seed.startup",
        "ollama_seed.startup.fast_path",
        "ollama_seed.startup.local",
        "ollama_seed.store",
        "ollama_seed.store.fsutil",
        "ollama_seed.store.oscalls",
        "ollama_seed.store.store",
        "ollama_seed.store.verified",
    }
)
# Loaded by none of them (each costs 1 to 70 ms): no network stack, no event loop, no threads, no
# logging, no validation tables or trust policies (those load when a keyword or a trust is given).
NOT_ON_THE_CHEAP_PATH = (
    "anyio",
    "asyncio",
    "concurrent.futures",
    "cryptography",
    "httpx",
    "logging",
    "ollama_seed.core.bounds",
    "ollama_seed.core.trustpolicy",
    "ollama_seed.pulling.options",
    "ollama_seed.startup.options",
    "ollama_seed.wire.sync",
    "rich",
    "secrets",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "tomllib",
    "uvicorn",
    "zstandard",
)

_IMPORT_SET = """
import json, sys
before = set(sys.modules)
import ollama_seed
imported = set(sys.modules)
reports = ollama_seed.ensure("tiny", models_dir=sys.argv[1])
assert [r.status for r in reports] == ["present"], reports
ensured = set(sys.modules)
print(json.dumps([sorted(imported - before), sorted(ensured - before)]))
"""


def test_import_and_ensure_of_a_complete_model_load_only_the_cheap_path(tmp_path: Path) -> None:
    """`import ollama_seed` and the cheap ensure path load exactly CHEAP_PATH_MODULES of the package,
    and ensure() adds none to what the import loaded: at start-up it costs what the import costs."""
    from tests.support.model import make_model

    make_model(size_bytes=10_000).expected_store(tmp_path, "registry.ollama.ai", "library/tiny", "latest")
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_SET, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    imported, ensured = (set(names) for names in json.loads(out))
    assert {m for m in imported if m.startswith("ollama_seed")} == CHEAP_PATH_MODULES
    assert ensured == imported, sorted(ensured - imported)
    assert not imported & set(NOT_ON_THE_CHEAP_PATH), sorted(imported & set(NOT_ON_THE_CHEAP_PATH))


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


_CALLS = """
from __future__ import annotations

import ollama_seed
from ollama_seed import PullOptions


def blocking_calls() -> None:
    ollama_seed.pull("x", conections=4)  # E: Unexpected keyword argument "conections"
    ollama_seed.pull("x", connections="4")  # E: Argument "connections" has incompatible type "str"; expected "int"
    ollama_seed.ensure(["a"], verify="yes")  # E: Argument "verify" has incompatible type "str"; expected "bool"
    ollama_seed.ensure(["a"], stal_timeout=3)  # E: Unexpected keyword argument "stal_timeout"
    ollama_seed.create("m", "Modelfile", conections=4)  # E: Unexpected keyword argument "conections"
    ollama_seed.export_bundle(["a"], "out.tar", compres="zstd")  # E: Unexpected keyword argument "compres"
    ollama_seed.import_bundle("b.tar", as_nam="x")  # E: Unexpected keyword argument "as_nam"
    ollama_seed.verify_bundle("b.tar", models_dirr="m")  # E: Unexpected keyword argument "models_dirr"
    ollama_seed.push("a", "r.lan/a:1", insecur=True)  # E: Unexpected keyword argument "insecur"
    ollama_seed.wait_ready("h", timout=3)  # E: Unexpected keyword argument "timout"
    ollama_seed.pull("x", connections=4, max_rate="50M", mirrors=["http://m:8080"], insecure=True)
    ollama_seed.ensure("a", models_dir="/m", timeout=3, connections=2, progress=print, warm=True)
    ollama_seed.create("m", "Modelfile", offline=True, insecure=True)
    ollama_seed.export_bundle(["a"], "out.tar", compress="zstd:3", split_size="4G", progress=print)


async def async_calls() -> None:
    await ollama_seed.apull("x", max_rate=[1])  # E: Argument "max_rate" to "apull" has incompatible type "list[int]"
    await ollama_seed.aensure("a", mirrors=3)  # E: Argument "mirrors" to "aensure" has incompatible type "int"
    await ollama_seed.acreate("m", "Modelfile", stall_timeout="30")  # E: Argument "stall_timeout" to "acreate"
    await ollama_seed.aimport_bundle("b.tar", names=["a"], progress=print)
    options: PullOptions = {"connections": 4, "insecure": "no"}  # E: TypedDict item "insecure" has type "bool"
    await ollama_seed.apull("x", **options)
"""


@pytest.mark.interop  # a type checker's verdict does not depend on the os-module emulation
@pytest.mark.timeout(180)
def test_misspelt_keywords_and_wrong_types_are_type_errors(tmp_path: Path) -> None:
    """Every public operation is typed down to its keywords (PullOptions, blocking(), the typed job
    runners): mypy --strict reports exactly the wrong calls, and none of the right ones."""
    sample = tmp_path / "calls.py"
    sample.write_text(_CALLS)
    expected = {n: line.split("# E: ")[1] for n, line in enumerate(_CALLS.splitlines(), 1) if "# E: " in line}
    root = Path(ollama_seed.__file__).parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(sample)],
        capture_output=True,
        text=True,
        cwd=root,  # ollama_seed is found here, and pyproject.toml's [tool.mypy] applies
        timeout=170,
    )
    found = {int(n): text for n, text in re.findall(r"calls\.py:(\d+): error: (.*)", proc.stdout)}
    assert set(found) == set(expected), proc.stdout
    for n, want in expected.items():
        assert want in found[n], (n, found[n])
