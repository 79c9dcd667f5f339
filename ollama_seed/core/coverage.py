"""What an OMS signature over Ollama models covers, and the checks that find what was changed. Pure.

A signature over models lists, as they lie in a models directory, each model's manifest
(``manifests/<host>/<namespace>/<model>/<tag>`` with the SHA-256 of its exact bytes, the
model's ID) and every blob those manifests name (``blobs/sha256-<hex>``, whose digest is its
name). The manifest path binds the name, so an approved model cannot be installed as another
approved name; the manifest digest binds every blob, since a manifest names its blobs by digest.

:func:`check_models` refuses, with a message naming the model: a model the signature does not
list (added, or renamed), a manifest whose bytes differ from the signed ones (edited), a blob
not signed, and with ``exact=True`` a signed model that is missing (dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .digest import Digest
from .errors import InvalidName, SignatureError
from .intoto import OmsManifest
from .manifest import Manifest
from .reference import ModelName

__all__ = ["SignedModels", "check_models", "manifest_resource", "model_resources", "subject_name"]


def manifest_resource(name: ModelName) -> str:
    """The resource name of *name*'s manifest: its path in a models directory."""
    return "manifests/" + "/".join(name.path_parts)


def model_resources(models: Iterable[tuple[ModelName, Manifest]]) -> dict[str, str]:
    """``resource name -> sha256 hex`` of each model's manifest and every blob it names."""
    out: dict[str, str] = {}
    for name, manifest in models:
        out[manifest_resource(name)] = manifest.digest.hex
        for layer in manifest.blobs:
            out[f"blobs/{layer.digest.filename}"] = layer.digest.hex
    return out


def subject_name(names: Sequence[ModelName]) -> str:
    """An informational name for the signed set: the model, or how many and which."""
    shown = [n.display for n in names]
    if len(shown) == 1:
        return shown[0]
    text = f"{len(shown)} models: " + ", ".join(shown)
    return text if len(text) <= 200 else text[:197] + "..."


def _manifest_name(path: str) -> ModelName | None:
    """The model a ``manifests/<host>/<namespace>/<model>/<tag>`` resource names, as the store reads
    its manifest paths (:meth:`ModelName.from_parts`); None for any other path."""
    parts = path.split("/")
    if len(parts) != 5 or parts[0] != "manifests":
        return None
    try:
        return ModelName.from_parts(*parts[1:])
    except InvalidName:
        return None


@dataclass(frozen=True, slots=True)
class SignedModels:
    """The models and blobs an OMS statement lists; *others* are files outside the Ollama layout."""

    manifests: Mapping[ModelName, Digest]
    blobs: frozenset[Digest]
    others: tuple[str, ...] = field(default=())

    @classmethod
    def from_oms(cls, oms: OmsManifest) -> SignedModels:
        """Sort the resources of *oms* into manifests, blobs and other files.

        Raises:
            SignatureError: a blob resource whose digest is not its name.
        """
        manifests: dict[ModelName, Digest] = {}
        blobs: set[Digest] = set()
        others: list[str] = []
        for path, hex_digest in oms.resources.items():
            if path.startswith("blobs/"):
                digest = Digest.from_filename(path.removeprefix("blobs/"))
                if digest is not None:
                    if digest.hex != hex_digest:
                        raise SignatureError(f"the signature gives {path} the digest {hex_digest}, not its name")
                    blobs.add(digest)
                    continue
            name = _manifest_name(path)
            if name is not None:
                manifests[name] = Digest(hex_digest)
            else:
                others.append(path)
        return cls(manifests, frozenset(blobs), tuple(others))

    def names(self) -> list[ModelName]:
        return sorted(self.manifests, key=str)


def check_models(
    signed: SignedModels,
    models: Iterable[tuple[ModelName, Digest, Iterable[Digest]]],
    *,
    exact: bool,
    what: str = "the bundle",
) -> None:
    """Check *models* (name, manifest digest, blob digests) against what was signed.

    Raises:
        SignatureError: the first difference, named.
    """
    seen: set[ModelName] = set()
    for name, manifest_digest, blobs in models:
        seen.add(name)
        signed_digest = signed.manifests.get(name)
        if signed_digest is None:
            raise SignatureError(
                f"{name.display} in {what} is not covered by the signature (a model was added or renamed); "
                f"the signature covers: {_listing(signed)}"
            )
        if signed_digest != manifest_digest:
            raise SignatureError(
                f"the manifest of {name.display} in {what} is not the signed one (signed {signed_digest}, "
                f"found {manifest_digest}): it was edited or replaced"
            )
        for digest in blobs:
            if digest not in signed.blobs:
                raise SignatureError(f"blob {digest} of {name.display} in {what} is not covered by the signature")
    if exact:
        dropped = [n for n in signed.names() if n not in seen]
        if dropped:
            raise SignatureError(
                f"the signature covers {dropped[0].display}, which {what} lacks (a model was dropped or renamed)"
            )


def _listing(signed: SignedModels) -> str:
    names = [n.display for n in signed.names()]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return shown or "no model"
