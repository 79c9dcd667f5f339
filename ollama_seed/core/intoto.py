"""The in-toto statements ollama-seed signs and reads, and cosign's simple-signing payload. Pure.

OpenSSF Model Signing v1.0 (``predicateType`` ``https://model_signing/signature/v1.0``)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "<model>", "digest": {"sha256": "<root>"}}],
     "predicateType": "https://model_signing/signature/v1.0",
     "predicate": {"serialization": {"method": "files", "hash_type": "sha256",
                                      "allow_symlinks": false, "ignore_paths": [".ollama-seed"]},
                   "resources": [{"name": "blobs/sha256-<hex>", "algorithm": "sha256", "digest": "<hex>"}, ...]}}

*root* is the SHA-256 of the resources' raw digests concatenated in list order. We list them in
Unicode code-point order of their names, as the specification says (the upstream Python signer
sorts by path components, which differs for ``qwen3/...`` against ``qwen3-coder/...``); reading,
we take the list in whatever order it comes, as the upstream verifier does. Over an Ollama
models directory the resources are paths such as ``manifests/<host>/<ns>/<model>/<tag>`` and
``blobs/sha256-<hex>``, and a blob's digest is its name: signing needs no hashing.

cosign (v3) signs a statement with ``predicateType`` ``https://sigstore.dev/cosign/sign/v1``, an
empty predicate and one subject ``{"digest": {"sha256": "<manifest hex>"}}``; cosign v2 (the
legacy ``.sig`` tag) signs the simple-signing payload of containers/image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .digest import Digest
from .errors import InvalidName, SignatureError
from .manifest import load_json_object

__all__ = [
    "COSIGN_PREDICATE_TYPE",
    "OMS_PREDICATE_TYPE",
    "SIMPLE_SIGNING_TYPE",
    "STATEMENT_TYPE",
    "OmsManifest",
    "cosign_statement",
    "oms_statement",
    "parse_cosign_statement",
    "parse_oms",
    "parse_simple_signing",
    "root_digest",
    "simple_signing_payload",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0"
OMS_COMPAT_TYPE = "https://model_signing/Digests/v0.1"
COSIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
MAX_RESOURCES = 1_000_000
MAX_NAME = 4096


def root_digest(digests: Iterable[str]) -> str:
    """OMS's subject digest: SHA-256 over the raw bytes of each hex digest, in order."""
    h = hashlib.sha256()
    for hex_digest in digests:
        h.update(bytes.fromhex(hex_digest))
    return h.hexdigest()


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def oms_statement(resources: Mapping[str, str], *, subject_name: str, ignore_paths: Iterable[str] = ()) -> bytes:
    """The OMS v1.0 statement over *resources* (``name -> sha256 hex``), listed in code-point order."""
    names = sorted(resources)
    serialization: dict[str, Any] = {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
    ignored = list(ignore_paths)
    if ignored:
        serialization["ignore_paths"] = ignored
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject_name, "digest": {"sha256": root_digest(resources[n] for n in names)}}],
        "predicateType": OMS_PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization,
            "resources": [{"name": n, "algorithm": "sha256", "digest": resources[n]} for n in names],
        },
    }
    return _dumps(doc)


@dataclass(frozen=True, slots=True)
class OmsManifest:
    """What an OMS statement says: every signed file (``name -> sha256 hex``), and how they were listed."""

    subject_name: str
    root: str
    resources: Mapping[str, str]
    ignore_paths: tuple[str, ...]


def _bad(why: str) -> SignatureError:
    return SignatureError(f"the signed statement is not usable: {why}")


def _statement(payload: bytes) -> dict[str, Any]:
    try:
        doc = load_json_object(payload, "it")
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if doc.get("_type") != STATEMENT_TYPE:
        raise _bad(f"it is not an in-toto statement ({STATEMENT_TYPE})")
    return doc


def _subject(doc: dict[str, Any]) -> tuple[str, str]:
    """The sha256 hex digest and the name (``""`` when none) of a statement's one subject."""
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _bad("it must have exactly one subject")
    digest, name = subjects[0].get("digest"), subjects[0].get("name", "")
    root = _hex(digest.get("sha256") if isinstance(digest, dict) else None, "subject digest")
    return root, name if isinstance(name, str) else ""


