"""The package's layering holds: each subpackage imports only those below it, no cycles, small modules.

Imports inside functions count (they run too); imports under ``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import ollama_seed

PKG = Path(ollama_seed.__file__).parent
# rank: a subpackage may import its own modules and those of lower ranks; equal ranks are peers
RANKS = {
    "core": 0,
    "store": 1,
    "wire": 2,
    "pulling": 3,
    "bundle": 4,
    "mirror": 4,
    "creation": 4,
    "startup": 5,
    "cli": 6,
    "": 7,
}
THIRD_PARTY_NOT_IN_CORE = {"httpx", "anyio", "uvicorn", "zstandard", "rich", "filelock", "platformdirs"}
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    """Dotted names inside the package ('' package for the top-level modules) -> file."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        out[".".join(rel.parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return hidden


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(dotted target inside the package, line) for every runtime import of an ollama_seed module."""
    tree = ast.parse(path.read_text())
    hidden = _type_checking_nodes(tree)
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if name else []
    if not is_pkg:
        here = here[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("ollama_seed"):
                target = node.module.removeprefix("ollama_seed").lstrip(".")
            else:
                continue
            if node.module is None or (node.level and node.names and target in _PACKAGES):
                found.extend((f"{target}.{a.name}".strip("."), node.lineno) for a in node.names)
            else:
                found.append((target, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend(
                (a.name.removeprefix("ollama_seed").lstrip("."), node.lineno)
                for a in node.names
                if a.name.startswith("ollama_seed")
            )
    return found


_PACKAGES = {p.name for p in PKG.iterdir() if (p / "__init__.py").exists()} | {""}


def _subpackage(dotted: str) -> str:
    first = dotted.split(".", 1)[0]
    return first if (first in _PACKAGES and "." in dotted) or first in _PACKAGES - {""} else ""


def test_every_module_belongs_to_a_ranked_subpackage() -> None:
    assert _PACKAGES - {""} <= set(RANKS), f"a new subpackage needs a rank here: {_PACKAGES - set(RANKS)}"
    loose = sorted(n for n in _modules() if _subpackage(n) == "")
    assert loose == ["__about__", "__init__", "__main__"], loose


def test_subpackages_import_only_what_is_below_them() -> None:
    wrong = []
    for name, path in _modules().items():
        src = _subpackage(name)
        for target, line in _imports(name, path):
            dst = _subpackage(target)
            if dst == src or target == "__about__":  # the version string: a leaf every layer may read
                continue
            if RANKS[dst] >= RANKS[src]:
                wrong.append(
                    f"{path.relative_to(PKG.parent)}:{line} ({src or 'top'}) imports {target} ({dst or 'top'})"
                )
    assert wrong == [], "\n".join(wrong)


def test_no_import_cycle_between_modules() -> None:
    mods = _modules()
    graph = {n: {t for t, _ in _imports(n, p) if t in mods and t != n} for n, p in mods.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph[n]):
            if m.endswith("__init__") or m in ("", *_PACKAGES):
                continue
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m) :], m] if m in stack else [n, m])
            elif m not in state:
                visit(m, [*stack, m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert cycles == [], cycles


def test_core_needs_no_io_library() -> None:
    for name, path in _modules().items():
        if _subpackage(name) != "core":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            )
            bad = [n for n in names if n.split(".")[0] in THIRD_PARTY_NOT_IN_CORE]
            assert not bad, f"{path.relative_to(PKG.parent)}:{getattr(node, 'lineno', 0)} imports {bad}"


def _code_lines(text: str) -> int:
    """Lines that are neither blank nor only a comment: the same count however the formatter wraps."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def test_modules_stay_small() -> None:
    big = {
        str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py") if (n := _code_lines(p.read_text())) > MAX_LINES
    }
    assert big == {}, f"split these (over {MAX_LINES} lines): {big}"


def test_no_subpackage_shadows_a_public_name() -> None:
    """``import ollama_seed.pulling`` sets that attribute on the package: a subpackage named like a public
    function (``pull``, ``ensure``) would replace the function."""
    for info in pkgutil.walk_packages(ollama_seed.__path__, "ollama_seed."):
        if not info.name.endswith("__main__"):  # importing it runs the CLI
            importlib.import_module(info.name)
    for name in ollama_seed.__all__:
        value = getattr(ollama_seed, name)
        assert not isinstance(value, type(ollama_seed)), f"ollama_seed.{name} is the module {value.__name__}"


def test_the_layering_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a core module importing the store is reported."""
    path = tmp_path / "bad.py"
    path.write_text("from ..store.store import ModelStore\nfrom .errors import SeedError\n")
    assert _imports("core.bad", path) == [("store.store", 1), ("core.errors", 2)]
    assert RANKS[_subpackage("store.store")] > RANKS[_subpackage("core.bad")]
