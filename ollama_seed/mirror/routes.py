"""What a request path means to the mirror, and catalog paging. Pure: no I/O.

The raw request path is split on ``/``; each part after ``/v2/`` is percent-decoded once and must
be ``[A-Za-z0-9_.:-]{1,350}``; a repository must parse back to exactly itself as a model name
(:meth:`ModelName.from_parts <ollama_seed.core.reference.ModelName.from_parts>`). So no spelling of a URL (``..``,
``%2e%2e``, ``%2f``, ``//``, ``\\``, NUL, overlong) names a path outside ``manifests/`` and
``blobs/``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..core.errors import InvalidName
from ..core.reference import ModelName

__all__ = [
    "DIRECT",
    "MAX_PAGE",
    "MAX_PATH",
    "OPS",
    "SEGMENT",
    "Refused",
    "Route",
    "check_name",
    "page",
    "query_flags",
    "route",
]

SEGMENT = re.compile(r"[A-Za-z0-9_.:-]{1,350}")
MAX_PATH = 1024
MAX_PAGE = 10_000
DIRECT = "direct=1"  # the query that marks a request sent by our own 307: serve the bytes
_DIGITS = re.compile(r"[0-9]*", re.ASCII)
_KINDS = {"manifests": "manifest", "blobs": "blob", "referrers": "referrers"}
OPS = {b"/healthz": "healthz", b"/readyz": "readyz", b"/metrics": "metrics"}  # also served by reserve connections


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a path is not served: the status, the registry error code and a message."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Route:
    """A request path, understood.

    ``kind`` is ``base``, ``catalog``, ``tags``, ``manifest``, ``blob``, ``referrers``, ``healthz``,
    ``readyz``, ``metrics`` or ``other`` (also the metrics label). ``repo`` is the repository's parts
    (``ns, model`` or ``host, ns, model``) and ``ref`` the tag or digest, where the route has them.
    ``refused`` is set when the mirror answers the path with an error without looking further.
    """

    kind: str
    parts: tuple[str, ...] = ()
    repo: tuple[str, ...] | None = None
    ref: str | None = None
    refused: Refused | None = None


def _segment(raw: bytes) -> str | None:
    try:
        text = urllib.parse.unquote(raw.decode("ascii"), errors="strict")
    except UnicodeError:
        return None
    return text if SEGMENT.fullmatch(text) else None


def route(raw_path: bytes) -> Route:
    """The route of a raw request path (the query, if any, is ignored)."""
    raw = raw_path.split(b"?", 1)[0]
    if raw in OPS:
        return Route(OPS[raw])
    if len(raw) > MAX_PATH:
        return Route("other", refused=Refused(414, "NAME_INVALID", f"the path is longer than {MAX_PATH} bytes"))
    pieces = raw.split(b"/")
    if pieces[:2] != [b"", b"v2"]:
        return Route("other", refused=Refused(404, "NOT_FOUND", "this server only answers the registry API under /v2/"))
    segs = pieces[2:]
    if segs in ([], [b""]):
        return Route("base")
    parts: list[str] = []
    for s in segs:
        text = _segment(s)
        if text is None:
            shown = s.decode("latin-1")[:80]
            return Route("other", refused=Refused(400, "NAME_INVALID", f"invalid path: bad path segment {shown!r}"))
        parts.append(text)
    found = tuple(parts)
    if found == ("_catalog",):
        return Route("catalog", found)
    if len(found) >= 4 and found[-2:] == ("tags", "list"):
        kind, repo, ref = "tags", found[:-2], None
    elif len(found) >= 4 and found[-2] in _KINDS:
        kind, repo, ref = _KINDS[found[-2]], found[:-2], found[-1]
    else:
        return Route("other", found, refused=Refused(404, "NOT_FOUND", "unknown registry API path"))
    if len(repo) not in (2, 3):
        return Route(
            kind,
            found,
            refused=Refused(404, "NAME_UNKNOWN", "a repository is <namespace>/<model> or <host>/<namespace>/<model>"),
        )
    problem = check_name(repo)
    if problem is not None:
        return Route(kind, found, refused=Refused(400, "NAME_INVALID", problem))
    return Route(kind, found, repo, ref)


def check_name(repo: tuple[str, ...], tag: str = "latest") -> str | None:
    """None if ``[host/]ns/model:tag`` parses back to exactly these parts as a model name, else why not."""
    host, ns, model = repo if len(repo) == 3 else ("h", *repo)
    try:
        ModelName.from_parts(host, ns, model, tag)
    except InvalidName as exc:
        return str(exc)
    return None


def page(
    items: Iterable[str], query: Mapping[str, list[str]], path: str, *, visible: Callable[[str], bool] | None = None
) -> tuple[list[str], list[tuple[bytes, bytes]]]:
    """One page of sorted *items* after ``last``, at most ``n`` (``MAX_PAGE``); a ``Link`` to the next.

    *visible* filters the items before paging, so the ``Link`` names only an item the caller may see.
    """
    last = query.get("last", [""])[0]
    n_text = query.get("n", [""])[0]
    n = int(n_text) if n_text and _DIGITS.fullmatch(n_text) and len(n_text) < 10 else MAX_PAGE
    n = max(0, min(n, MAX_PAGE))
    shown = [i for i in items if (not last or i > last) and (visible is None or visible(i))]
    headers: list[tuple[bytes, bytes]] = []
    if len(shown) > n:
        shown = shown[:n]
        if shown:
            link = f'<{path}?{urllib.parse.urlencode({"last": shown[-1], "n": n})}>; rel="next"'
            headers.append((b"link", link.encode()))
    return shown, headers


def query_flags(query_string: bytes) -> set[str]:
    """The ``key=value`` items of a query string, as written."""
    return set(query_string.decode("latin-1").split("&")) - {""}
