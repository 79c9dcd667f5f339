"""The 307 that stock Ollama needs for blobs: where a blob GET is redirected.

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

import ipaddress
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ..core.errors import ConfigError

__all__ = ["BlobRedirect", "alternate_host", "is_stock_ollama"]


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
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
            or parts.path not in ("", "/")
            or "@" in parts.netloc
        ):
            raise ConfigError(
                f"--redirect-blobs-to {target!r}: use auto, off, or a base URL such as "
                "http://10.0.0.5:8080 (another name of this server)"
            )
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
