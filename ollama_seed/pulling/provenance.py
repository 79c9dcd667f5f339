"""Signing models already in a store, and checking a store against a signature (``sign`` and ``verify --signature``).

For sites that pull on the connected side and carry models by other means (rsync, NFS, a disk):
``sign_models`` writes an OMS signature over the named models as they lie in the store (their
manifests and every blob those name; nothing is hashed, blob names are digests), and
``verify_models`` checks a store against one: the signature is by a key or CA you trust, each
model's manifest is the signed one under the signed name, each of its blobs is signed, and (with
*content*) each blob file hashes to its name. A signature that verified is kept in the store
(``.ollama-seed/signatures/``), so ``ensure(..., trust=...)`` accepts those models with no network
and ``serve`` hands the signature on. The same file is what ``model_signing verify key STORE
--signature FILE --public_key KEY --ignore_unsigned_files`` checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..core.coverage import check_models
from ..core.errors import IntegrityError, SignatureError
from ..core.layout import StrPath
from ..core.manifest import Manifest
from ..core.reference import ModelName
from ..core.sigrecord import StoredSignature
from ..store.signatures import SignatureStore
from ..store.store import ModelStore
from ..wire.keys import SigningKey
from ..wire.oms import sign_models as _sign
from ..wire.oms import verify_oms
from ..wire.pem import read_limited
from ..wire.trust import Signer, Trust
from ..wire.verify import first_trusted

__all__ = ["VerifiedModels", "read_signature", "sign_models", "stored_signer", "verify_models"]

MAX_SIGNATURE_FILE = 16 * 1024 * 1024


def _names(names: str | ModelName | Iterable[str | ModelName]) -> list[ModelName]:
    items = [names] if isinstance(names, (str, ModelName)) else list(names)
    return [ModelName.of(n) for n in items]


def sign_models(
    names: str | ModelName | Iterable[str | ModelName], key: SigningKey, *, models_dir: StrPath | None = None
) -> bytes:
    """An OMS signature (a Sigstore bundle, JSON) over installed models; write it where you like.

    Raises:
        ModelNotFound: a model is not installed. StoreError: one is incomplete.
        ValueError: no model named.
    """
    refs = _names(names)
    if not refs:
        raise ValueError("name at least one model to sign")
    store = ModelStore(models_dir)
    models: list[tuple[ModelName, Manifest]] = []
    for ref in refs:
        model = store.get_complete(ref, before="signing it")
        if all(model.name != n for n, _ in models):
            models.append((model.name, model.manifest))
    return _sign(key, models)


@dataclass(frozen=True, slots=True)
class VerifiedModels:
    """What :func:`verify_models` found: the signer and the models it vouches for."""

    signer: Signer
    models: tuple[ModelName, ...]


def read_signature(path: StrPath) -> bytes:
    """A signature file's bytes.

    Raises:
        SignatureError: it cannot be read or is too large to be one.
    """
    return read_limited(path, "signature", MAX_SIGNATURE_FILE, SignatureError)


def verify_models(
    signature: bytes | StrPath,
    trust: Trust,
    names: Sequence[str | ModelName] = (),
    *,
    models_dir: StrPath | None = None,
    content: bool = True,
    keep: bool = True,
) -> VerifiedModels:
    """Check installed models against an OMS signature made over them (by ``sign_models``,
    ``export --sign`` or the upstream ``model_signing sign``).

    Args:
        signature: the signature's bytes, or its file.
        trust: whom you trust.
        names: the models to check; default every model the signature covers.
        content: re-hash every blob (otherwise only their sizes are checked).
        keep: keep the signature in the store when it verified.

    Raises:
        SignatureError: not by a key or CA you trust, altered, or not over these models as they are
            (a model not covered, a manifest edited, a blob not signed).
        ModelNotFound: a model is not installed. IntegrityError: a blob's bytes do not hash to its name.
    """
    raw = signature if isinstance(signature, bytes) else read_signature(signature)
    verified = verify_oms(raw, trust)
    store = ModelStore(models_dir)
    refs = _names(names) or verified.signed.names()
    if not refs:
        raise SignatureError("the signature covers no model of an Ollama models directory")
    models = [store.get(ref) for ref in refs]
    check_models(
        verified.signed,
        [(m.name, m.manifest.digest, [layer.digest for layer in m.manifest.blobs]) for m in models],
        exact=False,
        what=f"the store {store.root}",
    )
    for model in models:
        for layer in model.manifest.blobs:
            problem = store.verify_blob(layer) if content else (None if store.has_blob(layer) else "missing")
            if problem:
                raise IntegrityError(
                    f"blob {layer.digest} of {model.name.display} in {store.root} is {problem}: it is not the "
                    f"signed content; run 'ollama-seed pull {model.name.display}' (or import it again) to repair it"
                )
    if keep:
        records = SignatureStore(store)
        for model in models:
            records.add(model.manifest.digest, StoredSignature("oms", bundle=raw))
    return VerifiedModels(verified.signer, tuple(m.name for m in models))


def stored_signer(store: ModelStore, name: ModelName, manifest: Manifest, trust: Trust) -> Signer | None:
    """The signer of a signature the store keeps for this model that *trust* accepts, or None."""
    _, signer, _ = first_trusted(SignatureStore(store).records(manifest.digest), trust, name, manifest)
    return signer
