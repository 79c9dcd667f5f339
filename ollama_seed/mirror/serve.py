"""Serving the mirror with uvicorn: the socket, TLS, limits, signals and a graceful stop.

``aserve`` binds the socket itself (so a port in use is a clear :class:`ConfigError`, and
``port=0`` works), then runs uvicorn (h11, HTTP/1.1 keep-alive) on it with the application
:func:`~ollama_seed.mirror.factory.create_app` builds. With ``tls_cert``/``tls_key`` uvicorn
speaks TLS on that socket. On SIGINT/SIGTERM (or cancellation) it stops accepting, lets the
responses in flight finish for up to ``shutdown_timeout`` seconds, then closes the rest.
The 307 for stock Ollama is :mod:`~ollama_seed.mirror.redirect`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import uvicorn
from anyio.abc import TaskStatus

from ..core.errors import ConfigError, SeedError
from ..store import platform as _platform
from ..wire.registry import Credentials
from ..wire.sync import run_sync
from .factory import StrPath, create_app
from .redirect import BlobRedirect, alternate_host, is_stock_ollama

__all__ = ["BlobRedirect", "ServeInfo", "aserve", "alternate_host", "create_app", "is_stock_ollama", "serve"]

log = logging.getLogger("ollama_seed.mirror")


@dataclass(frozen=True, slots=True)
class ServeInfo:
    """Where a started mirror listens."""

    host: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class _Server(uvicorn.Server):
    """uvicorn's server, with signal handling only when asked (and without re-raising signals after)."""

    def __init__(self, config: uvicorn.Config, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, IndexError) as exc:
        raise ConfigError(f"cannot listen on {host!r}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        _platform.current.listen_options(sock)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --host/--port or stop what uses it"
        ) from None
    return sock


def _tls(cert: StrPath | None, key: StrPath | None) -> str:
    """``https`` after checking the certificate and key load together; ``http`` without them."""
    if cert is None and key is None:
        return "http"
    if cert is None or key is None:
        raise ConfigError("TLS needs both --tls-cert FILE and --tls-key FILE")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}; give a PEM certificate "
            "(its chain after it) and the PEM private key that belongs to it"
        ) from None
    return "https"


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


async def aserve(
    models_dir: StrPath | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
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
    tls_cert: StrPath | None = None,
    tls_key: StrPath | None = None,
    limit_concurrency: int | None = 1024,
    max_header_size: int = 16 * 1024,
    shutdown_timeout: float = 30.0,
    keep_alive: float = 30.0,
    handle_signals: bool = False,
    task_status: TaskStatus[ServeInfo] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a models directory as a read-only registry until cancelled (or SIGINT/SIGTERM).

    With ``await task_group.start(aserve, ...)`` the call returns a :class:`ServeInfo` once the
    socket listens (``port=0`` picks a free port). Cancelling the task stops the server gracefully.

    Args:
        models_dir: the store to serve; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        host, port: where to listen (``0.0.0.0`` or ``::`` for every interface).
        upstream, redirect_blobs_to, hosts, credentials, transport, connections, stall_timeout,
        htpasswd, token_file, access, metrics_auth, max_cache_size, keep: the application's,
            see :func:`~ollama_seed.mirror.factory.create_app`.
        tls_cert, tls_key: PEM files; the mirror then speaks https only.
        limit_concurrency: connections and requests at once; more are answered 503 (None: no limit).
        max_header_size: a request head (request line and headers) still incomplete past this many
            bytes is refused with 400 (h11's limit on what it buffers).
        shutdown_timeout: on stop, seconds the responses in flight may take to finish.
        keep_alive: seconds an idle keep-alive connection is kept open.
        handle_signals: stop gracefully on SIGINT/SIGTERM (main thread only).

    Raises:
        ConfigError: the address cannot be bound, or an option is unusable.
        SeedError: the application failed to start.
    """
    app = create_app(
        models_dir,
        upstream=upstream,
        redirect_blobs_to=redirect_blobs_to,
        hosts=hosts,
        credentials=credentials,
        transport=transport,
        connections=connections,
        stall_timeout=stall_timeout,
        htpasswd=htpasswd,
        token_file=token_file,
        access=access,
        metrics_auth=metrics_auth,
        max_cache_size=max_cache_size,
        keep=keep,
    )
    scheme = _tls(tls_cert, tls_key)
    sock = _bind(host, port)
    bound = sock.getsockname()
    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
        timeout_keep_alive=max(1, round(keep_alive)),
        limit_concurrency=limit_concurrency,
        h11_max_incomplete_event_size=max_header_size,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
    server = _Server(config, handle_signals)
    done = anyio.Event()
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            with anyio.CancelScope(shield=True):
                await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the application's startup fails
            failure.append(exc)
        finally:
            sock.close()
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not server.started and not done.is_set():  # noqa: ASYNC110 - uvicorn has no "started" event
            await anyio.sleep(0.01)
        if not server.started:
            raise SeedError(f"the mirror failed to start on {host}:{bound[1]}; see the log above")
        info = ServeInfo(str(bound[0]), int(bound[1]), scheme)
        log.info("serving %s at %s", app.store.root, info.url)
        if app.auth is None and not _loopback(info.host):
            log.warning(
                "no login is required: anyone who can reach %s can read every model in %s%s; "
                "add --htpasswd FILE to require one",
                info.url,
                app.store.root,
                " and pull any model of the upstream through it" if upstream else "",
            )
        task_status.started(info)
        try:
            await done.wait()
        finally:
            server.should_exit = True


def serve(models_dir: StrPath | None = None, **options: Any) -> None:
    """Blocking form of :func:`aserve` (stops on SIGINT/SIGTERM); takes the same options."""
    options.setdefault("handle_signals", True)
    run_sync(aserve, models_dir, **options)
