"""Blocking wrappers over the async API: one event loop per call, refused inside a running loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import ParamSpec, TypeVar

import anyio

__all__ = ["run_sync"]

T = TypeVar("T")
P = ParamSpec("P")


def run_sync(func: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the async API function *func* to completion from synchronous code.

    Raises:
        RuntimeError: called inside a running event loop, where the ``a``-prefixed form belongs.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(partial(func, *args, **kwargs))
    name = getattr(func, "__name__", "apull")
    raise RuntimeError(
        f"ollama_seed.{name[1:]}() blocks, so it cannot run inside a running event loop; "
        f"use 'await ollama_seed.{name}(...)' there instead"
    )
