"""What each created model was made from, so ``ensure`` can tell cheaply that it is up to date.

``.ollama-seed/created.json`` maps a model to the (path, device, inode, size, mtime) of its Modelfile
and of every file it named, the manifest digest of a ``FROM model`` base, and the manifest it
produced. When none of those changed and the manifest on disk is still that one, the model is up to
date: no Modelfile is parsed and no GGUF read. Imports neither httpx nor anyio (``ensure``'s cheap path).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.digest import Digest
from ..core.errors import SeedError
from ..core.reference import ModelName
from ..store.fsutil import atomic_write
from ..store.store import ModelStore

__all__ = ["remember", "up_to_date"]

RECORD = "created.json"
MAX_MODELS = 1024


def _key(path: Path) -> list[Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [str(path.absolute()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _load(store: ModelStore) -> dict[str, Any]:
    try:
        data = json.loads((store.layout.state_dir / RECORD).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _manifest_digest(store: ModelStore, name: ModelName) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(store.layout.manifest(name).read_bytes()).hexdigest()
    except (OSError, SeedError):
        return None


def remember(
    store: ModelStore, name: ModelName, modelfile: Path, files: Sequence[Path], base: ModelName | None, manifest: Digest
) -> None:
    """Record what *name* was created from (best effort: losing it costs one re-create)."""
    record = _load(store)
    record.pop(str(name), None)
    record[str(name)] = {
        "modelfile": _key(modelfile),
        "files": [_key(f) for f in files],
        "base": [str(base), _manifest_digest(store, base)] if base is not None else None,
        "manifest": str(manifest),
    }
    while len(record) > MAX_MODELS:
        record.pop(next(iter(record)))
    with contextlib.suppress(SeedError):
        atomic_write(store.layout.state_dir / RECORD, json.dumps(record).encode(), store.layout.tmp_dir, mode=0o600)


def up_to_date(store: ModelStore, name: ModelName, modelfile: Path) -> Digest | None:
    """The manifest digest of *name* if it was created from *modelfile* and nothing it was made from
    changed since, else None. Blobs are not checked here (the caller's cheap check does that)."""
    entry = _load(store).get(str(name))
    if not isinstance(entry, dict) or entry.get("modelfile") != _key(modelfile):
        return None
    files = entry.get("files")
    if not isinstance(files, list) or any(not isinstance(f, list) or not f or _key(Path(f[0])) != f for f in files):
        return None
    base = entry.get("base")
    if base is not None:
        if not isinstance(base, list) or len(base) != 2:
            return None
        try:
            base_name = ModelName.parse(base[0])
        except SeedError:
            return None
        if _manifest_digest(store, store.resolve(base_name)) != base[1]:
            return None
    digest = entry.get("manifest")
    if not isinstance(digest, str) or _manifest_digest(store, name) != digest:
        return None
    try:
        return Digest.parse(digest)
    except SeedError:
        return None
