"""Build bundles by hand, byte by byte, including hostile ones that no honest tool writes.

A bundle here is a list of member byte strings (header(s) + data + padding) joined with
the end-of-archive marker; tests edit the list to break one thing at a time.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import zstandard

from ollama_seed.bundle.format.index import BundleIndex
from ollama_seed.bundle.format.names import INDEX_MEMBER
from ollama_seed.core.manifest import Manifest
from ollama_seed.core.reference import ModelName
from tests.support.model import BuiltModel, make_model

BLOCK = 512
END = bytes(2 * BLOCK)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def member(
    name: str,
    data: bytes = b"",
    *,
    type: bytes = tarfile.REGTYPE,
    linkname: str = "",
    size: int | None = None,
    fmt: Literal[0, 1, 2] = tarfile.GNU_FORMAT,
) -> bytes:
    """Header(s) + padded data of one member, with any type flag and any name."""
    info = tarfile.TarInfo(name)
    info.type = type
    info.size = len(data) if size is None else size
    info.linkname = linkname
    info.mode = 0o644
    if type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info.tobuf(fmt, "utf-8", "surrogateescape") + pad(data)


def set_type(header: bytes, typeflag: bytes) -> bytes:
    """A copy of a 512-byte header with another type flag and a fixed-up checksum."""
    block = bytearray(header[:BLOCK])
    block[156:157] = typeflag
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block) + header[BLOCK:]


def pax_member(records: dict[str, str]) -> bytes:
    """A bare pax extended header (type 'x') with the given records."""
    body = b""
    for key, value in records.items():
        line = f" {key}={value}\n".encode()
        n = len(line) + len(str(len(line)))
        n = len(line) + len(str(n))
        body += str(n).encode() + line
    return member("././@PaxHeader", body, type=tarfile.XHDTYPE, fmt=tarfile.USTAR_FORMAT)


def join(members: Iterable[bytes], *, end: bool = True) -> bytes:
    return b"".join(members) + (END if end else b"")


def zstd(data: bytes, level: int = 3) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(data)


@dataclass
class Model:
    name: ModelName
    built: BuiltModel

    @property
    def manifest(self) -> Manifest:
        return Manifest.parse(self.built.manifest)

    @property
    def manifest_path(self) -> str:
        return "manifests/" + "/".join(self.name.path_parts)


def models(count: int = 2, size: int = 40_000) -> list[Model]:
    """*count* small models that share their template, license and params blobs."""
    out = []
    for i in range(count):
        name = ModelName.parse(f"m{i}:latest")
        out.append(Model(name, make_model(size_bytes=size + i, seed=100 + i)))
    return out


def index_member(items: list[Model], *, raw: bytes | None = None) -> bytes:
    index = BundleIndex.build([(m.name, m.manifest) for m in items], created_by="craft", created="")
    return member(INDEX_MEMBER, index.encode() if raw is None else raw)


def bundle_members(items: list[Model], *, index: bool = True) -> list[bytes]:
    """Members of an honest bundle of *items*: index, then per model its new blobs and manifest."""
    out = [index_member(items)] if index else []
    seen: set[str] = set()
    for m in items:
        for b in m.built.blobs:
            if b.digest not in seen:
                seen.add(b.digest)
                out.append(member(f"blobs/sha256-{b.hex}", b.read_bytes()))
        out.append(member(m.manifest_path, m.built.manifest))
    return out


def snapshot(root: Path) -> dict[str, tuple[str, int, str, int]]:
    """Everything under *root* but our lock files: kind, size, sha256, inode."""
    state: dict[str, tuple[str, int, str, int]] = {}
    if not root.exists():
        return state
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if rel.startswith(".ollama-seed/locks/"):
                continue
            st = path.lstat()
            if path.is_symlink():
                state[rel] = ("link", 0, os.readlink(path), st.st_ino)
            elif path.is_dir():
                state[rel] = ("dir", 0, "", st.st_ino)
            else:
                state[rel] = ("file", st.st_size, hashlib.sha256(path.read_bytes()).hexdigest(), st.st_ino)
    return state


def install(root: Path, items: list[Model]) -> None:
    """Put *items* into a store the way Ollama keeps them."""
    for m in items:
        host, ns, model, tag = m.name.path_parts
        m.built.expected_store(root, host, f"{ns}/{model}", tag)
