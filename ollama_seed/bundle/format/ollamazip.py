"""ollamazip archives (``ollamazip pack``, on PyPI): what their ``metadata.json`` says. Pure, no I/O.

An ollamazip archive is a tar (plain, gzip or zstd) of one model::

    metadata.json                 {"archive_version": 1, "registry", "namespace", "model", "tag", ...}
    manifest.json                 the manifest's exact bytes
    blobs/sha256-<64 hex>         each blob the manifest names, config first

The model's name is only in ``metadata.json``, as four separate strings. ollamazip joins them
into a path without checking them, so a hostile archive can name ``../../x``; here they must
form a valid Ollama name whose path parts are exactly those strings, or the archive is refused.
The format was read from ollamazip 0.2.0's source; nothing of its code is used.
"""

from __future__ import annotations

from ...core.errors import BundleError, InvalidName
from ...core.manifest import load_json_object
from ...core.reference import ModelName

__all__ = ["MAX_METADATA_BYTES", "metadata_name"]

MAX_METADATA_BYTES = 64 * 1024
KNOWN_VERSION = 1
_DEFAULTS = {"registry": "registry.ollama.ai", "namespace": "library", "tag": "latest"}  # ollamazip's own


def metadata_name(raw: bytes, *, need_name: bool = True) -> ModelName | None:
    """The model an ollamazip ``metadata.json`` names (None when *need_name* is false: ``--as`` names it).

    Missing ``registry``, ``namespace`` and ``tag`` take ollamazip's defaults; a missing
    ``model`` is refused (ollamazip would install it as ``unknown``). The document and its
    version are checked either way.

    Raises:
        BundleError: not a JSON object, a newer archive version, or a name that is not a
            valid Ollama model name (path traversal, separators, empty parts...).
    """
    try:
        doc = load_json_object(raw, "it")
    except ValueError as exc:
        raise BundleError(f"refusing ollamazip metadata.json: {exc}") from None
    version = doc.get("archive_version", KNOWN_VERSION)
    if version != KNOWN_VERSION:
        raise BundleError(
            f"this ollamazip archive has archive_version {str(version)[:20]!r}; only version "
            f"{KNOWN_VERSION} is known. Unpack it with ollamazip, or name the model with --as "
            "after checking the archive"
        )
    if not need_name:
        return None
    parts = []
    for key in ("registry", "namespace", "model", "tag"):
        value = doc.get(key, _DEFAULTS.get(key))
        if not isinstance(value, str) or not value:
            raise BundleError(f"refusing ollamazip metadata.json: it gives no {key}; import it with --as NAME")
        parts.append(value)
    registry, namespace, model, tag = parts
    shown = f"{registry}/{namespace}/{model}:{tag}"[:200]
    try:
        name = ModelName.from_parts(registry, namespace, model, tag)
    except InvalidName as exc:
        raise BundleError(f"refusing ollamazip metadata.json: {shown!r} is not a valid model name ({exc})") from None
    return name
