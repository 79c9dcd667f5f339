"""The mirror's Prometheus metrics (``/metrics``, text format, via ``prometheus-client``).

Each :class:`MirrorMetrics` has a registry of its own, so two mirrors in one process (tests,
an embedding application) do not share counters. Names::

    ollama_seed_mirror_requests_total{route,method,status}   requests answered
    ollama_seed_mirror_response_bytes_total{route}           body bytes sent
    ollama_seed_mirror_request_duration_seconds{route}       time to the last byte (histogram)
    ollama_seed_mirror_requests_in_flight                    requests being answered now
    ollama_seed_mirror_pullthrough_total{kind,result}        manifest/blob requests: hit (from the store) or miss
    ollama_seed_mirror_upstream_bytes_total                  bytes fetched from the upstream
    ollama_seed_mirror_upstream_errors_total{kind}           upstream fetches that failed
    ollama_seed_mirror_upstream_downloads_active             upstream fetches running now
    ollama_seed_mirror_cache_bytes                           bytes of blobs in the store
    ollama_seed_mirror_cache_limit_bytes                     --max-cache-size (absent without one)
    ollama_seed_mirror_evictions_total                       models evicted to stay under the limit
    ollama_seed_mirror_evicted_bytes_total                   blob bytes those evictions freed
    ollama_seed_mirror_auth_failures_total{reason}           refused logins

A request that had to wait for the upstream counts as a miss: the cache marks the request it
serves through :func:`note_miss`, which the ASGI layer reads back when it counts the request.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "MirrorMetrics", "RequestNote", "note_miss"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_PREFIX = "ollama_seed_mirror"


@dataclass(slots=True)
class RequestNote:
    """What the layers below the ASGI wrapper learned about the request being answered."""

    miss: bool = False


_CURRENT: contextvars.ContextVar[RequestNote | None] = contextvars.ContextVar(
    "ollama_seed_mirror_request", default=None
)


def begin_request() -> tuple[RequestNote, contextvars.Token[RequestNote | None]]:
    note = RequestNote()
    return note, _CURRENT.set(note)


def end_request(token: contextvars.Token[RequestNote | None]) -> None:
    _CURRENT.reset(token)


def note_miss() -> None:
    """Mark the request being answered as a pull-through miss (it waited for the upstream)."""
    note = _CURRENT.get()
    if note is not None:
        note.miss = True


class MirrorMetrics:
    """The counters and gauges of one mirror, and their text exposition."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{_PREFIX}_requests",
            "Requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.response_bytes = Counter(
            f"{_PREFIX}_response_bytes", "Response body bytes sent, by route.", ["route"], registry=r
        )
        self.duration = Histogram(
            f"{_PREFIX}_request_duration_seconds",
            "Time from request to last byte.",
            ["route"],
            registry=r,
            buckets=(0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 300, 1800),
        )
        self.in_flight = Gauge(f"{_PREFIX}_requests_in_flight", "Requests being answered now.", registry=r)
        self.pullthrough = Counter(
            f"{_PREFIX}_pullthrough",
            "Manifest and blob requests answered from the store (hit) or after fetching from the upstream (miss).",
            ["kind", "result"],
            registry=r,
        )
        self.upstream_bytes = Counter(f"{_PREFIX}_upstream_bytes", "Bytes fetched from the upstream.", registry=r)
        self.upstream_errors = Counter(
            f"{_PREFIX}_upstream_errors", "Upstream fetches that failed.", ["kind"], registry=r
        )
        self.downloads = Gauge(f"{_PREFIX}_upstream_downloads_active", "Upstream fetches running now.", registry=r)
        self.cache_bytes = Gauge(f"{_PREFIX}_cache_bytes", "Bytes of blobs in the served store.", registry=r)
        self.cache_limit = Gauge(f"{_PREFIX}_cache_limit_bytes", "The --max-cache-size limit.", registry=r)
        self.evictions = Counter(f"{_PREFIX}_evictions", "Models evicted to stay under the cache limit.", registry=r)
        self.evicted_bytes = Counter(f"{_PREFIX}_evicted_bytes", "Blob bytes freed by evictions.", registry=r)
        self.auth_failures = Counter(f"{_PREFIX}_auth_failures", "Refused logins, by reason.", ["reason"], registry=r)

    def watch_cache(self, size: Callable[[], float], limit: int | None) -> None:
        """Report *size()* as the cache size at each scrape, and *limit* as the limit."""
        self.cache_bytes.set_function(size)
        if limit is not None:
            self.cache_limit.set(limit)

    def render(self) -> bytes:
        return generate_latest(self.registry)
