"""Keep secrets out of log output: signed URL queries and Authorization values are masked.

At ``-vv`` httpx logs every request URL and httpcore every response head, which include the
signed storage URLs registries redirect to (``?X-Amz-Signature=...``): short-lived keys to a
blob. :class:`RedactFilter` masks URL queries and Authorization values in every record a
handler formats; the CLI installs it on its log handlers.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactFilter", "redact"]

_URL_QUERY = re.compile(r"(https?://[^\s'\"<>?]*)\?[^\s'\"<>]*", re.IGNORECASE)
_AUTH_VALUE = re.compile(
    r"((?:authorization|bearer|basic)['\"]?\s*[:=,]?\s*['\"]?\s*(?:bearer\s+|basic\s+)?)"
    r"[A-Za-z0-9._~+/=-]{8,}",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """*text* with URL queries replaced by ``?<redacted>`` and Authorization values by ``<redacted>``."""
    return _AUTH_VALUE.sub(r"\1<redacted>", _URL_QUERY.sub(r"\1?<redacted>", text))


class RedactFilter(logging.Filter):
    """A handler filter that rewrites each record's message through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: leave it to the formatter
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
