"""Build deterministic Ollama-style models (manifest + config + layers) for tests.

The synthetic model layer is the concatenation of ``random.Random(seed).randbytes(1 MIB)``
blocks cut to the requested size, so a ``(seed, size)`` pair always gives the same digest
(``seed=0``, 8 MIB -> ``sha256:2c00584a...``). Large layers are written to a file while
they are hashed, never held in memory.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import MIB

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
MT_MODEL = "application/vnd.ollama.image.model"
MT_TEMPLATE = "application/vnd.ollama.image.template"
MT_LICENSE = "application/vnd.ollama.image.license"
MT_PARAMS = "application/vnd.ollama.image.params"
MT_SYSTEM = "application/vnd.ollama.image.system"

GEN_BLOCK = MIB  # the synthetic stream is defined in 1 MIB randbytes() blocks
IN_MEMORY_LIMIT = 64 * MIB  # synthetic layers above this need a directory to live in

DEFAULT_TEMPLATE = "{{ if .System }}<|system|>{{ .System }}</s>{{ end }}<|user|>{{ .Prompt }}</s><|assistant|>"
DEFAULT_LICENSE = "Synthetic ollama-seed test model. Pseudo-random weights, no license obligations.\n"
DEFAULT_PARAMS: Mapping[str, Any] = {"stop": ["</s>", "<|user|>"], "temperature": 0.7}
ONE_BYTE_LAYER = (MT_SYSTEM, b".")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def synthetic_blocks(seed: int, size: int) -> Iterator[bytes]:
    """Yield the deterministic synthetic stream for ``(seed, size)`` in blocks of <= 1 MIB."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        block = rng.randbytes(GEN_BLOCK)
        if left < GEN_BLOCK:
            block = block[:left]
        left -= len(block)
        yield block


def iter_file(path: Path, chunk_size: int = 4 * MIB) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(chunk_size):
            yield block


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    for block in iter_file(path):
        h.update(block)
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class BlobInfo:
    """One blob: its descriptor fields and where its bytes are (in memory or a file)."""

    digest: str
    size: int
    media_type: str
    source: bytes | Path = field(repr=False)
    role: str = ""

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def iter_bytes(self, chunk_size: int = 4 * MIB) -> Iterator[bytes]:
        if isinstance(self.source, Path):
            yield from iter_file(self.source, chunk_size)
        else:
            for i in range(0, len(self.source), chunk_size):
                yield self.source[i : i + chunk_size]

    def read_bytes(self) -> bytes:
        return self.source.read_bytes() if isinstance(self.source, Path) else self.source

    def write_to(self, dest: Path) -> None:
        if isinstance(self.source, Path):
            shutil.copyfile(self.source, dest)
        else:
            dest.write_bytes(self.source)


