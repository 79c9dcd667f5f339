"""URL helpers that need no httpx: what a log may show of a URL, and a URL's origin.

:func:`origin` normalizes as httpx's ``URL`` does (scheme and host in lower case, the scheme's
default port dropped, no user info), so that deciding whether a request goes to the registry's
own host (and may carry its token) answers the same on the direct path as through httpx.
"""

from __future__ import annotations

import urllib.parse

__all__ = ["origin", "shown_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def shown_url(url: str) -> str:
    """*url* without its query string or fragment (signed storage URLs carry secrets there)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def origin(url: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of *url*, normalized; ``("", "")`` for a URL that cannot be parsed.

    >>> origin("HTTPS://Registry.Example:443/v2/")
    ('https', 'registry.example')
    >>> origin("http://[::1]:5000/x")
    ('http', '[::1]:5000')
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "", ""
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return scheme, host
