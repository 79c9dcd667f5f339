"""Serving the mirror with uvicorn, and the 307 that stock Ollama needs for blobs.

Why the 307: Ollama's client (``server/download.go``) resolves a blob's "direct URL" with a GET
that follows redirects only while the host name stays the same, and stops at the first 307 to a
different host name. It then fetches the blob's parts from that URL, without auth. A registry
that answers the GET with the bytes (200) makes older Ollama releases fail with
``http: no Location header in response``. So the mirror answers blob GETs with a 307 to
*another name of itself*, and serves the bytes there (the redirect URL carries ``?direct=1``).

:class:`BlobRedirect` picks that name. ``--redirect-blobs-to``:

``auto`` (default)
    Only clients that identify as stock Ollama (User-Agent ``ollama/<version> (...) Go/<version>``)
    are redirected; ollama-seed, docker, oras and curl get the bytes directly. The target is
    another spelling of the address the client used, which reaches the same socket:
    ``127.0.0.1`` <-> ``localhost``; an IPv4 address ``a.b.c.d`` -> ``[::ffff:a.b.c.d]`` (the
    IPv4-mapped IPv6 form: the same address to the operating system, another host name to
    Ollama); ``[::ffff:a.b.c.d]`` -> ``a.b.c.d``; another IPv6 address -> its expanded (or
    compressed) form; a DNS name -> the IP address of the server socket the request arrived on.
    So ``ollama pull --insecure 192.168.1.10:8080/library/m:t`` and ``... mirror.lan:8080/...``
    both work on a LAN with no configuration.
``URL`` (``http://10.0.0.5:8080``)
    Every blob GET is redirected there. Use it when the automatic name is not reachable by
    clients (NAT, port forwarding, a proxy in front). Its host name must differ from the one
    clients use to reach the mirror, or Ollama follows it and fails.
``off``
    Never redirect; stock Ollama cannot pull blobs then, other clients can.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import threading
import urllib.parse
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import uvicorn
from anyio.abc import TaskStatus

from ..core.errors import ConfigError, SeedError
from ..store import platform as _platform
from ..store.store import ModelStore
from ..wire.registry import Credentials
from ..wire.sync import run_sync
from .app import MirrorApp
from .cache import PullThroughCache

__all__ = ["BlobRedirect", "ServeInfo", "aserve", "create_app", "serve"]

log = logging.getLogger("ollama_seed.mirror")
StrPath = str | os.PathLike[str]


def _header(scope: Mapping[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _split_host(value: str) -> tuple[str, str]:
    """``[::1]:8080`` -> ``("::1", "8080")``; ``host:80`` -> ``("host", "80")``; the port may be ``""``."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, _, port = value.partition(":") if value.count(":") == 1 else (value, "", "")
    return host, port


def _ip_text(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{ip}]" if ip.version == 6 else str(ip)


def alternate_host(host: str) -> str | None:
    """Another spelling of an IP address (or ``localhost``) that reaches the same place; None for names."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return "localhost" if ip.is_loopback else f"[::ffff:{ip}]"
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return f"[{ip.exploded}]" if host != ip.exploded else f"[{ip.compressed}]"


def is_stock_ollama(user_agent: str) -> bool:
    """True for Ollama's own registry client: ``ollama/0.12.3 (amd64 linux) Go/go1.24.0``."""
    return user_agent.startswith("ollama/") and " Go/" in user_agent and "ollama-seed" not in user_agent


