"""The blocking ``ensure()``: the cheap on-disk check first, and only when something is missing
an event loop running :func:`~.api.aensure`. Neither httpx nor anyio is imported on the cheap path."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from .local import EnsureReport, Modelfiles, Names, check_local

if TYPE_CHECKING:
    import httpx

    from ..core.progress import ProgressCallback
    from ..wire.registry import Credentials
    from ..wire.verify import TrustLike

__all__ = ["ensure"]


def _refuse_in_loop() -> None:
    aio = sys.modules.get("asyncio")  # not imported: no loop can be running (and we save its import)
    if aio is None:
        return
    try:
        aio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "ollama_seed.ensure() blocks, so it cannot run inside a running event loop; "
        "use 'await ollama_seed.aensure(...)' there instead"
    )


def ensure(
    names: Names,
    *,
    models_dir: str | os.PathLike[str] | None = None,
    verify: bool = False,
    update: bool = False,
    offline: bool | None = None,
    timeout: float | None = None,
    server: str | None = None,
    via_server: bool = False,
    wait_timeout: float | None = 60.0,
    warm: bool = False,
    keep_alive: str | float | None = None,
    insecure: bool = False,
    connections: int = 16,
    max_connections: int = 64,
    max_rate: float | str | None = None,
    stall_timeout: float = 30.0,
    mirrors: tuple[str, ...] | list[str] = (),
    progress: ProgressCallback | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    server_transport: httpx.AsyncBaseTransport | None = None,
    credentials: Credentials | None = None,
    use_locks: bool = True,
    modelfiles: Modelfiles | None = None,
    trust: TrustLike = None,
) -> list[EnsureReport]:
    """Blocking form of :func:`aensure`, with the same arguments.

    When every model is already complete and no server, update or verify is asked for, it
    returns after the cheap on-disk check without starting an event loop.

    Raises:
        RuntimeError: called inside a running event loop (use ``await aensure(...)`` there).
        SeedError: as :func:`aensure`.
    """
    _refuse_in_loop()
    if not (update or verify or via_server or warm or server is not None or _signed(trust, names)):
        fast = check_local(names, models_dir=models_dir, modelfiles=modelfiles)
        if fast is not None:
            return fast
    from ..wire.sync import run_sync
    from .api import aensure

    reports: list[EnsureReport] = run_sync(
        aensure,
        names,
        models_dir=models_dir,
        verify=verify,
        update=update,
        offline=offline,
        timeout=timeout,
        server=server,
        via_server=via_server,
        wait_timeout=wait_timeout,
        warm=warm,
        keep_alive=keep_alive,
        insecure=insecure,
        connections=connections,
        max_connections=max_connections,
        max_rate=max_rate,
        stall_timeout=stall_timeout,
        mirrors=mirrors,
        progress=progress,
        transport=transport,
        server_transport=server_transport,
        credentials=credentials,
        use_locks=use_locks,
        modelfiles=modelfiles,
        trust=trust,
    )
    return reports


def _signed(trust: object, names: Names) -> bool:
    """A signature may be needed (then the cheap path, which checks none, is not taken)."""
    if trust is None:
        return False
    from .local import _names
    from .options import trust_applies

    return trust_applies(trust, _names(names))
