"""Response classification, Content-Range, Retry-After, backoff, challenges: pure tables."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from ollama_seed.core.auth import parse_challenge, token_url
from ollama_seed.core.ranges import (
    Accept,
    Expired,
    Fail,
    Ignored,
    Redirect,
    Retry,
    backoff,
    classify,
    parse_content_range,
    parse_retry_after,
    range_header,
)
from ollama_seed.wire.throttle import TokenBucket

SIZE = 1000


def c(
    status: int,
    headers: dict[str, str] | None = None,
    *,
    start: int = 100,
    end: int = 200,
    ranged: bool = True,
    via_storage: bool = False,
) -> object:
    return classify(status, headers or {}, start=start, end=end, size=SIZE, ranged=ranged, via_storage=via_storage)


@pytest.mark.parametrize(
    ("status", "headers", "kw", "expected"),
    [
        (206, {"content-range": "bytes 100-199/1000"}, {}, Accept()),
        (206, {"content-range": "bytes 100-999/*"}, {}, Accept()),
        (206, {"content-range": "bytes 0-99/1000"}, {}, Fail("asked for bytes 100-199, got 0-99", 206)),
        (
            206,
            {"content-range": "bytes 100-199/2000"},
            {},
            Fail("the server says the blob has 2000 bytes; the manifest says 1000", 206),
        ),
        (206, {}, {}, Fail("206 with a malformed Content-Range None", 206)),
        (200, {"content-length": "1000"}, {}, Ignored()),
        (200, {"content-length": "1000"}, {"start": 0, "end": 1000}, Accept()),
        (200, {"content-length": "999"}, {}, Fail("Content-Length is 999; the manifest says 1000 bytes", 200)),
        (200, {}, {"ranged": False, "start": 0}, Accept()),
        (307, {"location": "https://cdn/x"}, {}, Redirect("https://cdn/x")),
        (302, {}, {}, Fail("302 redirect without a Location header", 302)),
        (416, {}, {}, Fail("416 range not satisfiable for bytes 100-199 of 1000", 416)),
        (503, {"retry-after": "7"}, {}, Retry("HTTP 503", 7.0)),
        (429, {}, {}, Retry("HTTP 429", None)),
        (500, {}, {}, Retry("HTTP 500", None)),
        (403, {}, {"via_storage": True}, Expired("storage answered HTTP 403")),
        (400, {}, {"via_storage": True}, Expired("storage answered HTTP 400")),
        (403, {}, {}, Fail("unexpected HTTP 403", 403)),
        (404, {}, {}, Fail("unexpected HTTP 404", 404)),
    ],
)
def test_classify(status: int, headers: dict[str, str], kw: dict[str, object], expected: object) -> None:
    assert c(status, headers, **kw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-0/1", (0, 1, 1)),
        ("bytes 5-9/*", (5, 10, None)),
        (" bytes 5-9/10 ", (5, 10, 10)),
        ("bytes 9-5/10", None),
        ("bytes 5-10/10", None),
        ("bytes */10", None),
        ("items 0-1/2", None),
        ("bytes -1-5/10", None),
        ("bytes 1-2/3, 4-5/6", None),
    ],
)
def test_parse_content_range(value: str, expected: tuple[int, int, int | None] | None) -> None:
    assert parse_content_range(value) == expected


def test_range_header_is_inclusive() -> None:
    assert range_header(0, 1) == "bytes=0-0"
    assert range_header(100, 200) == "bytes=100-199"


def test_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("100000") == 300.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        top = min(30.0, 0.5 * 2**attempt)
        value = backoff(attempt, rng=rng)
        assert top / 2 <= value <= top


@pytest.mark.parametrize(
    ("header", "scheme", "realm", "service", "scopes"),
    [
        (
            'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"',
            "bearer",
            "https://auth.example/token",
            "reg",
            ("repository:a/b:pull",),
        ),
        ('bearer realm="https://x/t", scope="a b"', "bearer", "https://x/t", None, ("a", "b")),
        ('Basic realm="Registry Realm"', "basic", "Registry Realm", None, ()),
        ("Bearer realm=https://x/t,service=svc", "bearer", "https://x/t", "svc", ()),
    ],
)
def test_parse_challenge(header: str, scheme: str, realm: str, service: str | None, scopes: tuple[str, ...]) -> None:
    ch = parse_challenge(header)
    assert ch is not None
    assert (ch.scheme, ch.realm, ch.service, ch.scopes) == (scheme, realm, service, scopes)


@pytest.mark.parametrize("header", [None, "", "Negotiate abc", "Bearer service=x"])
def test_unusable_challenges(header: str | None) -> None:
    assert parse_challenge(header) is None


def test_token_url_keeps_realm_query() -> None:
    ch = parse_challenge('Bearer realm="https://auth/t?x=1",service="s"')
    assert ch is not None
    assert token_url(ch, "repository:n/m:pull") == "https://auth/t?x=1&service=s&scope=repository%3An%2Fm%3Apull"


def test_token_bucket_delays_to_hold_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(1000.0, burst=100.0, clock=lambda: now[0])
    assert bucket.reserve(100) == 0.0
    assert bucket.reserve(500) == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.reserve(0) == 0.0
    now[0] = 10.0
    assert bucket.reserve(100) == 0.0  # refill is capped at the burst
    assert bucket.reserve(100) == pytest.approx(0.1)