@dataclass
class BuiltModel:
    """An Ollama-style model ready to push: exact manifest bytes plus its blobs."""

    manifest: bytes
    config: BlobInfo
    layers: list[BlobInfo]  # manifest order, duplicates included

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def blobs(self) -> list[BlobInfo]:
        """Distinct blobs (config first, then layers in manifest order)."""
        seen: dict[str, BlobInfo] = {}
        for b in (self.config, *self.layers):
            seen.setdefault(b.digest, b)
        return list(seen.values())

    @property
    def model_layer(self) -> BlobInfo:
        return next(b for b in self.layers if b.media_type == MT_MODEL)

    @property
    def total_size(self) -> int:
        return sum(b.size for b in self.blobs)

    def blob(self, digest: str) -> BlobInfo:
        return next(b for b in self.blobs if b.digest == digest)

    def expected_store(self, root: Path, host: str, repo: str, tag: str) -> Path:
        """Write what Ollama keeps after pulling ``host/repo:tag``; return the manifest path.

        ``root/blobs/sha256-<hex>`` per distinct blob, and
        ``root/manifests/<host>/<ns>/<model>/<tag>`` with the exact manifest bytes.
        """
        ns, _, name = repo.rpartition("/")
        if not ns or not name:
            raise ValueError(f"repo must be 'namespace/model', got {repo!r}")
        blob_dir = root / "blobs"
        blob_dir.mkdir(parents=True, exist_ok=True)
        for b in self.blobs:
            b.write_to(blob_dir / f"sha256-{b.hex}")
        manifest_path = root / "manifests" / host / ns / name / tag
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_bytes(self.manifest)
        return manifest_path

    def summary(self) -> dict[str, Any]:
        return {
            "manifest_digest": self.manifest_digest,
            "manifest_size": len(self.manifest),
            "total_size": self.total_size,
            "blobs": [
                {"role": b.role, "mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in self.blobs
            ],
        }


def bytes_blob(media_type: str, data: bytes, role: str = "") -> BlobInfo:
    return BlobInfo(sha256_digest(data), len(data), media_type, data, role)


def synthetic_layer(size: int, seed: int, directory: Path | None) -> BlobInfo:
    """The deterministic model layer: in memory if ``directory`` is None, else a file in it."""
    if size < 0:
        raise ValueError("size must be >= 0")
    h = hashlib.sha256()
    if directory is None:
        if size > IN_MEMORY_LIMIT:
            raise ValueError(f"a {size} byte synthetic layer needs a directory (limit {IN_MEMORY_LIMIT})")
        data = b"".join(synthetic_blocks(seed, size))
        return BlobInfo(sha256_digest(data), size, MT_MODEL, data, "model")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"synthetic-seed{seed}-{size}.bin"
    with path.open("wb") as f:
        for block in synthetic_blocks(seed, size):
            h.update(block)
            f.write(block)
    return BlobInfo("sha256:" + h.hexdigest(), size, MT_MODEL, path, "model")


def make_model(
    directory: Path | None = None,
    *,
    size_bytes: int = MIB,
    seed: int = 0,
    model_file: Path | None = None,
    template: str | None = DEFAULT_TEMPLATE,
    license_text: str | None = DEFAULT_LICENSE,
    params: Mapping[str, Any] | None = DEFAULT_PARAMS,
    system: str | None = None,
    extra_layers: Sequence[tuple[str, bytes]] = (),
    one_byte_layer: bool = False,
    duplicate_layer: int | None = None,
    model_family: str = "llama",
    model_type: str = "synthetic",
    file_type: str = "F16",
) -> BuiltModel:
    """Build an Ollama-style model.

    The model layer is ``model_file`` if given (e.g. a real GGUF, used in place), else
    ``size_bytes`` synthetic bytes from ``seed`` (written under ``directory``; kept in memory
    when ``directory`` is None, up to 64 MIB). Then template/license/system/params layers,
    ``extra_layers`` as ``(media_type, bytes)``, a 1-byte layer if ``one_byte_layer``, and
    with ``duplicate_layer=i`` the descriptor of layer ``i`` appended a second time.
    """
    if model_file is not None:
        model_file = Path(model_file)
        model = BlobInfo(file_digest(model_file), model_file.stat().st_size, MT_MODEL, model_file, "model")
    else:
        model = synthetic_layer(size_bytes, seed, directory)
    layers = [model]
    if template is not None:
        layers.append(bytes_blob(MT_TEMPLATE, template.encode(), "template"))
    if license_text is not None:
        layers.append(bytes_blob(MT_LICENSE, license_text.encode(), "license"))
    if system is not None:
        layers.append(bytes_blob(MT_SYSTEM, system.encode(), "system"))
    if params is not None:
        layers.append(bytes_blob(MT_PARAMS, compact_json(dict(params)), "params"))
    layers.extend(bytes_blob(mt, data, "extra") for mt, data in extra_layers)
    if one_byte_layer:
        layers.append(bytes_blob(*ONE_BYTE_LAYER, role="one-byte"))
    if duplicate_layer is not None:
        layers.append(layers[duplicate_layer])
    config_doc = {
        "model_format": "gguf",
        "model_family": model_family,
        "model_families": [model_family],
        "model_type": model_type,
        "file_type": file_type,
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
    }
    config = bytes_blob(CONFIG_V1, compact_json(config_doc), "config")
    manifest = compact_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": config.descriptor(),
            "layers": [b.descriptor() for b in layers],
        }
    )
    return BuiltModel(manifest=manifest, config=config, layers=layers)
