"""Where things live in an Ollama models directory. Pure path arithmetic, no I/O.

::

    $OLLAMA_MODELS/                       (default ~/.ollama/models)
    ├── blobs/
    │   └── sha256-<64 hex>               verified blobs only, mode 0644
    ├── manifests/
    │   └── <host>/<namespace>/<model>/<tag>   exact registry bytes, mode 0644, written last
    └── .ollama-seed/                     ours, mode 0700; Ollama never looks here
        ├── staging/sha256-<hex>.data     a blob being downloaded (pre-sized, written at offsets)
        ├── staging/sha256-<hex>.state    its resume state (binary, memory-mapped)
        ├── locks/sha256-<hex>.lock       per-blob lock that saves bandwidth between processes
        ├── signatures/sha256-<hex>/      signatures of the manifest with that digest (records)
        └── tmp/                          manifests on their way to an atomic rename

Nothing of ours ever sits in ``blobs/`` or ``manifests/`` under a name Ollama could
mistake: its start-up prune deletes strays in ``blobs/``, and it reads every file four
levels under ``manifests/`` as a manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .digest import Digest
from .errors import InvalidName
from .reference import ModelName, windows_path_problem

__all__ = ["ModelsLayout", "StrPath", "default_models_dir"]

StrPath = str | os.PathLike[str]
"""A path as callers give one: a string or any ``os.PathLike`` (a :class:`~pathlib.Path`)."""

STATE_DIR = ".ollama-seed"


def default_models_dir(environ: dict[str, str] | None = None) -> Path:
    """Ollama's models directory: ``$OLLAMA_MODELS``, else ``~/.ollama/models`` (``envconfig.Models``)."""
    env = os.environ if environ is None else environ
    value = env.get("OLLAMA_MODELS", "").strip().strip("\"'")  # envconfig.Var: TrimSpace, then Trim quotes
    if value:
        return Path(value).expanduser()
    return Path.home() / ".ollama" / "models"


@dataclass(frozen=True, slots=True)
class ModelsLayout:
    """Paths inside one models directory. *windows_names*: refuse names Windows cannot store."""

    root: Path
    windows_names: bool = False

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def staging_dir(self) -> Path:
        return self.state_dir / "staging"

    @property
    def locks_dir(self) -> Path:
        return self.state_dir / "locks"

    @property
    def tmp_dir(self) -> Path:
        return self.state_dir / "tmp"

    @property
    def signatures_dir(self) -> Path:
        return self.state_dir / "signatures"

    def signatures(self, manifest_digest: Digest) -> Path:
        """Where the signatures of the manifest with *manifest_digest* are kept."""
        return self.signatures_dir / manifest_digest.filename

    def blob(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.filename

    def manifest(self, name: ModelName) -> Path:
        """Raises InvalidName on Windows for a name with no file-system spelling there."""
        if self.windows_names and (problem := windows_path_problem(name)):
            raise InvalidName(problem)
        return self.manifests_dir.joinpath(*name.path_parts)

    def staging_data(self, digest: Digest) -> Path:
        return self.staging_dir / f"{digest.filename}.data"

    def staging_state(self, digest: Digest) -> Path:
        return self.staging_dir / f"{digest.filename}.state"

    def lock(self, digest: Digest) -> Path:
        return self.locks_dir / f"{digest.filename}.lock"

    def name_for_manifest_path(self, path: Path) -> ModelName | None:
        """The model name a file four levels under ``manifests/`` stands for, or None."""
        try:
            parts = path.relative_to(self.manifests_dir).parts
        except ValueError:
            return None
        if len(parts) != 4:
            return None
        host, namespace, model, tag = parts
        try:
            return ModelName.from_parts(host, namespace, model, tag)
        except ValueError:
            return None