def _hex(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64:
        raise _bad(f"{what} is not a sha256 hex digest")
    try:
        return Digest(value.lower()).hex
    except (InvalidName, ValueError):
        raise _bad(f"{what} is not a sha256 hex digest") from None


def _resource_name(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise _bad("a resource has no name, or one too long")
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or "\x00" in value or any(p in ("", ".", "..") for p in parts):
        raise _bad(f"the resource name {value[:200]!r} is not a relative path inside the model")
    return value


def parse_oms(payload: bytes) -> OmsManifest:
    """Read an OMS v1.0 statement, checking its subject digest against its resources.

    Raises:
        SignatureError: another predicate (v0.1's included), shards or a hash other than sha256,
            a resource listed twice, or a subject digest its resources do not give.
    """
    doc = _statement(payload)
    kind = doc.get("predicateType")
    if kind == OMS_COMPAT_TYPE:
        raise _bad(f"it uses the pre-1.0 predicate {OMS_COMPAT_TYPE}; sign again with model_signing 1.0 or later")
    if kind != OMS_PREDICATE_TYPE:
        raise _bad(f"its predicateType is {str(kind)[:100]!r}, not {OMS_PREDICATE_TYPE!r}")
    root, name = _subject(doc)
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict):
        raise _bad("it has no predicate")
    serialization = predicate.get("serialization")
    if not isinstance(serialization, dict):
        raise _bad("the predicate has no serialization")
    method, hash_type = serialization.get("method"), serialization.get("hash_type")
    if method != "files":
        raise _bad(f"it was made with the {str(method)[:40]!r} serialization; ollama-seed reads 'files'")
    if hash_type != "sha256":
        raise _bad(
            f"its files are hashed with {str(hash_type)[:40]!r}; ollama-seed checks sha256, "
            "the digest Ollama's blob names carry"
        )
    ignore = serialization.get("ignore_paths", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise _bad("serialization.ignore_paths is not a list of paths")
    listed = predicate.get("resources")
    if not isinstance(listed, list) or len(listed) > MAX_RESOURCES:
        raise _bad("the predicate has no list of resources")
    resources: dict[str, str] = {}
    for item in listed:
        if not isinstance(item, dict):
            raise _bad("a resource is not an object")
        rname = _resource_name(item.get("name"))
        if item.get("algorithm") != "sha256":
            raise _bad(f"{rname} is hashed with {str(item.get('algorithm'))[:40]!r}, not sha256")
        if rname in resources:
            raise _bad(f"{rname} is listed twice")
        resources[rname] = _hex(item.get("digest"), f"the digest of {rname}")
    if root_digest(resources.values()) != root:
        raise _bad("its subject digest does not match its resources (the statement was altered)")
    return OmsManifest(name, root, resources, tuple(ignore))


def cosign_statement(digest: Digest) -> bytes:
    """What ``cosign sign`` (v3) signs for the manifest *digest*."""
    doc = {
        "_type": STATEMENT_TYPE,
        "subject": [{"digest": {"sha256": digest.hex}}],
        "predicateType": COSIGN_PREDICATE_TYPE,
        "predicate": {},
    }
    return _dumps(doc)


def parse_cosign_statement(payload: bytes) -> Digest:
    """The manifest digest a cosign v3 statement signs.

    Raises:
        SignatureError: another predicate, or not exactly one sha256 subject.
    """
    doc = _statement(payload)
    if doc.get("predicateType") != COSIGN_PREDICATE_TYPE:
        raise _bad(f"its predicateType is {str(doc.get('predicateType'))[:100]!r}, not {COSIGN_PREDICATE_TYPE!r}")
    return Digest(_subject(doc)[0])


def simple_signing_payload(reference: str, digest: Digest) -> bytes:
    """cosign's legacy payload for the manifest *digest* pushed to *reference* (``host/repo``)."""
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": str(digest)},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": None,
    }
    return _dumps(doc)


def parse_simple_signing(payload: bytes) -> Digest:
    """The manifest digest a simple-signing payload vouches for.

    Raises:
        SignatureError: not a cosign container image signature.
    """
    try:
        doc = load_json_object(payload, "the simple-signing payload")
    except ValueError as exc:
        raise _bad(str(exc)) from None
    critical = doc.get("critical")
    if not isinstance(critical, dict) or critical.get("type") != SIMPLE_SIGNING_TYPE:
        raise _bad(f"the simple-signing payload is not a {SIMPLE_SIGNING_TYPE!r}")
    image = critical.get("image")
    value = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(value, str) or not value.startswith("sha256:"):
        raise _bad("the simple-signing payload names no sha256 manifest digest")
    return Digest(_hex(value.removeprefix("sha256:"), "docker-manifest-digest"))
