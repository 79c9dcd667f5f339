"""Where a fetch may be redirected: the one rule of the mirror's pull-through.

A registry's 307 to its storage or CDN is ordinary, and a pull the user runs follows it anywhere.
The mirror's pull-through is different: its clients choose what it fetches, so an upstream (or
whoever answers in its name) could point it at the mirror's own network (loopback, link-local and
private addresses) and, through what it then answers, let anyone probe that network. So the
pull-through follows a redirect to the upstream's own host, or to a host all of whose addresses are
global, and refuses the rest unless the operator allowed them (``serve
--upstream-private-redirects``). The HEAD probes (``mirror.cache``) and the blob GETs of the
transfer engine (``wire.transfer``) both ask :meth:`RedirectRule.check`.

The host is resolved for the check and again when connecting: a name whose DNS answers change in
between (rebinding) is not covered; address literals and stable names are.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass

import anyio

from ..core.errors import RegistryError
from .urls import origin

__all__ = ["RedirectRule", "internal"]


def internal(address: str) -> bool:
    """Whether *address* (an IP literal, maybe with an IPv6 zone) is not a global one: loopback,
    link-local, private, shared, reserved, unspecified (an IPv4-mapped IPv6 address as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global


@dataclass(frozen=True, slots=True)
class RedirectRule:
    """Which redirect targets a fetch follows. *private*: internal addresses too (everything)."""

    private: bool = False

    async def check(self, url: str, *, own: str) -> None:
        """Refuse following a redirect to *url* unless it is on *own* (``host[:port]``, the
        upstream's, as :func:`~.urls.origin` gives it) or every address of its host is global.

        Raises:
            RegistryError: the target is internal, or its name does not resolve.
        """
        scheme, where = origin(url)
        host = urllib.parse.urlsplit(url).hostname
        if self.private or where == own or not host:
            return
        try:
            infos = await anyio.getaddrinfo(host, 443 if scheme == "https" else 80, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise RegistryError(f"{own} redirected to {host}, which does not resolve: {exc}") from None
        for *_, address in infos:
            if internal(str(address[0])):
                raise RegistryError(
                    f"{own} redirected a blob to {host} ({address[0]}), a loopback, link-local or private "
                    "address; refused (start serve with --upstream-private-redirects if that is intended)",
                    url=f"{scheme}://{where}",
                )