class BlobRedirect:
    """Decides where a blob GET is redirected (see the module docstring).

    Args:
        target: ``"auto"``, ``"off"``, or a base URL ``http(s)://host[:port]``.

    Raises:
        ConfigError: *target* is none of these.
    """

    def __init__(self, target: str | None = "auto") -> None:
        self.base: str | None = None
        self.mode = (target or "off").strip()
        if self.mode.lower() in ("auto", "off", "none"):
            self.mode = self.mode.lower().replace("none", "off")
            return
        parts = urllib.parse.urlsplit(self.mode)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
                or parts.path not in ("", "/") or "@" in parts.netloc:
            raise ConfigError(f"--redirect-blobs-to {target!r}: use auto, off, or a base URL such as "
                              "http://10.0.0.5:8080 (another name of this server)")
        self.base, self.mode = self.mode.rstrip("/"), "url"

    def __call__(self, scope: Mapping[str, Any]) -> str | None:
        if self.mode == "url":
            return self.base
        if self.mode != "auto" or not is_stock_ollama(_header(scope, b"user-agent")):
            return None
        return self.derive(scope)

    @staticmethod
    def derive(scope: Mapping[str, Any]) -> str | None:
        """The automatic target for this request: another name of the address the client used."""
        scheme = scope.get("scheme", "http")
        server = scope.get("server")
        host, port = _split_host(_header(scope, b"host"))
        if not host and server:
            host, port = str(server[0]), str(server[1])
        if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
            return None
        alt = alternate_host(host) if host else None
        if alt is None:
            if not server:
                return None
            try:
                ip = ipaddress.ip_address(str(server[0]))
            except ValueError:
                return None
            alt, port = _ip_text(ip), str(server[1])
        return f"{scheme}://{alt}:{port}" if port else f"{scheme}://{alt}"


@dataclass(frozen=True, slots=True)
class ServeInfo:
    """Where a started mirror listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


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
) -> MirrorApp:
    """The mirror's ASGI application (for uvicorn, hypercorn, or ``httpx.ASGITransport``).

    Raises:
        ConfigError: *upstream* or *redirect_blobs_to* cannot be used.
    """
    store = ModelStore(models_dir)
    cache = None
    if upstream:
        cache = PullThroughCache(store, upstream, credentials=credentials, transport=transport,
                                 connections=connections, stall_timeout=stall_timeout)
    return MirrorApp(store, cache=cache, redirect=BlobRedirect(redirect_blobs_to), hosts=hosts)


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
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
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
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                          "choose another --host/--port or stop what uses it") from None
    return sock


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
    handle_signals: bool = False,
    task_status: TaskStatus[ServeInfo] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a models directory as a read-only registry until cancelled (or SIGINT/SIGTERM).

    With ``await task_group.start(aserve, ...)`` the call returns a :class:`ServeInfo` once the
    socket listens (``port=0`` picks a free port). Cancelling the task stops the server gracefully.

    Args:
        models_dir: the store to serve; default ``$OLLAMA_MODELS``, else ``~/.ollama/models``.
        host, port: where to listen (``0.0.0.0`` or ``::`` for every interface).
        upstream: pull-through from this registry (``https://registry.ollama.ai``).
        redirect_blobs_to: ``auto``, ``off`` or a base URL; see :class:`BlobRedirect`.
        hosts: registry hosts a ``<ns>/<model>`` repository is looked up under, in order.
        credentials: for an upstream that asks; *transport*: httpx transport to the upstream.
        handle_signals: stop gracefully on SIGINT/SIGTERM (main thread only).

    Raises:
        ConfigError: the address cannot be bound, or an option is unusable.
        SeedError: the application failed to start.
    """
    app = create_app(models_dir, upstream=upstream, redirect_blobs_to=redirect_blobs_to, hosts=hosts,
                     credentials=credentials, transport=transport, connections=connections,
                     stall_timeout=stall_timeout)
    sock = _bind(host, port)
    bound = sock.getsockname()
    config = uvicorn.Config(app, http="h11", ws="none", lifespan="on", log_config=None, access_log=False,
                            proxy_headers=False, server_header=False, timeout_graceful_shutdown=5,
                            timeout_keep_alive=30)
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
        info = ServeInfo(str(bound[0]), int(bound[1]))
        log.info("serving %s at %s", app.store.root, info.url)
        task_status.started(info)
        try:
            await done.wait()
        finally:
            server.should_exit = True


def serve(models_dir: StrPath | None = None, **options: Any) -> None:
    """Blocking form of :func:`aserve` (stops on SIGINT/SIGTERM); takes the same options."""
    options.setdefault("handle_signals", True)
    run_sync(aserve, models_dir, **options)
