"""The blocking ``ensure()``: the cheap on-disk check first, and only when something is missing
an event loop running :func:`~.api.aensure`. Neither httpx nor anyio is imported on the cheap path.

For the type checker ``ensure`` *is* ``blocking(aensure)``: the same parameters, so a misspelt
keyword is an error there. At run time it is :func:`_ensure`, which checks the same keywords and
ranges before taking the cheap path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.layout import StrPath
from ..wire.sync import blocking, refuse_in_loop
from .local import EnsureReport, Names, check_local
from .options import check_ensure_options

__all__ = ["ensure"]


def _ensure(names: Names, *, models_dir: StrPath | None = None, **options: Any) -> list[EnsureReport]:
    """Blocking form of :func:`aensure`, with the same arguments.

    When every model is already complete and no server, update, verify or signature is asked for, it
    returns after the cheap on-disk check without starting an event loop.

    Raises:
        RuntimeError: called inside a running event loop (use ``await aensure(...)`` there).
        SeedError: as :func:`aensure`.
    """
    refuse_in_loop("ensure", "aensure")
    check_ensure_options(options)
    expensive = ("update", "verify", "via_server", "warm")
    if (
        not any(options.get(key) for key in expensive)
        and options.get("server") is None
        and not _signed(options.get("trust"), names)
    ):
        fast = check_local(names, models_dir=models_dir, modelfiles=options.get("modelfiles"))
        if fast is not None:
            return fast
    from .api import aensure

    return blocking(aensure)(names, models_dir=models_dir, **options)


def _signed(trust: object, names: Names) -> bool:
    """A signature may be needed (then the cheap path, which checks none, is not taken)."""
    if trust is None:
        return False
    from .local import model_names
    from .options import trust_applies

    return trust_applies(trust, model_names(names))


if TYPE_CHECKING:
    from .api import aensure

    ensure = blocking(aensure)
else:
    ensure = _ensure
    ensure.__name__ = ensure.__qualname__ = "ensure"
