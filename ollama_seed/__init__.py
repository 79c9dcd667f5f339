"""ollama-seed: Ollama models on disk before anything asks for them.

Pull straight from the registry into Ollama's store (``$OLLAMA_MODELS``), resumable and
verified, with no Ollama server needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .__about__ import __version__
from ._digest import Digest
from ._ensure_local import EnsureReport, ensure
from ._errors import (
    AuthenticationError,
    BundleError,
    ConfigError,
    InsufficientSpace,
    IntegrityError,
    InvalidName,
    ModelNotFound,
    OfflineError,
    RegistryError,
    RegistryProtocolError,
    SeedError,
    SeedTimeout,
    ServerError,
    StoreError,
    TransferError,
)
from ._layout import ModelsLayout, default_models_dir
from ._manifest import Layer, Manifest
from ._progress import LayerProgress, ProgressCallback, ProgressEvent, Status
from ._reference import ModelName
from ._store import BlobProblem, InstalledModel, ModelStore, PruneReport

if TYPE_CHECKING:  # the I/O layers load on first use: `import ollama_seed` stays cheap
    from ._api import apull, pull
    from ._bundle import (
        BundleInfo,
        BundleModel,
        ExportResult,
        ImportResult,
        aexport_bundle,
        aimport_bundle,
        ainspect_bundle,
        averify_bundle,
        export_bundle,
        import_bundle,
        inspect_bundle,
        verify_bundle,
    )
    from ._credentials import DockerCredentials
    from ._ensure import aensure
    from ._mirror import MirrorApp
    from ._pull import PullResult
    from ._push import PushResult, apush, push
    from ._serve import ServeInfo, aserve, create_app, serve
    from ._server import ServerInfo, await_ready, wait_ready

_LAZY: dict[str, str] = {
    "apull": "._api",
    "pull": "._api",
    "BundleInfo": "._bundle",
    "BundleModel": "._bundle",
    "ExportResult": "._bundle",
    "ImportResult": "._bundle",
    "aexport_bundle": "._bundle",
    "aimport_bundle": "._bundle",
    "ainspect_bundle": "._bundle",
    "averify_bundle": "._bundle",
    "export_bundle": "._bundle",
    "import_bundle": "._bundle",
    "inspect_bundle": "._bundle",
    "verify_bundle": "._bundle",
    "DockerCredentials": "._credentials",
    "aensure": "._ensure",
    "MirrorApp": "._mirror",
    "PullResult": "._pull",
    "PushResult": "._push",
    "apush": "._push",
    "push": "._push",
    "ServeInfo": "._serve",
    "aserve": "._serve",
    "create_app": "._serve",
    "serve": "._serve",
    "ServerInfo": "._server",
    "await_ready": "._server",
    "wait_ready": "._server",
}



def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ollama_seed' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AuthenticationError",
    "BlobProblem",
    "BundleError",
    "BundleInfo",
    "BundleModel",
    "ConfigError",
    "Digest",
    "DockerCredentials",
    "EnsureReport",
    "ExportResult",
    "ImportResult",
    "InstalledModel",
    "InsufficientSpace",
    "IntegrityError",
    "InvalidName",
    "Layer",
    "LayerProgress",
    "Manifest",
    "MirrorApp",
    "ModelName",
    "ModelNotFound",
    "ModelStore",
    "ModelsLayout",
    "OfflineError",
    "ProgressCallback",
    "ProgressEvent",
    "PruneReport",
    "PullResult",
    "PushResult",
    "RegistryError",
    "RegistryProtocolError",
    "SeedError",
    "SeedTimeout",
    "ServeInfo",
    "ServerError",
    "ServerInfo",
    "Status",
    "StoreError",
    "TransferError",
    "__version__",
    "aensure",
    "aexport_bundle",
    "aimport_bundle",
    "ainspect_bundle",
    "apull",
    "apush",
    "aserve",
    "averify_bundle",
    "await_ready",
    "create_app",
    "default_models_dir",
    "ensure",
    "export_bundle",
    "import_bundle",
    "inspect_bundle",
    "pull",
    "push",
    "serve",
    "verify_bundle",
    "wait_ready",
]
