"""ollama-seed: Ollama models on disk before anything asks for them.

Pull straight from the registry into Ollama's store (``$OLLAMA_MODELS``), resumable and
verified, with no Ollama server needed.
"""

from __future__ import annotations

from .__about__ import __version__
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
from ._digest import Digest
from ._ensure import EnsureReport, aensure, ensure
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
from ._mirror import MirrorApp
from ._progress import LayerProgress, ProgressCallback, ProgressEvent, Status
from ._pull import PullResult
from ._push import PushResult, apush, push
from ._reference import ModelName
from ._serve import ServeInfo, aserve, create_app, serve
from ._server import ServerInfo, await_ready, wait_ready
from ._store import BlobProblem, InstalledModel, ModelStore, PruneReport

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
