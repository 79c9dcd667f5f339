"""The blocking ``ensure()``: the cheap on-disk check first, and only when something is missing
an event loop running :func:`~.api.aensure`. Neither httpx nor anyio is imported on the cheap path.

For the type checker ``ensure`` *is* ``blocking(aensure)``: the same parameters, so a misspelt
keyword is an error there. At run time it is :func:`_ensure`, which checks the same keywords and
ranges before taking the cheap path.

What the cheap path of ``ensure("model")`` loads is what ``import ollama_seed`` loads, and no more
(``tests/test_public_api.py`` holds the list): the keyword check (:mod:`.options`, with
``core.bounds`` and ``pulling.options``) loads only when keywords are given, the signature check
(:mod:`.signed`) only when *trust* asks one of these models for a signature, ``wire.sync`` only
where an event loop may be running or is needed.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from ..core.layout import StrPath
from ..core.reference import ModelName
from .local import EnsureReport, Names, check_local, complete_locally, model_names, offline_from_env, present_report

__all__ = ["ensure"]


def _ensure(names: Names, *, models_dir: StrPath | None = None, **options: Any) -> list[EnsureReport]:
    """Blocking form of :func:`aensure`, with the same arguments.

    When every model is already complete and no server, update or verify is asked for, it returns
    after the cheap on-disk check without starting an event loop (with *trust*, when the store also
    keeps a trusted signature of each model that needs one).

    Raises:
        RuntimeError: called inside a running event loop (use ``await aensure(...)`` there).
        SeedError: as :func:`aensure`.
    """
    if "asyncio" in sys.modules:  # without asyncio no event loop can be running in this thread
        from ..wire.sync import refuse_in_loop

        refuse_in_loop("ensure", "aensure")
    trust = None
    if options:  # aensure's check, before any work (ensure("model") has nothing to check)
        from .options import check_ensure_options, trust_applies

        check_ensure_options(options)
    refs = model_names(names)  # once: *names* may be an iterator
    if options and trust_applies(options.get("trust"), refs):
        trust = options["trust"]
    expensive = ("update", "verify", "via_server", "warm")
    if not any(options.get(key) for key in expensive) and options.get("server") is None:
        modelfiles = options.get("modelfiles")
        if trust is None:
            fast = check_local(refs, models_dir=models_dir, modelfiles=modelfiles)
        else:
            fast = _kept_signatures(refs, models_dir, modelfiles, trust, options.get("offline"))
        if fast is not None:
            return fast
    from ..wire.sync import blocking
    from .api import aensure

    return blocking(aensure)(refs, models_dir=models_dir, **options)


def _kept_signatures(
    refs: list[ModelName], models_dir: StrPath | None, modelfiles: Any, trust: TrustLike, offline: bool | None
) -> list[EnsureReport] | None:
    """The cheap path with *trust*: every model complete, and each one *trust* asks a signature of
    signed by one the store keeps (as :func:`aensure` would find: no network, no event loop); else
    None, and :func:`aensure` asks the registries."""
    started = time.monotonic()
    found = complete_locally(refs, models_dir=models_dir, modelfiles=modelfiles)
    if found is None:
        return None
    store, named, made = found
    from .signed import check_kept_signatures

    present = [(ref, local, present_report(local, started)) for ref, local in named]
    signed, remote = check_kept_signatures(
        present, store, trust, offline=offline_from_env() if offline is None else offline
    )
    if remote:
        return None
    return [signed[str(ref)] for ref, _ in named] + [present_report(local, started) for local in made]


if TYPE_CHECKING:
    from ..wire.sync import blocking
    from ..wire.verify import TrustLike
    from .api import aensure

    ensure = blocking(aensure)
else:
    ensure = _ensure
    ensure.__name__ = ensure.__qualname__ = "ensure"
