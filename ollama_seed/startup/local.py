"""ensure()'s cheap path: is every model complete on disk? No network, no event loop.

Kept apart from :mod:`.api` so that the blocking :func:`~.fast_path.ensure` of a complete model
imports neither httpx nor anyio: at application start-up it costs little more than
importing the package (``benchmarks/bench_ensure.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..core.digest import Digest
from ..core.errors import OfflineError, StoreError
from ..core.manifest import Layer, Manifest
from ..core.reference import ModelName
from ..store.store import ModelStore

__all__ = [
    "OFFLINE_ENV",
    "EnsureReport",
    "LocalState",
    "Modelfiles",
    "check_local",
    "complete_locally",
    "created_up_to_date",
    "inspect_local",
    "model_names",
    "offline_error",
    "offline_from_env",
    "present_report",
    "verify_local",
]

OFFLINE_ENV = "OLLAMA_SEED_OFFLINE"
_FALSY = {"", "0", "false", "no", "off", "f", "n"}
EnsureStatus = Literal["present", "pulled", "updated", "created"]
Modelfiles = Mapping[str, "str | os.PathLike[str]"]
Names = str | ModelName | Iterable[str | ModelName]


@dataclass(frozen=True, slots=True)
class EnsureReport:
    """What :func:`ensure` did for one model.

    ``status`` is ``present`` (complete already, nothing fetched), ``pulled`` (missing parts
    were fetched), ``updated`` (``update=True`` found a newer manifest and installed it) or
    ``created`` (made from its Modelfile, which or whose files changed since the last create).
    """

    name: ModelName
    status: EnsureStatus
    bytes_fetched: int
    elapsed: float
    manifest_digest: Digest | None = None
    server: str | None = None
    via_server: bool = False
    warmed: bool = False
    source: str | None = None  # where a pull got the manifest, with the scheme used (http for --insecure)
    signer: str | None = None  # who signed it, when trust was configured for the model (``trust=``)

    @property
    def model(self) -> str:
        """The name as Ollama shows it (``llama3.2:1b``)."""
        return self.name.display

    @property
    def fetched(self) -> bool:
        """Whether anything was downloaded or installed."""
        return self.status != "present"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``ollama-seed ensure --json`` prints)."""
        return {
            "model": self.model,
            "name": str(self.name),
            "status": self.status,
            "bytes_fetched": self.bytes_fetched,
            "elapsed": round(self.elapsed, 6),
            "digest": self.manifest_digest.hex if self.manifest_digest else None,
            "server": self.server,
            "via_server": self.via_server,
            "warmed": self.warmed,
            "source": self.source,
            "signer": self.signer,
        }


def offline_from_env(environ: dict[str, str] | None = None) -> bool:
    """Whether ``OLLAMA_SEED_OFFLINE`` asks for offline mode (any value but 0/false/no/off)."""
    env = os.environ if environ is None else environ
    return env.get(OFFLINE_ENV, "").strip().lower() not in _FALSY


def model_names(names: Names) -> list[ModelName]:
    items: Iterable[str | ModelName] = [names] if isinstance(names, (str, ModelName)) else names
    out: dict[str, ModelName] = {}
    for item in items:
        ref = ModelName.of(item)
        out.setdefault(str(ref), ref)
    return list(out.values())


@dataclass(frozen=True, slots=True)
class LocalState:
    """The cheap check's verdict on one model."""

    name: ModelName
    manifest: Manifest | None
    missing: tuple[Layer, ...] = ()
    corrupt: tuple[Layer, ...] = ()
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.manifest is not None and not self.missing and not self.corrupt and self.problem is None

    def describe(self) -> str:
        if self.problem:
            return f"{self.name.display}: {self.problem}"
        parts = []
        if self.missing:
            size = sum(layer.size for layer in self.missing)
            parts.append(
                f"{len(self.missing)} blob(s) missing or incomplete ({size} bytes, first {self.missing[0].digest})"
            )
        if self.corrupt:
            parts.append(f"{len(self.corrupt)} blob(s) whose sha256 does not match (first {self.corrupt[0].digest})")
        return f"{self.name.display}: " + "; ".join(parts)


def inspect_local(store: ModelStore, name: ModelName) -> LocalState:
    """The cheap check: manifest parses, pin matches, every blob present with its size."""
    resolved = store.resolve(name)
    try:
        manifest = store.read_manifest(resolved)
    except StoreError as exc:
        return LocalState(resolved, None, problem=f"its manifest is unreadable ({exc})")
    if manifest is None:
        return LocalState(resolved, None, problem=f"not in {store.root}")
    if name.digest is not None and manifest.digest != name.digest:
        return LocalState(
            resolved, None, problem=f"the manifest on disk is {manifest.digest}, not the pinned {name.digest}"
        )
    return LocalState(resolved, manifest, tuple(store.missing(manifest)))


def verify_local(store: ModelStore, local: LocalState) -> LocalState:
    """*local* with the blobs whose sha256 is wrong listed as corrupt (reads every blob)."""
    if local.manifest is None:
        return local
    absent = {layer.digest for layer in local.missing}
    corrupt = tuple(
        layer for layer in local.manifest.blobs if layer.digest not in absent and store.verify_blob(layer) is not None
    )
    return LocalState(local.name, local.manifest, local.missing, corrupt, local.problem)


def offline_error(store: ModelStore, incomplete: list[LocalState]) -> OfflineError:
    lines = "; ".join(item.describe() for item in incomplete)
    return OfflineError(
        f"offline mode ({OFFLINE_ENV} or --offline) and {len(incomplete)} model(s) are not "
        f"complete in {store.root}: {lines}. Pull them where there is network, or import a bundle"
    )


def present_report(local: LocalState, started: float) -> EnsureReport:
    digest = local.manifest.digest if local.manifest else None
    return EnsureReport(local.name, "present", 0, time.monotonic() - started, digest)


def created_up_to_date(store: ModelStore, name: str, modelfile: str | os.PathLike[str]) -> LocalState | None:
    """The cheap check of a model made from *modelfile*: complete, and created from exactly these files."""
    from ..creation.record import up_to_date

    local = inspect_local(store, ModelName.parse(name))
    if not local.complete or up_to_date(store, local.name, Path(modelfile).expanduser()) is None:
        return None
    return local


def complete_locally(
    names: Names, *, models_dir: str | os.PathLike[str] | None = None, modelfiles: Modelfiles | None = None
) -> tuple[ModelStore, list[tuple[ModelName, LocalState]], list[LocalState]] | None:
    """The store, each named model's state and each Modelfile's model's, if every one is complete on
    disk (and every Modelfile's model up to date), else None. No network, no event loop."""
    store = ModelStore(models_dir)
    named = []
    for ref in model_names(names):
        local = inspect_local(store, ref)
        if not local.complete:
            return None
        named.append((ref, local))
    made = []
    for name, modelfile in (modelfiles or {}).items():
        created = created_up_to_date(store, name, modelfile)
        if created is None:
            return None
        made.append(created)
    return store, named, made


def check_local(
    names: Names, *, models_dir: str | os.PathLike[str] | None = None, modelfiles: Modelfiles | None = None
) -> list[EnsureReport] | None:
    """Reports if every model is complete on disk (and every Modelfile's model up to date), else
    None. No network, no event loop."""
    started = time.monotonic()
    found = complete_locally(names, models_dir=models_dir, modelfiles=modelfiles)
    if found is None:
        return None
    _, named, made = found
    return [present_report(local, started) for _, local in named] + [present_report(m, started) for m in made]
