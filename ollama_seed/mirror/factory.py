"""Builds the mirror's ASGI application from options: store, pull-through, budget, logins, metrics."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from ..core.errors import ConfigError
from ..core.layout import StrPath
from ..store.store import ModelStore
from ..wire.registry import Credentials
from .app import MirrorApp
from .auth import AccessRules, Authenticator, FailureLimiter, Htpasswd, StaticTokens
from .budget import CacheBudget, blob_bytes
from .cache import PullThroughCache
from .metrics import MirrorMetrics
from .redirect import BlobRedirect
from .site import SiteApp

__all__ = ["StrPath", "create_app"]


def create_app(
    models_dir: StrPath | None = None,
    *,
    upstream: str | None = None,
    redirect_blobs_to: str | None = "auto",
    hosts: Sequence[str] | None = None,
    credentials: Credentials | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    connections: int = 16,
    stall_timeout: float = 30.0,
    htpasswd: StrPath | None = None,
    token_file: StrPath | None = None,
    access: StrPath | None = None,
    metrics_auth: bool = False,
    max_cache_size: int | None = None,
    keep: Sequence[str] = (),
    login_failures: tuple[int, float] = (10, 60.0),
    upstream_private_redirects: bool = False,
) -> SiteApp:
    """The mirror's ASGI application (for uvicorn, hypercorn, or ``httpx.ASGITransport``).

    Args:
        models_dir: the store; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        upstream: pull-through from this registry; *credentials*, *transport*, *connections*
            and *stall_timeout* are for that.
        redirect_blobs_to: ``auto``, ``off`` or a base URL (:class:`~ollama_seed.mirror.redirect.BlobRedirect`).
        hosts: registry hosts a ``<ns>/<model>`` repository is looked up under, in order.
        htpasswd: readers must log in with a user of this file (bcrypt entries).
        token_file: or with a static bearer token of this file (``user:token`` lines).
        access: a TOML file of which repositories each user may read (needs a login option).
        metrics_auth: ``/metrics`` needs a login too.
        max_cache_size: keep the store's blobs under this many bytes by evicting pulled-through
            models, least recently served first (needs *upstream*).
        keep: models never evicted.
        login_failures: ``(count, seconds)``: past *count* failed logins of one user from one
            address in *seconds* (5 x *count* per address, and per user), further attempts are
            answered 429 without a check until they are older.
        upstream_private_redirects: the pull-through follows the upstream's redirects to
            loopback, link-local and private addresses too (by default it refuses them).

    Raises:
        ConfigError: an option cannot be used (a file unreadable, a combination that means nothing).
    """
    store = ModelStore(models_dir)
    if max_cache_size is not None and not upstream:
        raise ConfigError("--max-cache-size bounds the pull-through cache; it needs --upstream")
    if max_cache_size is not None and max_cache_size <= 0:
        raise ConfigError("--max-cache-size must be more than 0 (for example 200G)")
    if (access or metrics_auth) and not (htpasswd or token_file):
        raise ConfigError("--access and --metrics-auth need logins: add --htpasswd FILE (or --token-file FILE)")
    metrics = MirrorMetrics()
    cache = budget = None
    if upstream:
        budget = CacheBudget(store, max_cache_size, keep=keep, metrics=metrics)
        cache = PullThroughCache(
            store,
            upstream,
            credentials=credentials,
            transport=transport,
            connections=connections,
            stall_timeout=stall_timeout,
            private_redirects=upstream_private_redirects,
            budget=budget,
            metrics=metrics,
        )
    elif keep:
        raise ConfigError("--keep protects models from the pull-through cache's eviction; it needs --upstream")
    else:
        metrics.watch_cache(lambda: blob_bytes(store), None)
    auth = None
    if htpasswd or token_file:
        auth = Authenticator(
            Htpasswd(htpasswd) if htpasswd else None,
            StaticTokens(token_file) if token_file else None,
            access=AccessRules.load(access) if access else None,
            limiter=FailureLimiter(*login_failures),
        )
    mirror = MirrorApp(store, cache=cache, redirect=BlobRedirect(redirect_blobs_to), hosts=hosts)
    return SiteApp(mirror, auth=auth, metrics=metrics, budget=budget, metrics_auth=metrics_auth)
