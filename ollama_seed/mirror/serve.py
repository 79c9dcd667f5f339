"""Serving the mirror: the socket, TLS, limits, signals and a graceful stop, around an application.

``aserve(app, host=..., port=...)`` takes the application :func:`~ollama_seed.mirror.factory.create_app`
builds (or builds one over a models directory with the defaults), binds the socket itself (so a
port in use is a clear :class:`ConfigError`, and ``port=0`` works), enters the application (its
pull-through cache, its cache budget) and serves it with :mod:`~ollama_seed.mirror.http11`. With
``tls_cert``/``tls_key`` it speaks TLS on that socket. On SIGINT/SIGTERM (or cancellation) it
stops accepting, lets the responses in flight finish for up to ``shutdown_timeout`` seconds, then
closes the rest. The 307 for stock Ollama is :mod:`~ollama_seed.mirror.redirect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus

from ..core.bounds import check
from ..core.errors import ConfigError
from ..store import oscalls
from ..wire.sync import blocking
from .factory import StrPath, create_app
from .http11 import Http11Server, ServerLimits
from .redirect import BlobRedirect, alternate_host, is_stock_ollama
from .site import SiteApp

__all__ = [
    "BlobRedirect",
    "ServeInfo",
    "ServerLimits",
    "aserve",
    "alternate_host",
    "create_app",
    "is_stock_ollama",
    "serve",
]

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


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, IndexError) as exc:
        raise ConfigError(
            f"cannot listen on {host!r}: {exc}; give --host an address of this machine "
            "(127.0.0.1, or 0.0.0.0 for every interface)"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        oscalls.host.listen_options(sock)
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


def tls_context(cert: StrPath | None, key: StrPath | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files (checked to belong together); None without them."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both --tls-cert FILE and --tls-key FILE")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}; give a PEM certificate "
            "(its chain after it) and the PEM private key that belongs to it"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


async def aserve(
    app: SiteApp | StrPath | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    tls_cert: StrPath | None = None,
    tls_key: StrPath | None = None,
    limit_concurrency: int | None = 1024,
    max_header_size: int = 16 * 1024,
    header_timeout: float = 10.0,
    keep_alive: float = 30.0,
    write_timeout: float = 60.0,
    shutdown_timeout: float = 30.0,
    handle_signals: bool = True,
    task_status: TaskStatus[ServeInfo] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the mirror until cancelled (or SIGINT/SIGTERM).

    With ``await task_group.start(aserve, app, ...)`` the call returns a :class:`ServeInfo` once
    the socket listens (``port=0`` picks a free port). Cancelling the task stops the server gracefully.

    Args:
        app: what :func:`~ollama_seed.mirror.factory.create_app` returns (every option of the
            registry: upstream, logins, cache size, ...); or a models directory (None:
            ``$OLLAMA_MODELS``, else ``~/.ollama/models``) served with ``create_app``'s defaults.
        host, port: where to listen (``0.0.0.0`` or ``::`` for every interface).
        tls_cert, tls_key: PEM files; the mirror then speaks https only.
        limit_concurrency: connections open at once (None: no limit); see :class:`ServerLimits`.
        max_header_size: bytes of a request head; a longer one is refused with 400.
        header_timeout: seconds for a request head to arrive whole (TLS handshake included).
        keep_alive: seconds an idle keep-alive connection is kept open.
        write_timeout: seconds a response may go without sending a byte before it is abandoned.
        shutdown_timeout: on stop, seconds the responses in flight may take to finish.
        handle_signals: stop gracefully on SIGINT/SIGTERM (in the main thread only; pass False when
            the application handles those signals itself and cancels this task).

    Raises:
        ConfigError: the address cannot be bound, or an option is unusable.
    """
    _check(port, limit_concurrency, max_header_size, header_timeout, keep_alive, write_timeout, shutdown_timeout)
    site = app if isinstance(app, SiteApp) else create_app(app)
    limits = ServerLimits(
        limit=limit_concurrency,
        max_header_size=max_header_size,
        header_timeout=header_timeout,
        keep_alive=keep_alive,
        write_timeout=write_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    context = tls_context(tls_cert, tls_key)
    sock = _bind(host, port)
    bound = sock.getsockname()
    info = ServeInfo(str(bound[0]), int(bound[1]), "https" if context is not None else "http")
    try:
        async with site:
            server = Http11Server(site, sock, asyncio.get_running_loop(), tls=context, limits=limits)
            stop = anyio.Event()
            with _signals(stop, handle_signals):
                server.start()
                log.info("serving %s at %s", site.store.root, info.url)
                if site.auth is None and not _loopback(info.host):
                    log.warning(
                        "no login is required: anyone who can reach %s can read every model in %s%s; "
                        "add --htpasswd FILE to require one",
                        info.url,
                        site.store.root,
                        " and pull any model of the upstream through it" if site.mirror.cache is not None else "",
                    )
                task_status.started(info)
                try:
                    await stop.wait()
                finally:
                    log.info(
                        "stopping: no new connections; the %d open may finish within %g s",
                        server.connections(),
                        shutdown_timeout,
                    )
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(server.stop)
    finally:
        sock.close()


def _check(port: int, limit: int | None, header: int, *seconds: float) -> None:
    """Refuse server options out of range (exit 2), naming the option and its range (``core/bounds``)."""
    check("port", port)
    if limit is not None:
        check("limit_concurrency", limit)
    check("max_header_size", header)
    names = ("header_timeout", "keep_alive", "write_timeout", "shutdown_timeout")
    for name, value in zip(names, seconds, strict=True):
        check(name, value)


@contextlib.contextmanager
def _signals(stop: anyio.Event, wanted: bool) -> Any:
    """SIGINT and SIGTERM set *stop* (main thread only; the previous handlers come back after).

    Through the loop's signal handling where it has one: it wakes the loop through a file
    descriptor, so a signal that lands on a connection's thread still stops the server at once.
    """
    if not wanted or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    via_loop = True
    for sig in previous:
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows' loops: a plain handler, woken by the loop's polls
            via_loop = False
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if via_loop:
                loop.remove_signal_handler(sig)
            signal.signal(sig, handler)


serve = blocking(aserve)
