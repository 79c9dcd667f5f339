"""The public pull API: ``await apull(...)``, ``await apull_all(...)``, and the blocking twin ``pull(...)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from ..core.groups import raise_collapsed
from ..core.layout import StrPath
from ..core.reference import ModelName
from ..store.store import ModelStore
from ..wire.sync import blocking
from .options import PullSettings
from .session import PullResult, PullSession

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import PullOptions

__all__ = ["apull", "apull_all", "pull"]


async def apull(
    name: str | ModelName, *, models_dir: StrPath | None = None, **options: Unpack[PullOptions]
) -> PullResult:
    """Pull one model into the Ollama store, fetching only the blobs that are missing.

    Args:
        name: ``gpt-oss:20b``, ``user/model``, ``host:port/ns/model:tag``, optionally ``@sha256:<hex>``.
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        options: :class:`~ollama_seed.PullOptions` (``insecure``, ``connections``, ``max_connections``,
            ``max_rate``, ``stall_timeout``, ``mirrors``, ``credentials``, ``use_locks``, ``progress``,
            ``transport``, ``trust``).

    Raises:
        ConfigError: an option out of range (before any work).
        SignatureError: trust is configured and no signature there is by a key or CA you trust
            (nothing was written).
        InvalidName, ModelNotFound, AuthenticationError, RegistryError, TransferError,
        IntegrityError, InsufficientSpace, StoreError: all :class:`SeedError`.
    """
    (result,) = await apull_all([name], models_dir=models_dir, **options)
    return result


async def apull_all(
    names: Sequence[str | ModelName], *, models_dir: StrPath | None = None, **options: Unpack[PullOptions]
) -> list[PullResult]:
    """Pull several models at once in one session (one connection budget; a shared blob once).

    Takes :func:`apull`'s options. Results come in the order of *names*; the first failure
    cancels the other pulls and is raised.
    """
    PullSettings.of(options, caller="apull")  # every option checked before the first name is read
    refs = [ModelName.of(n) for n in names]
    store = ModelStore(models_dir)
    results: dict[int, PullResult] = {}
    try:
        async with PullSession(store, **options) as session:

            async def one(i: int, ref: ModelName) -> None:
                results[i] = await session.pull(ref)

            async with anyio.create_task_group() as tg:
                for i, ref in enumerate(refs):
                    tg.start_soon(one, i, ref)
    except BaseException as exc:
        raise_collapsed(exc)
    return [results[i] for i in range(len(refs))]


pull = blocking(apull)
