"""What to do with a blob response, Range headers, Retry-After and backoff. Pure.

:func:`classify` is the single place that decides how a ranged blob GET is treated; the
transfer code only does what it returns.
"""

from __future__ import annotations

import email.utils
import random
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = [
    "Accept",
    "Attempts",
    "Expired",
    "Fail",
    "Ignored",
    "Redirect",
    "Retry",
    "backoff",
    "classify",
    "RangeNotSatisfiable",
    "parse_content_range",
    "parse_range",
    "parse_retry_after",
    "range_header",
]

# at most 20 digits (2**64): a longer number is a lie, and int() refuses over 4300 digits anyway
_CONTENT_RANGE = re.compile(r"bytes\s+(\d{1,20})-(\d{1,20})/(\d{1,20}|\*)", re.ASCII)
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True, slots=True)
class Accept:
    """Take the body: it starts at the byte we asked for."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """The server ignored Range and sent the whole blob from byte 0 (status 200)."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Follow *location*: a registry pointing at its storage or CDN."""

    location: str


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again later; *after* is the server's Retry-After in seconds, if it sent one."""

    reason: str
    after: float | None = None


@dataclass(frozen=True, slots=True)
class Expired:
    """A storage/CDN URL refused us (403/400/401/404/410): resolve it again through the registry."""

    reason: str


@dataclass(frozen=True, slots=True)
class Fail:
    """Give up on this blob: retrying cannot help."""

    reason: str
    status: int | None = None


Outcome = Accept | Ignored | Redirect | Retry | Expired | Fail


def range_header(start: int, end: int) -> str:
    """``Range`` value for bytes ``[start, end)`` (HTTP's end is inclusive)."""
    return f"bytes={start}-{end - 1}"


def parse_content_range(value: str) -> tuple[int, int, int | None] | None:
    """``bytes a-b/total`` as ``(a, b + 1, total)``; None if malformed."""
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if not m:
        return None
    start, last = int(m.group(1)), int(m.group(2))
    if last < start:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    if total is not None and last >= total:
        return None
    return start, last + 1, total


class RangeNotSatisfiable(ValueError):
    """A ``Range`` that starts past the end: the server answers 416 with ``Content-Range: bytes */size``."""


_DIGITS = re.compile(r"[0-9]*", re.ASCII)  # str.isdigit() also takes superscripts, which int() refuses


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A request's ``Range`` (``bytes=a-b``, ``a-``, ``-n``) as ``(start, end)``, *end* exclusive.

    None means "ignore Range, send everything" (absent, malformed, or several ranges, as RFC 9110
    allows a server to). Raises :class:`RangeNotSatisfiable` when the range starts past the end.
    """
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not _DIGITS.fullmatch(first) or not _DIGITS.fullmatch(last) or len(first + last) > 19:
        return None
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
        if last and int(last) < start:
            return None
    elif last:
        start, end = max(0, size - int(last)), size
        if int(last) == 0:
            start = size
    else:
        return None
    if start >= size:
        raise RangeNotSatisfiable(f"range {header!r} is outside the blob's {size} bytes")
    return start, end


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped at 5 minutes."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not str.isdigit() alone: '²' is a digit float() refuses
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


@dataclass(slots=True)
class Attempts:
    """The tries of one range: in a row without real progress (*in_row*), and in all (*total*).

    Real progress is a new furthest byte at least ``floor`` bytes (or the rest of the range) past
    where the attempt started: a server that cuts every body at the same byte, or trickles a few
    bytes per attempt, makes none, so a lying or trickling server ends in an error too.
    """

    limit: int
    budget: int
    best: int
    floor: int = 1024 * 1024
    in_row: int = 0
    total: int = 0

    def failed(self, before: int, pos: int, end: int) -> bool:
        """Count an attempt that moved the range from *before* to *pos* (of *end*); True: give up."""
        if pos > self.best and pos - before >= min(self.floor, end - before):
            self.in_row = 0
        self.best = max(self.best, pos)
        self.in_row += 1
        self.total += 1
        return self.in_row >= self.limit or self.total >= self.budget


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [base*2**attempt / 2, base*2**attempt], capped."""
    top = min(cap, base * (2.0 ** min(attempt, 30)))
    r = rng.random() if rng is not None else random.random()
    return top / 2 + r * top / 2


def _http_location(location: str) -> bool:
    """A Location we may follow: printable ASCII (RFC 3986), relative or http(s)."""
    if not (location.isascii() and location.isprintable()):
        return False
    try:
        return urllib.parse.urlsplit(location).scheme.lower() in ("", "http", "https")
    except ValueError:
        return False


def classify(
    status: int,
    headers: Mapping[str, str],
    *,
    start: int,
    end: int,
    size: int,
    ranged: bool,
    via_storage: bool,
) -> Outcome:
    """Decide what to do with a response to ``GET blob`` for bytes ``[start, end)`` of *size*.

    *ranged* says whether a Range header was sent; *via_storage* whether the URL was a
    storage/CDN location we were redirected to (whose refusals mean "expired").
    """
    if status == 206:
        cr = parse_content_range(headers.get("content-range", ""))
        if cr is None:
            return Fail(f"206 with a malformed Content-Range {headers.get('content-range')!r}", status)
        got_start, got_end, total = cr
        if total is not None and total != size:
            return Fail(f"the server says the blob has {total} bytes; the manifest says {size}", status)
        if got_start != start or got_end > size:
            return Fail(f"asked for bytes {start}-{end - 1}, got {got_start}-{got_end - 1}", status)
        return Accept()
    if status == 200:
        length = headers.get("content-length")
        digits = length is not None and length.isascii() and length.isdigit()
        if length is not None and digits and (len(length) > 20 or int(length) != size):
            return Fail(f"Content-Length is {length[:24]}; the manifest says {size} bytes", status)
        if ranged and start > 0:
            return Ignored()
        return Accept()
    if status in (301, 302, 303, 307, 308):
        location = headers.get("location")
        if not location:
            return Fail(f"{status} redirect without a Location header", status)
        if not _http_location(location):
            shown = location.split("?", 1)[0][:100]  # a signed URL's query is a key: never in a message
            return Fail(f"{status} redirect to {shown!r}, which is not an http(s) URL", status)
        return Redirect(location)
    if status == 416:
        return Fail(f"416 range not satisfiable for bytes {start}-{end - 1} of {size}", status)
    if status in (408, 425, 429, 500, 502, 503, 504):
        return Retry(f"HTTP {status}", parse_retry_after(headers.get("retry-after")))
    if via_storage and status in (400, 401, 403, 404, 410):
        return Expired(f"storage answered HTTP {status}")
    return Fail(f"unexpected HTTP {status}", status)
