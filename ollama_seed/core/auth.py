"""Bearer-token challenges (``WWW-Authenticate: Bearer realm=...``). Pure."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

__all__ = ["Challenge", "parse_challenge", "token_url"]

_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    realm: str
    service: str | None
    scopes: tuple[str, ...]


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse a Bearer or Basic challenge; None if absent or unusable."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "basic"):
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    realm = params.get("realm", "")
    if scheme == "bearer" and not realm:
        return None
    scopes = tuple(params["scope"].split()) if params.get("scope") else ()
    return Challenge(scheme, realm, params.get("service"), scopes)


def token_url(challenge: Challenge, default_scope: str) -> str:
    """The token endpoint URL for *challenge*, asking for its scopes (or *default_scope*)."""
    query: list[tuple[str, str]] = []
    if challenge.service:
        query.append(("service", challenge.service))
    for scope in challenge.scopes or (default_scope,):
        query.append(("scope", scope))
    parts = urllib.parse.urlsplit(challenge.realm)
    existing = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(existing + query)))
