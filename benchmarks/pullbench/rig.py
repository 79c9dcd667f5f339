"""The registry side of a run: one Docker Distribution registry, seeded once, shared by all scenarios."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.model import make_model
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

from .tools import Target

REPO_NAME = "library/bench"
TAG = "latest"


@dataclass
class SeededModel:
    """A model pushed into the registry, and where its model-layer bytes live in the registry's storage."""

    repo: str
    tag: str
    manifest_digest: str
    blob_digest: str
    blob_size: int
    total_size: int
    blob_sizes: dict[str, int]
    source: Path
    seed_seconds: float
    origin: str

    def target(self, base_url: str) -> Target:
        return Target(base_url, self.repo, self.tag, self.blob_digest, self.blob_size, self.total_size, self.blob_sizes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "tag": self.tag,
            "manifest_digest": self.manifest_digest,
            "blob_digest": self.blob_digest,
            "blob_size": self.blob_size,
            "total_size": self.total_size,
            "blobs": len(self.blob_sizes),
            "seed_seconds": round(self.seed_seconds, 2),
            "origin": self.origin,
        }


def seed_model(
    registry: DockerRegistry,
    scratch: Path,
    size: int,
    *,
    repo: str = REPO_NAME,
    model_file: Path | None = None,
    seed: int = 0,
) -> SeededModel:
    """Build (synthetic, or from *model_file*) and push one model; the built layer file is removed after."""
    t0 = time.monotonic()
    build = scratch / "model-build"
    model = make_model(build, size_bytes=size, seed=seed, model_file=model_file)
    seed_registry(registry.url, repo, TAG, model)
    layer = model.model_layer
    source = (
        registry.workdir
        / "storage"
        / "docker"
        / "registry"
        / "v2"
        / "blobs"
        / "sha256"
        / layer.hex[:2]
        / layer.hex
        / "data"
    )
    if not source.is_file():
        raise RuntimeError(f"the registry did not store the blob where expected: {source}")
    shutil.rmtree(build, ignore_errors=True)
    origin = f"GGUF file {model_file.name}" if model_file else f"synthetic (seed {seed})"
    return SeededModel(
        repo,
        TAG,
        model.manifest_digest,
        layer.digest,
        layer.size,
        model.total_size,
        {b.digest: b.size for b in model.blobs},
        source,
        time.monotonic() - t0,
        origin,
    )


@contextlib.contextmanager
def registry(workdir: Path) -> Iterator[DockerRegistry]:
    reg = DockerRegistry.start(workdir / "registry", access_log=False, log_level="error")
    try:
        yield reg
    finally:
        reg.stop()
