"""The store invariants, as a checker any test can run on a models directory.

1. ``blobs/`` holds only regular files named ``sha256-<64 hex>``, and each hashes to its name
   (no unverified file at a blob name, no partial or temporary file there).
2. ``manifests/`` holds only regular files exactly four levels deep, each under a valid model
   name, each a valid manifest, and every blob it names is in ``blobs/`` with its size.
3. No symlinks anywhere in ``blobs/`` or ``manifests/``.
4. (optional) modes as Ollama's: files 0644, directories 0755; ``.ollama-seed`` 0700.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ollama_seed.core.digest import Digest
from ollama_seed.core.errors import RegistryProtocolError
from ollama_seed.core.layout import ModelsLayout
from ollama_seed.core.manifest import Manifest

__all__ = ["assert_store_ok", "outside_snapshot", "sha256_hex", "store_problems", "tree"]

_HASH_CACHE: dict[tuple[str, int, int, int], str] = {}


def sha256_hex(path: Path) -> str:
    """sha256 of a file, cached by (path, inode, size, mtime) so repeated checks stay cheap."""
    st = os.stat(path)
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(4 << 20):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def store_problems(root: Path, *, modes: bool = False) -> list[str]:
    """Every violated invariant in the models directory *root* (empty list: all hold)."""
    layout = ModelsLayout(root)
    problems: list[str] = []
    sizes: dict[Digest, int] = {}
    blobs = layout.blobs_dir
    if blobs.is_symlink():
        problems.append("blobs/ is a symlink")
    elif blobs.is_dir():
        if modes and _mode(blobs) != 0o755:
            problems.append(f"blobs/ has mode {_mode(blobs):o}")
        for entry in sorted(os.scandir(blobs), key=lambda e: e.name):
            path = Path(entry.path)
            digest = Digest.from_filename(entry.name)
            if digest is None:
                problems.append(f"stray file in blobs/: {entry.name}")
                continue
            if not entry.is_file(follow_symlinks=False):
                problems.append(f"blobs/{entry.name} is not a regular file")
                continue
            actual = sha256_hex(path)
            if actual != digest.hex:
                problems.append(f"blobs/{entry.name} hashes to {actual} (unverified file at a blob name)")
            sizes[digest] = entry.stat(follow_symlinks=False).st_size
            if modes and _mode(path) != 0o644:
                problems.append(f"blobs/{entry.name} has mode {_mode(path):o}")
    base = layout.manifests_dir
    if base.is_symlink():
        problems.append("manifests/ is a symlink")
    elif base.is_dir():
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            depth = len(here.relative_to(base).parts)
            if modes and _mode(here) != 0o755:
                problems.append(f"{here.relative_to(root)} has mode {_mode(here):o}")
            for d in dirnames:
                if (here / d).is_symlink():
                    problems.append(f"{(here / d).relative_to(root)} is a symlink")
            for name in filenames:
                path = here / name
                rel = path.relative_to(root)
                if path.is_symlink() or not path.is_file():
                    problems.append(f"{rel} is not a regular file")
                    continue
                if depth != 3:
                    problems.append(f"stray file in manifests/ at depth {depth + 1}: {rel}")
                    continue
                if layout.name_for_manifest_path(path) is None:
                    problems.append(f"{rel} is not under a valid model name")
                    continue
                if modes and _mode(path) != 0o644:
                    problems.append(f"{rel} has mode {_mode(path):o}")
                try:
                    manifest = Manifest.parse(path.read_bytes(), source=str(rel))
                except RegistryProtocolError as exc:
                    problems.append(f"{rel} is not a valid manifest: {exc}")
                    continue
                for layer in manifest.blobs:
                    if sizes.get(layer.digest) != layer.size:
                        problems.append(f"{rel} points at a missing or wrong-size blob {layer.digest}")
    state = layout.state_dir
    if modes and state.is_dir() and _mode(state) != 0o700:
        problems.append(f".ollama-seed has mode {_mode(state):o}")
    return problems


def assert_store_ok(root: Path, *, modes: bool = False) -> None:
    problems = store_problems(root, modes=modes)
    assert not problems, "store invariants violated:\n  " + "\n  ".join(problems)


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under *root* except our private ``.ollama-seed``, by relative path."""
    out: dict[str, bytes] = {}
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] == ".ollama-seed" or p.is_symlink() or not p.is_file():
            continue
        out[rel.as_posix()] = p.read_bytes()
    return out


def outside_snapshot(base: Path, inside: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mode, sha256) of every file under *base* that is not under *inside*.

    Take one before and one after an operation on the store at *inside*: equal snapshots mean
    nothing outside the store was created, changed or removed.
    """
    out: dict[str, tuple[int, int, str]] = {}
    inside = inside.resolve()
    for dirpath, _dirs, files in os.walk(base):
        here = Path(dirpath)
        if here.resolve() == inside or inside in here.resolve().parents:
            continue
        for name in files:
            p = here / name
            st = os.lstat(p)
            digest = sha256_hex(p) if stat.S_ISREG(st.st_mode) else os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
            out[str(p.relative_to(base))] = (st.st_size, stat.S_IMODE(st.st_mode), digest)
    return out
