"""Signed bundles: the OMS signature an export writes, and the check an import makes before writing anything.

``export --sign KEY`` signs every model's manifest and every blob it names, as they lie in a models
directory (no hashing: the digests are known), and puts the signature in the index (the first
member, a key older readers ignore), and on request in a file beside the bundle. The tar, its
compression and its split parts are outside the signature, so repacking keeps it valid.

An import with trust configured for a model it carries (``trust=``, ``--trust``, ``--trust-ca``,
a ``[[trust]]`` rule) checks, when the index arrives and before any member is written:

- a signature in the index (or the detached one given) is by a key or CA you trust;
- it covers exactly the bundle's models (a model added, dropped or renamed is refused), each
  under its name with its manifest's digest, and every blob they name.

Each member is then checked as it streams, as without a signature (a blob must hash to its name,
a manifest to the digest the index gives), so what is installed is what was signed. Sources
without an index (a tar of a store, an OCI layout, an ollamazip archive, another models
directory) are checked member by member against a detached signature (a models directory's
``model.sig``, where ``--format dir`` writes it, is found by itself): a blob before it is
staged, a manifest before its model is installed, and at the end that no signed model is
missing. A signature that verified is kept in the store with each model it covers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.coverage import SignedModels, check_models
from ..core.digest import Digest
from ..core.dsse import parse_bundle
from ..core.errors import SeedError, SignatureError
from ..core.intoto import parse_oms
from ..core.manifest import Manifest
from ..core.reference import ModelName
from ..core.sigrecord import StoredSignature
from ..store.signatures import SignatureStore
from ..store.store import ModelStore
from ..wire.oms import VerifiedOms, claimed_signer, verify_oms
from ..wire.trust import Trust
from ..wire.verify import TrustLike, TrustResolver
from .format.index import BundleIndex

__all__ = [
    "DETACHED_NAME",
    "SignatureCheck",
    "claimed_signers",
    "keep_detached",
    "keep_signature",
    "write_detached",
]

log = logging.getLogger("ollama_seed")
DETACHED_NAME = "model.sig"  # beside the models of a --format dir export (model_signing's default name)


def _signed_names(raw: bytes) -> list[ModelName]:
    """The models an OMS signature lists, read without checking it (to know whose trust applies)."""
    try:
        return SignedModels.from_oms(parse_oms(parse_bundle(raw).payload)).names()
    except SeedError:
        return []


@dataclass
class SignatureCheck:
    """The signature side of one import or verification (see the module docs).

    *signatures* are the detached OMS signatures given (an index's are used when there are none);
    *exact* asks that a signature cover exactly the models seen (False for some models of a directory).
    """

    trust: TrustLike
    signatures: list[bytes] = field(default_factory=list)
    exact: bool = True
    verified: VerifiedOms | None = None
    seen: set[ModelName] = field(default_factory=set)
    indexed: bool = False
    warned: bool = False
    resolver: TrustResolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = TrustResolver(self.trust)

    @property
    def active(self) -> bool:
        return self.resolver.active

    def _needed(self, names: Iterable[ModelName]) -> list[tuple[ModelName, str, Trust]]:
        out: list[tuple[ModelName, str, Trust]] = []
        for name in names:
            mode, trust = self.resolver.for_name(name)
            if trust is not None:
                out.append((name, mode, trust))
        return out

    def _refuse(self, needed: Sequence[tuple[ModelName, str, Trust]], why: str) -> None:
        if any(mode == "enforce" for _, mode, _ in needed):
            raise SignatureError(f"{why}; nothing was written")
        if not self.warned:
            self.warned = True
            log.warning("%s (trust mode 'warn': importing anyway)", why)

    def _verify(self, needed: Sequence[tuple[ModelName, str, Trust]], what: str) -> None:
        """Find a signature that every needed model's trust accepts."""
        problems: list[str] = []
        trusts = {id(t): t for _, _, t in needed}
        for raw in self.signatures:
            try:
                found = [verify_oms(raw, trust) for trust in trusts.values()]  # every trust must accept it
                self.verified = found[0]
                return
            except SignatureError as exc:
                problems.append(str(exc))
        if not self.signatures:
            self._refuse(needed, f"{what} is not signed, and trust is configured for {needed[0][0].display}")
        else:
            self._refuse(needed, f"{what}'s signature cannot be trusted: {problems[0]}")

    def on_index(self, index: BundleIndex, what: str = "the bundle") -> None:
        """Check the signature against the index's models, before anything is written.

        Raises:
            SignatureError: unsigned, untrusted, altered, or not over exactly these models.
        """
        self.indexed = True
        needed = self._needed(m.name for m in index.models)
        if not needed:
            return
        if not self.signatures:
            self.signatures = list(index.signatures)
        self._verify(needed, what)
        if self.verified is not None:
            models = [(m.name, m.manifest_digest, m.blobs) for m in index.models]
            check_models(self.verified.signed, models, exact=self.exact, what=what)

    def begin(self, what: str) -> None:
        """A source without an index: a detached signature is checked up front, for the models it names."""
        if self.signatures and not self.indexed:
            needed = self._needed(name for raw in self.signatures for name in _signed_names(raw))
            if needed:
                self._verify(needed, what)

    def on_blob(self, digest: Digest, path: str) -> None:
        """A blob member of a source without an index, before it is staged."""
        if self.verified is not None and not self.indexed and digest not in self.verified.signed.blobs:
            raise SignatureError(f"refusing bundle member {path!r}: the signature does not cover it")

    def on_manifest(self, name: ModelName, digest: Digest, blobs: Iterable[Digest], path: str) -> None:
        """A manifest member, before its model is installed."""
        self.seen.add(name)
        if self.verified is not None:
            check_models(self.verified.signed, [(name, digest, tuple(blobs))], exact=False, what=f"member {path!r}")
            return
        needed = self._needed([name])
        if needed and not self.indexed:
            self._verify(needed, f"{name.display}")
            if self.verified is not None:
                check_models(self.verified.signed, [(name, digest, tuple(blobs))], exact=False, what=f"member {path!r}")

    def finish(self, what: str = "the bundle") -> None:
        """At the end of a source without an index: no signed model may be missing."""
        if self.verified is None or self.indexed or not self.exact:
            return
        dropped = [n for n in self.verified.signed.names() if n not in self.seen]
        if dropped:
            raise SignatureError(f"the signature covers {dropped[0].display}, which {what} lacks (dropped or renamed)")

    def record(self) -> StoredSignature | None:
        """What to keep in the store with each model the signature covers."""
        return StoredSignature("oms", bundle=self.verified.raw) if self.verified is not None else None

    @property
    def signer(self) -> str | None:
        return str(self.verified.signer) if self.verified is not None else None


def claimed_signers(signatures: Iterable[bytes]) -> tuple[str, ...]:
    """Who the signatures say made them, unverified (``bundle ls``)."""
    out = []
    for raw in signatures:
        try:
            out.append(claimed_signer(raw))
        except SeedError:
            out.append("an unreadable signature")
    return tuple(out)


def keep_signature(store: ModelStore, check: SignatureCheck, manifests: Iterable[bytes]) -> None:
    """Keep a signature that verified with each imported model it covers (a failure only loses the record)."""
    record = check.record()
    if record is None or check.verified is None:
        return
    signed = set(check.verified.signed.manifests.values())
    keep = SignatureStore(store)
    for raw in manifests:
        digest = Digest.of(raw)
        if digest in signed:
            try:
                keep.add(digest, record)
            except OSError as exc:
                log.warning("could not keep the signature of %s in %s: %s", digest, store.root, exc)


def keep_detached(store: ModelStore, signature: bytes, path: Path, manifests: Iterable[Manifest]) -> str:
    """Write a detached signature (atomically) and keep it in *store* with each model; the path written."""
    written = write_detached(signature, path)
    keep = SignatureStore(store)
    for manifest in manifests:
        keep.add(manifest.digest, StoredSignature("oms", bundle=signature))
    return written


def write_detached(signature: bytes, path: Path) -> str:
    """Write a detached signature beside a bundle (atomically); the path written."""
    from .sinks import FileSink

    sink = FileSink(path)
    try:
        sink.write(signature)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return str(path)
