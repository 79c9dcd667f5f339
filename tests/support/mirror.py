"""The mirror on a real socket for tests, and the files a site gives it (htpasswd, tokens, access rules)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio.from_thread
import bcrypt

from ollama_seed.mirror.factory import create_app
from ollama_seed.mirror.serve import ServeInfo, aserve

__all__ = ["serving", "split_options", "write_htpasswd"]


SERVER_OPTIONS = frozenset(
    {
        "host",
        "port",
        "tls_cert",
        "tls_key",
        "limit_concurrency",
        "max_header_size",
        "header_timeout",
        "keep_alive",
        "write_timeout",
        "shutdown_timeout",
        "handle_signals",
    }
)


def split_options(models_dir: Path, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``create_app(models_dir, **the app's options)`` and the server's options for ``aserve``."""
    server = {k: v for k, v in options.items() if k in SERVER_OPTIONS}
    app = create_app(models_dir, **{k: v for k, v in options.items() if k not in SERVER_OPTIONS})
    return app, server


@contextlib.contextmanager
def serving(models_dir: Path, **options: Any) -> Iterator[ServeInfo]:
    """``aserve`` on 127.0.0.1 (a free port) in its own event-loop thread; stopped gracefully on exit.

    *options* are ``create_app``'s and ``aserve``'s together.
    """
    options.setdefault("port", 0)
    app, server = split_options(models_dir, options)
    with anyio.from_thread.start_blocking_portal() as portal:
        future, info = portal.start_task(partial(aserve, app, **server))
        try:
            yield info
        finally:
            future.cancel()


def write_htpasswd(path: Path, users: dict[str, str], *, prefix: bytes = b"$2y$", rounds: int = 4) -> Path:
    """An htpasswd file of bcrypt entries as ``htpasswd -B`` writes them (``$2y$``), cheap rounds for tests."""
    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds))
        lines.append(f"{user}:{(prefix + hashed[4:]).decode()}")
    path.write_text("\n".join(lines) + "\n")
    return path
