"""The files a Modelfile names, resolved as Ollama's client resolves them, checked, and copied into
the store: a ``FROM``/``ADAPTER`` value is a path when something exists there (absolute, ``~``, or
relative to the Modelfile's folder), otherwise a model name.

A file must be a little-endian GGUF (its magic, then a header our reader accepts); a folder must
hold GGUFs (safetensors and PyTorch weights are refused with the way forward). The copy goes
through :func:`~ollama_seed.store.ingest.ingest_file`: hashed in the same pass, never linked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InvalidModelfile
from ..store.ingest import ingest_file
from ..store.store import ModelStore
from .gguf import GGUFError, GGUFInfo, read_gguf
from .layers import GGUFFile, gguf_media_type
from .sniff import SNIFF_BYTES, classify_directory, describe_non_gguf, sniff

__all__ = ["LocalFile", "expand", "ingest_gguf", "local_files"]

MAX_FOLDER_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A GGUF on disk that a FROM or ADAPTER names: its path, Ollama's key for it, and its header."""

    path: Path
    key: str
    info: GGUFInfo


def expand(value: str, base: Path) -> Path:
    """Ollama's ``expandPath``: absolute (``/``, ``\\``, a drive) as is, ``~`` expanded, else under *base*."""
    if value.startswith(("/", "\\")) or os.path.isabs(value):
        return Path(value)
    if value.startswith("~"):
        return Path(os.path.expanduser(value))
    return base / value


def _header(path: Path, label: str) -> GGUFInfo:
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
            if sniff(head) != "gguf":
                raise InvalidModelfile(f"{label} {path}: {describe_non_gguf(head)}")
            f.seek(0)
            return read_gguf(f, name=str(path))
    except GGUFError as exc:
        raise InvalidModelfile(f"{label} {path}: {exc}") from None
    except OSError as exc:
        raise InvalidModelfile(f"{label} {path}: cannot read it ({exc.strerror or exc})") from None


def _folder(path: Path, label: str) -> list[LocalFile]:
    names: list[str] = []
    try:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_dir():
                with os.scandir(entry.path) as inner:
                    names.extend(f"{entry.name}/{e.name}" for e in inner if e.is_file())
            elif entry.is_file():
                names.append(entry.name)
            if len(names) > MAX_FOLDER_ENTRIES:
                raise InvalidModelfile(f"{label} {path}: more than {MAX_FOLDER_ENTRIES} files; FROM the .gguf itself")
    except OSError as exc:
        raise InvalidModelfile(f"{label} {path}: cannot list it ({exc.strerror or exc})") from None
    found = classify_directory(names)
    problem = found.problem(str(path))
    if problem is not None:
        raise InvalidModelfile(f"{label} {problem}")
    return [LocalFile(path / name, name, _header(path / name, label)) for name in found.files]


_FILE_SUFFIXES = (".gguf", ".bin", ".safetensors", ".pt", ".pth", ".ggml")


def looks_like_a_path(value: str) -> bool:
    """A FROM or ADAPTER value that can only mean a file: ``/``, ``./``, ``../``, ``~``, ``\\`` in front,
    or a weights file's suffix (no model is called ``x.gguf``)."""
    return (
        value.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in value
        or value.lower().endswith(_FILE_SUFFIXES)
    )


def local_files(value: str, base: Path, label: str) -> list[LocalFile] | None:
    """The GGUF(s) *value* names, or None when nothing exists there (then it is a model name).

    Raises:
        InvalidModelfile: nothing exists there and *value* can only be a path (ollama-seed refuses it
            here; Ollama would try to pull a model of that name).
    """
    path = expand(value, base)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if looks_like_a_path(value):
            where = (
                ""
                if os.path.isabs(value) or value.startswith("~")
                else f"; a relative path is read from the Modelfile's folder, {base}"
            )
            raise InvalidModelfile(f"{label} {value}: no such file: {path}{where}") from None
        return None
    except OSError as exc:
        raise InvalidModelfile(f"{label} {value}: cannot look at {path} ({exc.strerror or exc})") from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        return _folder(path, label)
    if not stat.S_ISREG(st.st_mode):
        raise InvalidModelfile(f"{label} {path}: not a regular file or a folder")
    return [LocalFile(path, path.name, _header(path, label))]


def ingest_gguf(
    store: ModelStore, local: LocalFile, progress: Callable[[int, int], None] | None = None
) -> tuple[GGUFFile, bool]:
    """Copy *local* into the store (unless a known copy is there); the file as the layer builder wants it,
    and whether it was already in the store."""
    layer, existed = ingest_file(store, local.path, gguf_media_type(local.info), progress=progress)
    return GGUFFile(local.key, layer.digest, layer.size, local.info), existed
