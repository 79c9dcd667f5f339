"""Signed images: ``image verify``/``image extract`` with trust, and ``image build --sign`` into a layout.

Checking: the document the reference resolves to (the image index, or a manifest named by
digest) must carry a cosign signature by a key or CA you trust, found where cosign keeps it: in
a registry, as a referrer or under the fallback tag ``sha256-<hex>`` (:mod:`wire.cosign_fetch`,
as ``pull --trust``); in an OCI layout or archive, under that same tag in ``index.json``, or as a
referrer manifest listed there untagged (where ``oras`` keeps a layout's referrers). The rule is
the one a pull applies (:func:`pulling.signed.find_trusted`, :func:`wire.verify.check_cosign`):
the signed statement must name that digest, and the digest covers every manifest, config and
layer below it. It runs before the first layer is read and before the store is touched.

Signing a layout: each signed document (the index and each platform's manifest, as a push signs
them) gets the referrer manifest ``cosign sign`` (v3) pushes, written as a blob of the layout, and
listed where a registry without the referrers API lists it: in an image index under the ref
``sha256-<hex>`` (the referrers tag schema's fallback tag). Every ``index.json`` entry keeps a ref
name, so tools that pick an image by ref (``skopeo``, ``umoci``) find the image as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ...core.digest import Digest
from ...core.dsse import BUNDLE_MEDIA_TYPE
from ...core.errors import BundleError, SeedError
from ...core.ocidoc import Descriptor
from ...core.ociimage import descriptor
from ...core.ociref import (
    INDEX_MEDIA_TYPE,
    OCI_MANIFEST,
    entry_for,
    fallback_tag,
    parse_referrers,
    read_bundle_referrer,
    referrers_index,
)
from ...core.progress import ProgressCallback
from ...core.sigrecord import OciArtifact, StoredSignature
from ...core.trustpolicy import Subject
from .layout import ref_name

if TYPE_CHECKING:
    from ...pulling.signed import Signed
    from ...wire.keys import SigningKey
    from ...wire.verify import TrustLike

__all__ = ["SignedSource", "check_image", "layout_signatures", "sign_documents"]

MAX_REFERRERS_READ = 16
MAX_BUNDLE = 8 * 1024 * 1024

ReadBlob = Callable[[Digest, int], Awaitable[bytes | None]]


class SignedSource(Protocol):
    label: str
    trust_name: Subject  # what a [[trust]] rule's match is compared with

    async def signatures(self, subject: Descriptor) -> list[StoredSignature]: ...


def _where(source: SignedSource) -> str:
    name = source.trust_name
    if isinstance(name, str):
        return "its archive" if name.startswith("oci-archive:") else "its layout"
    return name.host


def _advice(source: SignedSource) -> str:
    if isinstance(source.trust_name, str):
        return (
            "sign the image when it is built ('ollama-seed image build ... --oci-layout DIR:TAG --sign KEY'), or "
            "push it to a registry signed ('--push REF --sign KEY') and extract it from there"
        )
    return (
        "sign it where it is built ('ollama-seed image build ... --push REF --sign KEY', or "
        "'cosign sign --key KEY REF@DIGEST'), or pass the key that signed it with --trust"
    )


async def check_image(
    source: SignedSource, root: Descriptor, trust: TrustLike, progress: ProgressCallback
) -> Signed | None:
    """The trusted signature of the image document *root*; None when no trust applies (or ``warn``).

    Raises:
        SignatureError: ``enforce``, and no signature there is by a key or CA you trust.
        SigningKeyError: a key or CA file of the trust cannot be used.
    """
    from ...pulling.signed import find_trusted
    from ...wire.verify import TrustResolver, check_cosign

    mode, loaded = TrustResolver(trust).for_name(source.trust_name)
    if loaded is None:
        return None
    return await find_trusted(
        source.label,
        mode,
        [(_where(source), lambda: source.signatures(root))],
        lambda record: check_cosign(record, loaded, root.digest),
        root.digest,
        _advice(source),
        progress,
    )


async def layout_signatures(entries: Sequence[Any], subject: Digest, read: ReadBlob) -> list[StoredSignature]:
    """The cosign signatures of *subject* in a layout: the referrers its ref ``sha256-<hex>`` lists
    (what ``image build --sign`` writes), and referrer manifests listed untagged in ``index.json``
    (as oras keeps them). *entries* are ``index.json``'s; *read* gives a blob of the layout
    (checked against its digest) or None when it is not there.

    Raises:
        SignatureError: a referrer or list that is not what its type says. BundleError: a damaged blob.
    """
    tag = fallback_tag(subject)
    candidates: list[Digest] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        try:
            digest = Digest.parse(str(entry.get("digest", "")))
        except SeedError:
            continue
        name = ref_name(entry)
        if name == tag:
            listed = await read(digest, 1024 * 1024)
            if listed is not None:
                wanted = [e.digest for e in parse_referrers(listed) if e.artifact_type in ("", BUNDLE_MEDIA_TYPE)]
                candidates.extend(wanted)
        elif name is None and entry.get("artifactType") == BUNDLE_MEDIA_TYPE:
            candidates.append(digest)
    found: list[StoredSignature] = []
    for digest in dict.fromkeys(candidates):
        if len(found) >= MAX_REFERRERS_READ:
            break
        raw = await read(digest, 64 * 1024)
        if raw is None:
            continue
        bundle_digest = read_bundle_referrer(raw, subject)
        if bundle_digest is None:
            continue
        bundle = await read(bundle_digest, MAX_BUNDLE)
        if bundle is not None:
            found.append(StoredSignature("cosign", bundle=bundle, artifact=OciArtifact(OCI_MANIFEST, raw)))
    return found


def checked_blob(data: bytes | None, digest: Digest, where: str) -> bytes | None:
    """*data* when it hashes to *digest* (None stays None)."""
    if data is not None and hashlib.sha256(data).hexdigest() != digest.hex:
        raise BundleError(
            f"{where}: blob {digest} does not hash to its name; the image is damaged or was tampered with"
        )
    return data


def sign_documents(
    key: SigningKey,
    subjects: Sequence[Descriptor],
    put_bytes: Callable[[bytes], object],
    tagged: Callable[[str], bytes | None],
) -> dict[str, dict[str, Any]]:
    """Sign each of *subjects* as ``cosign sign`` does, for a layout: the signatures' blobs go to
    *put_bytes*; the refs ``sha256-<hex>`` (the referrers tag schema), each naming the list of its
    subject's referrers, come back. *tagged* gives what such a ref names already (a rebuild keeps
    the signatures it had, as the registry's fallback tag does).

    Raises:
        SigningKeyError: the key cannot sign. SignatureError: an existing list that is not one.
    """
    from ...wire.cosign_attach import cosign_referrer

    refs = {}
    for subject in subjects:
        _, artifact = cosign_referrer(subject, key)
        for data in artifact.blobs.values():
            put_bytes(data)
        put_bytes(artifact.manifest)
        tag = fallback_tag(subject.digest)
        old = tagged(tag)
        entries = [*(parse_referrers(old) if old else []), entry_for(artifact)]
        index = referrers_index(entries)
        put_bytes(index)
        refs[tag] = descriptor(INDEX_MEDIA_TYPE, Digest.of(index), len(index))
    return refs
