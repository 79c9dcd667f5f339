"""``ensure(..., trust=...)`` for models already on disk: their signature, from the store or the registry.

A complete model needs no download, but with trust configured for its name it still needs a
signature by a key or CA you trust. The ones the store keeps (verified when the model was pulled,
imported or checked with ``verify --signature``) are tried first, with no network; otherwise the
model's registry (its mirrors first) is asked, and a signature found there is kept. Offline, a
model without a kept signature is refused under ``enforce``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ..core.errors import SignatureError
from ..core.reference import ModelName
from ..pulling.provenance import stored_signer
from ..wire.verify import TrustResolver
from .local import EnsureReport, LocalState

if TYPE_CHECKING:
    from ..store.store import ModelStore
    from ..wire.verify import TrustLike
    from .options import EnsureOptions

__all__ = ["check_kept_signatures", "check_present_signatures"]

log = logging.getLogger("ollama_seed")


Present = list[tuple[ModelName, LocalState, EnsureReport]]


def check_kept_signatures(
    present: Present, store: ModelStore, trust: TrustLike, *, offline: bool
) -> tuple[dict[str, EnsureReport], Present]:
    """The reports of *present* models with the signers the store keeps, and the models whose
    signature is still to be asked of their registry (none when *offline*). No network: the
    blocking ``ensure()`` calls it without an event loop, and needs
    :func:`check_present_signatures` only for the models it returns.

    Raises:
        SignatureError: *offline*, ``enforce`` and no trusted signature kept.
    """
    resolver = TrustResolver(trust)
    out: dict[str, EnsureReport] = {}
    remote: Present = []
    for ref, item, report in present:
        mode, wanted = resolver.for_name(item.name)
        out[str(ref)] = report
        if wanted is None:
            continue
        assert item.manifest is not None
        signer = stored_signer(store, item.name, item.manifest, wanted)
        if signer is not None:
            out[str(ref)] = dataclasses.replace(report, signer=str(signer))
        elif not offline:
            remote.append((ref, item, report))
        elif mode == "enforce":
            raise SignatureError(
                f"{item.name.display} is on disk, but no signature by a key or CA you trust is kept with it, and "
                "ensure is offline: check it with 'ollama-seed verify NAME --signature FILE --trust KEY', import a "
                "signed bundle of it, or run online to fetch its signature from its registry"
            )
        else:
            log.warning("%s: no trusted signature is kept with it (trust mode 'warn')", item.name.display)
    return out, remote


async def check_present_signatures(present: Present, o: EnsureOptions) -> dict[str, EnsureReport]:
    """The reports of *present* models with their signers; raises when one has no trusted signature.

    Raises:
        SignatureError: ``enforce`` and no trusted signature (kept, or at its registry when online).
    """
    out, remote = check_kept_signatures(present, o.store, o.trust, offline=o.offline)
    if remote:
        from ..pulling.session import PullSession

        async with PullSession(o.store, **o.pull) as s:
            for ref, item, report in remote:
                assert item.manifest is not None
                signed = await s.signatures.check(item.name, item.manifest, s.mirrors)
                s.signatures.keep(item.manifest, signed)
                if signed is not None:
                    out[str(ref)] = dataclasses.replace(report, signer=str(signed.signer))
    return out
