"""Blocking twins of the async API, derived, never written by hand.

Every public operation is written once, as an ``async`` function; its blocking twin is derived
here, typed with the same parameters (a ``ParamSpec``), so a misspelt keyword is a type error on
both:

- :func:`blocking` for an operation that runs on an event loop: ``pull = blocking(apull)`` runs
  one event loop per call.
- :func:`in_this_thread` and :func:`in_worker_thread` for an operation that is blocking work
  (bundles): a *job factory* checks the arguments and returns a :class:`Job`; the blocking twin
  runs it in the calling thread with no event loop at all, the async one in a worker thread,
  cancellable.

A blocking twin called inside a running event loop is refused (:func:`refuse_in_loop`), where
the ``a``-prefixed form belongs. Nothing here imports anyio until a twin runs, so the cheap path
of ``ensure()`` may use it.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ..core.progress import no_progress

if TYPE_CHECKING:
    from ..core.progress import ProgressCallback, ProgressEvent

__all__ = [
    "CANCEL_GRACE",
    "Job",
    "blocking",
    "in_this_thread",
    "in_worker_thread",
    "refuse_in_loop",
    "run_job",
    "run_sync",
]

T = TypeVar("T")
P = ParamSpec("P")
CANCEL_GRACE = 10.0  # seconds to wait for a cancelled worker's clean-up (it may be blocked reading a pipe)


def refuse_in_loop(name: str, async_name: str) -> None:
    """Refuse a blocking call (``ollama_seed.<name>()``) made inside a running event loop.

    Raises:
        RuntimeError: an asyncio loop runs in this thread; the message names ``await <async_name>(...)``.
    """
    aio = sys.modules.get("asyncio")  # not imported: no loop can be running (and we save its import)
    if aio is None:
        return
    try:
        aio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"ollama_seed.{name}() blocks, so it cannot run inside a running event loop; "
        f"use 'await ollama_seed.{async_name}(...)' there instead"
    )


def blocking(afn: Callable[P, Coroutine[Any, Any, T]], name: str | None = None) -> Callable[P, T]:
    """The blocking twin of the async operation *afn*: same parameters, one event loop per call.

    *name* is the twin's name (default: *afn*'s without its ``a``: ``apull`` -> ``pull``).
    The twin raises :class:`RuntimeError` when called inside a running event loop.
    """
    async_name = afn.__name__
    twin = name or async_name.removeprefix("a")

    @functools.wraps(afn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        refuse_in_loop(twin, async_name)
        import anyio

        try:
            return anyio.run(functools.partial(afn, *args, **kwargs))
        except TypeError as exc:  # wrong arguments (bound, or checked against the options): name the twin called
            if str(exc).startswith(f"{async_name}() "):
                raise TypeError(f"{twin}(){str(exc).removeprefix(async_name + '()')}") from None
            raise

    run.__name__ = run.__qualname__ = twin
    run.__doc__ = (
        f"Blocking form of :func:`{async_name}`, with the same arguments.\n\n"
        f"Raises:\n    RuntimeError: called inside a running event loop (use ``await {async_name}(...)`` there).\n"
        f"    SeedError: as :func:`{async_name}`.\n"
    )
    return run


def run_sync(func: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``blocking(func)(*args, **kwargs)``: for a caller (the CLI) that runs an async operation once."""
    return blocking(func)(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class Job(Generic[T]):
    """Blocking work that a thread runs: ``work(cancel, emit)``. *work* checks *cancel* between
    chunks (and removes what it staged when it is set); *progress* receives the events *emit* gets."""

    work: Callable[[threading.Event, Callable[[ProgressEvent], None]], T]
    progress: ProgressCallback | None = None


def in_this_thread(factory: Callable[P, Job[T]], name: str, async_name: str) -> Callable[P, T]:
    """The blocking twin of a job: the factory's parameters; the work runs in the calling thread,
    with no event loop (anyio is not even imported). Refused inside a running event loop."""

    @functools.wraps(factory)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        refuse_in_loop(name, async_name)
        job = factory(*args, **kwargs)
        return job.work(threading.Event(), job.progress or no_progress)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"Blocking form of :func:`{async_name}`, with the same arguments. Not for use inside an event loop."
    return run


def in_worker_thread(factory: Callable[P, Job[T]], name: str) -> Callable[P, Coroutine[Any, Any, T]]:
    """The async form of a job: the factory's parameters (and docs); the work runs in a worker
    thread, its progress events delivered on the event loop's thread. Cancelling the awaiting task
    stops the work at its next chunk, and waits (up to :data:`CANCEL_GRACE` s) for its clean-up."""

    @functools.wraps(factory)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return await run_job(factory(*args, **kwargs))

    run.__name__ = run.__qualname__ = name
    return run


async def run_job(job: Job[T]) -> T:
    """Run *job* in a worker thread (see :func:`in_worker_thread`)."""
    import anyio
    import anyio.from_thread
    import anyio.to_thread

    cancel, finished = threading.Event(), threading.Event()
    progress = job.progress

    def emit(event: ProgressEvent) -> None:
        if progress is not None:
            anyio.from_thread.run_sync(progress, event)

    def work() -> T:
        try:
            return job.work(cancel, emit)
        finally:
            finished.set()

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()  # the worker stops at its next chunk and removes what it staged
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(finished.wait, CANCEL_GRACE)
        raise
