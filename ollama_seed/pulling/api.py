"""The public pull API: ``await apull(...)`` and its blocking twin ``pull(...)``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio

from ..core.groups import collapse
from ..core.progress import ProgressCallback
from ..core.reference import ModelName
from ..store.store import ModelStore
from ..wire.registry import Credentials
from ..wire.sync import run_sync
from ..wire.throttle import parse_rate
from .session import PullResult, PullSession

if TYPE_CHECKING:
    import httpx

    from ..wire.verify import TrustLike

__all__ = ["apull", "apull_all", "pull"]

T = TypeVar("T")
P = ParamSpec("P")
StrPath = str | os.PathLike[str]


def _rate(value: float | str | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return float(value) if value else None
    return parse_rate(value)


async def apull(
    name: str | ModelName,
    *,
    models_dir: StrPath | None = None,
    insecure: bool = False,
    connections: int = 16,
    max_connections: int = 64,
    max_rate: float | str | None = None,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    credentials: Credentials | None = None,
    use_locks: bool = True,
    mirrors: Sequence[str] = (),
    trust: TrustLike = None,
) -> PullResult:
    """Pull one model into the Ollama store, fetching only the blobs that are missing.

    Args:
        name: ``gpt-oss:20b``, ``user/model``, ``host:port/ns/model:tag``, optionally ``@sha256:<hex>``.
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        insecure: plain http for this registry (as ``ollama pull --insecure``).
        connections: concurrent range requests per blob.
        max_connections: concurrent requests across all blobs.
        max_rate: bandwidth cap in bytes/s, or a string such as ``"50M"`` or ``"400Mbit"``.
        stall_timeout: seconds without a byte before a request is retried.
        progress: called with :class:`Status` and :class:`LayerProgress` events.
        transport: an httpx transport (tests, custom networking).
        credentials: ``host -> (user, password)`` for registries that ask.
        use_locks: lock blobs between processes (saves bandwidth; correctness does not need it).
        mirrors: registries to try first, in order (``http://mirror:8080``); then the name's own registry.
            A mirror that fails or serves a blob with the wrong digest is skipped for that blob.
        trust: a :class:`Trust` (the manifest must carry a cosign signature by one of its keys or
            CAs) or a :class:`TrustPolicy` (per name pattern: enforce, warn or off). The signature is
            checked before any blob is fetched; the signer is in the result.

    Raises:
        SignatureError: trust is configured and no signature there is by a key or CA you trust
            (nothing was written).
        InvalidName, ModelNotFound, AuthenticationError, RegistryError, TransferError,
        IntegrityError, InsufficientSpace, StoreError: all :class:`SeedError`.
    """
    (result,) = await apull_all(
        [name],
        models_dir=models_dir,
        insecure=insecure,
        connections=connections,
        max_connections=max_connections,
        max_rate=max_rate,
        stall_timeout=stall_timeout,
        progress=progress,
        transport=transport,
        credentials=credentials,
        use_locks=use_locks,
        mirrors=mirrors,
        trust=trust,
    )
    return result


async def apull_all(names: Sequence[str | ModelName], **options: Any) -> list[PullResult]:
    """Pull several models at once in one session (one connection budget; a shared blob once).

    Takes :func:`apull`'s options. Results come in the order of *names*; the first failure
    cancels the other pulls and is raised.
    """
    refs = [n if isinstance(n, ModelName) else ModelName.parse(n) for n in names]
    max_rate = _rate(options.pop("max_rate", None))
    store = ModelStore(options.pop("models_dir", None))
    results: dict[int, PullResult] = {}
    try:
        async with PullSession(store, max_rate=max_rate, **options) as session:

            async def one(i: int, ref: ModelName) -> None:
                results[i] = await session.pull(ref)

            async with anyio.create_task_group() as tg:
                for i, ref in enumerate(refs):
                    tg.start_soon(one, i, ref)
    except BaseException as exc:
        err = collapse(exc)
        if err is exc:
            raise
        raise err from None
    return [results[i] for i in range(len(refs))]


def pull(
    name: str | ModelName,
    *,
    models_dir: StrPath | None = None,
    insecure: bool = False,
    connections: int = 16,
    max_connections: int = 64,
    max_rate: float | str | None = None,
    stall_timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    credentials: Credentials | None = None,
    use_locks: bool = True,
    mirrors: Sequence[str] = (),
    trust: TrustLike = None,
) -> PullResult:
    """Blocking form of :func:`apull`, with the same arguments. Not for use inside an event loop.

    Raises:
        RuntimeError: called inside a running event loop (use ``await apull(...)`` there).
        SeedError: as :func:`apull`.
    """
    return run_sync(
        apull,
        name,
        models_dir=models_dir,
        insecure=insecure,
        connections=connections,
        max_connections=max_connections,
        max_rate=max_rate,
        stall_timeout=stall_timeout,
        progress=progress,
        transport=transport,
        credentials=credentials,
        use_locks=use_locks,
        mirrors=mirrors,
        trust=trust,
    )
