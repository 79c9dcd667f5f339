"""ollama-seed: Ollama models on disk before anything asks for them.

Pull straight from the registry into Ollama's store (``$OLLAMA_MODELS``), resumable and
verified, with no Ollama server needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .__about__ import __version__
from .core.digest import Digest
from .core.errors import (
    AuthenticationError,
    BundleError,
    ConfigError,
    InsufficientSpace,
    IntegrityError,
    InvalidModelfile,
    InvalidName,
    ModelNotFound,
    OfflineError,
    RegistryError,
    RegistryProtocolError,
    SeedError,
    SeedTimeout,
    ServerError,
    SignatureError,
    SigningKeyError,
    StoreError,
    TransferError,
)
from .core.layout import ModelsLayout, default_models_dir
from .core.manifest import Layer, Manifest
from .core.progress import LayerNote, LayerProgress, ProgressCallback, ProgressEvent, Status
from .core.reference import ModelName
from .startup.fast_path import ensure
from .startup.local import EnsureReport
from .store.store import BlobProblem, InstalledModel, ModelStore, PruneReport

if TYPE_CHECKING:  # the I/O layers load on first use: `import ollama_seed` stays cheap
    from .bundle.api import (
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
    from .bundle.image.api import (
        ImageReport,
        ImageResult,
        abuild_image,
        aextract_image,
        averify_image,
        build_image,
        extract_image,
        verify_image,
    )
    from .core.trustpolicy import TrustPolicy, TrustRule
    from .creation.api import CreateResult, acreate, create
    from .mirror.app import MirrorApp
    from .mirror.push import PushResult, apush, push
    from .mirror.serve import ServeInfo, aserve, create_app, serve
    from .pulling.api import apull, pull
    from .pulling.options import PullOptions
    from .pulling.provenance import VerifiedModels, sign_models, verify_models
    from .pulling.session import PullResult
    from .startup.api import aensure
    from .startup.server import ServerInfo, await_ready, wait_ready
    from .wire.credentials import DockerCredentials
    from .wire.keys import PublicKey, SigningKey
    from .wire.trust import Signer, Trust

_LAZY: dict[str, str] = {
    "apull": ".pulling.api",
    "pull": ".pulling.api",
    "PullOptions": ".pulling.options",
    "BundleInfo": ".bundle.api",
    "BundleModel": ".bundle.api",
    "ExportResult": ".bundle.api",
    "ImportResult": ".bundle.api",
    "aexport_bundle": ".bundle.api",
    "aimport_bundle": ".bundle.api",
    "ainspect_bundle": ".bundle.api",
    "averify_bundle": ".bundle.api",
    "export_bundle": ".bundle.api",
    "import_bundle": ".bundle.api",
    "inspect_bundle": ".bundle.api",
    "verify_bundle": ".bundle.api",
    "ImageReport": ".bundle.image.api",
    "ImageResult": ".bundle.image.api",
    "abuild_image": ".bundle.image.api",
    "aextract_image": ".bundle.image.api",
    "averify_image": ".bundle.image.api",
    "build_image": ".bundle.image.api",
    "extract_image": ".bundle.image.api",
    "verify_image": ".bundle.image.api",
    "DockerCredentials": ".wire.credentials",
    "PublicKey": ".wire.keys",
    "SigningKey": ".wire.keys",
    "Signer": ".wire.trust",
    "Trust": ".wire.trust",
    "TrustPolicy": ".core.trustpolicy",
    "TrustRule": ".core.trustpolicy",
    "VerifiedModels": ".pulling.provenance",
    "sign_models": ".pulling.provenance",
    "verify_models": ".pulling.provenance",
    "aensure": ".startup.api",
    "CreateResult": ".creation.api",
    "acreate": ".creation.api",
    "create": ".creation.api",
    "MirrorApp": ".mirror.app",
    "PullResult": ".pulling.session",
    "PushResult": ".mirror.push",
    "apush": ".mirror.push",
    "push": ".mirror.push",
    "ServeInfo": ".mirror.serve",
    "aserve": ".mirror.serve",
    "create_app": ".mirror.serve",
    "serve": ".mirror.serve",
    "ServerInfo": ".startup.server",
    "await_ready": ".startup.server",
    "wait_ready": ".startup.server",
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
    "CreateResult",
    "Digest",
    "DockerCredentials",
    "EnsureReport",
    "ExportResult",
    "ImageReport",
    "ImageResult",
    "ImportResult",
    "InstalledModel",
    "InsufficientSpace",
    "IntegrityError",
    "InvalidModelfile",
    "InvalidName",
    "Layer",
    "LayerNote",
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
    "PublicKey",
    "PullOptions",
    "PullResult",
    "PushResult",
    "RegistryError",
    "RegistryProtocolError",
    "SeedError",
    "SeedTimeout",
    "ServeInfo",
    "ServerError",
    "ServerInfo",
    "SignatureError",
    "Signer",
    "SigningKey",
    "SigningKeyError",
    "Status",
    "StoreError",
    "TransferError",
    "Trust",
    "TrustPolicy",
    "TrustRule",
    "VerifiedModels",
    "__version__",
    "abuild_image",
    "acreate",
    "aensure",
    "aexport_bundle",
    "aextract_image",
    "aimport_bundle",
    "ainspect_bundle",
    "apull",
    "apush",
    "aserve",
    "averify_bundle",
    "averify_image",
    "await_ready",
    "build_image",
    "create",
    "create_app",
    "default_models_dir",
    "ensure",
    "export_bundle",
    "extract_image",
    "import_bundle",
    "inspect_bundle",
    "pull",
    "push",
    "serve",
    "sign_models",
    "verify_bundle",
    "verify_image",
    "verify_models",
    "wait_ready",
]
