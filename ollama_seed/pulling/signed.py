"""The signature check of a pull: before any blob is fetched and before the manifest is written.

With trust configured for a model (``trust=`` / ``--trust`` / a ``[[trust]]`` rule), its manifest
must carry a signature by a key or CA you trust, found where cosign keeps one (see
:mod:`ollama_seed.wire.cosign_fetch`): at the mirror the manifest came from, then at the model's
own registry. ``enforce`` refuses the model (nothing is written); ``warn`` logs and goes on. A
signature that verified is kept in the store with the model, so ``ensure`` finds it with no
network and ``serve`` hands it on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..core.digest import Digest
from ..core.errors import SeedError, SignatureError
from ..core.manifest import MANIFEST_MEDIA_TYPE, Manifest
from ..core.ocidoc import Descriptor
from ..core.progress import ProgressCallback, Status
from ..core.reference import ModelName
from ..core.sigrecord import StoredSignature
from ..core.trustpolicy import Mode
from ..store.signatures import SignatureStore
from ..store.store import ModelStore
from ..wire.cosign_fetch import fetch_signatures
from ..wire.registry import RegistryClient
from ..wire.signing import OLLAMA_HOSTS
from ..wire.trust import Signer
from ..wire.verify import TrustLike, TrustResolver, check_record

__all__ = ["Lookup", "Signed", "SignatureGate", "find_trusted"]

log = logging.getLogger("ollama_seed")


@dataclass(frozen=True, slots=True)
class Signed:
    """A signature that verified: who made it, and the record to keep."""

    signer: Signer
    record: StoredSignature


def _advice(name: ModelName) -> str:
    if name.host in OLLAMA_HOSTS:
        return (
            f"{name.host} hosts no signatures: pull the model on a connected host, sign it into a registry of "
            "yours ('ollama-seed push --sign KEY') or into a bundle ('ollama-seed export --sign KEY'), and take "
            "it from there; or check a copy with 'ollama-seed verify NAME --signature FILE --trust KEY'"
        )
    return "sign it where it is pushed ('ollama-seed push --sign KEY', or 'cosign sign --key KEY')"


Lookup = tuple[str, Callable[[], Awaitable[list[StoredSignature]]]]


async def find_trusted(
    label: str,
    mode: Mode,
    lookups: Sequence[Lookup],
    check: Callable[[StoredSignature], Signer],
    subject: Digest,
    advice: str,
    progress: ProgressCallback,
) -> Signed | None:
    """The first signature *check* accepts, looking in each place of *lookups* (``(where, fetch)``) in turn.

    What pull and ``image extract`` share: a place that cannot be read or holds nothing trusted is
    passed over; when none has a trusted signature, ``enforce`` raises (fail closed, saying why and
    *advice*) and ``warn`` logs and answers None.

    Raises:
        SignatureError: ``enforce``, and no signature there is by a key or CA you trust.
    """
    progress(Status(label, "verifying signature"))
    problems: list[SeedError] = []
    looked: list[str] = []
    for where, fetch in lookups:
        looked.append(where)
        try:
            records = await fetch()
        except SeedError as exc:  # unreachable, refusing, or a malformed document: say so, fail closed
            problems.append(exc)
            continue
        for record in records:
            try:
                signer = check(record)
            except SignatureError as exc:
                problems.append(exc)
                continue
            progress(Status(label, f"signed by {signer}"))
            return Signed(signer, record)
    trust_problems = [p for p in problems if isinstance(p, SignatureError)]
    if trust_problems:
        why = f"no signature there is by a key or CA you trust ({trust_problems[0]})"
    elif problems:
        why = f"its signature could not be read ({problems[0]})"
    else:
        why = f"no signature of its manifest {subject} is kept at {' or '.join(looked)}"
    message = f"{label}: {why}; {advice}"
    if mode == "warn":
        log.warning("%s (trust mode 'warn': going on without it)", message)
        progress(Status(label, "warning: no trusted signature"))
        return None
    raise SignatureError(f"{message}; nothing was written")


class SignatureGate:
    """Checks each pulled model's signature against the trust that applies to its name."""

    def __init__(self, trust: TrustLike, client: RegistryClient, store: ModelStore, progress: ProgressCallback) -> None:
        self.resolver = TrustResolver(trust)
        self.client, self.store, self.progress = client, store, progress

    @property
    def active(self) -> bool:
        return self.resolver.active

    async def check(self, name: ModelName, manifest: Manifest, mirrors: Sequence[str] = ()) -> Signed | None:
        """The trusted signature of *name*'s *manifest*; None when no trust applies (or ``warn`` found none).

        Raises:
            SignatureError: ``enforce``, and no signature there is by a key or CA you trust.
        """
        mode, trust = self.resolver.for_name(name)
        if trust is None:
            return None
        subject = Descriptor(manifest.media_type or MANIFEST_MEDIA_TYPE, manifest.digest, len(manifest.raw), {})

        def lookup(base: str | None) -> Lookup:
            return base or self.client.base(name), lambda: fetch_signatures(self.client, name, subject, base=base)

        return await find_trusted(
            name.display,
            mode,
            [lookup(base) for base in [*mirrors, None]],
            lambda record: check_record(record, trust, name, manifest),
            manifest.digest,
            _advice(name),
            self.progress,
        )

    def keep(self, manifest: Manifest, signed: Signed | None) -> None:
        """Keep a verified signature with the model (a store that cannot take it only loses the record)."""
        if signed is None:
            return
        try:
            SignatureStore(self.store).add(manifest.digest, signed.record)
        except OSError as exc:
            log.warning("could not keep the signature of %s in %s: %s", manifest.digest, self.store.root, exc)
