"""The config blob a Sigstore-bundle referrer names is kept only when it is the empty config ``{}``."""

from __future__ import annotations

import hashlib
import json

import pytest

from ollama_seed.core.digest import Digest
from ollama_seed.core.ocidoc import Descriptor
from ollama_seed.core.ociref import EMPTY_CONFIG, EMPTY_CONFIG_DIGEST, OCI_MANIFEST, ReferrerEntry, bundle_referrer
from ollama_seed.wire.cosign_fetch import _bundle_referrer

pytestmark = pytest.mark.anyio

SUBJECT = Descriptor(OCI_MANIFEST, Digest(hashlib.sha256(b"model").hexdigest()), 5, {})
BUNDLE = b'{"not": "a bundle the kind check reads"}'


class Docs:
    """The two GETs :func:`_bundle_referrer` makes, answered from memory."""

    def __init__(self, manifest: bytes) -> None:
        self.manifest = manifest

    async def document(self, reference: str, accept: str, digest: Digest | None = None) -> bytes:
        return self.manifest

    async def blob(self, digest: Digest, limit: int = 0) -> bytes | None:
        return BUNDLE if digest == Digest(hashlib.sha256(BUNDLE).hexdigest()) else None


async def _fetch(manifest: bytes) -> dict[Digest, bytes]:
    entry = ReferrerEntry(Digest(hashlib.sha256(manifest).hexdigest()), len(manifest), "", {})
    record = await _bundle_referrer(Docs(manifest), entry, SUBJECT.digest)  # type: ignore[arg-type]
    assert record is not None and record.artifact is not None
    return dict(record.artifact.blobs)


async def test_the_empty_config_is_kept() -> None:
    manifest = bundle_referrer(BUNDLE, SUBJECT, "https://example.com/p", created=None).manifest
    blobs = await _fetch(manifest)
    assert blobs[EMPTY_CONFIG_DIGEST] == EMPTY_CONFIG
    assert all(Digest(hashlib.sha256(b).hexdigest()) == d for d, b in blobs.items())


@pytest.mark.parametrize("config", [{"size": 2, "digest": f"sha256:{'1' * 64}"}, "a string", None])
async def test_any_other_config_is_not_stored_under_a_wrong_digest(config: object) -> None:
    doc = json.loads(bundle_referrer(BUNDLE, SUBJECT, "https://example.com/p", created=None).manifest)
    doc["config"] = config
    blobs = await _fetch(json.dumps(doc).encode())
    assert list(blobs) == [Digest(hashlib.sha256(BUNDLE).hexdigest())]
