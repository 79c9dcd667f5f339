"""Hostile requests to the mirror, generated: no spelling of a path or Range header leaves the store or breaks it.

Complements ``tests/mirror/test_app.py`` (a table of URL spellings) with hypothesis: raw request
paths assembled from dangerous pieces and arbitrary Range headers, sent straight to the ASGI
app. Every answer is a registry-shaped refusal or exactly the bytes of a file in the store;
never a 500, never an exception, never a byte of a file outside the store.
"""

from __future__ import annotations

import contextlib
import json
import warnings

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ollama_seed.core.ranges import RangeNotSatisfiable
from ollama_seed.mirror.app import MirrorApp, parse_range
from ollama_seed.store.store import ModelStore
from tests.support import SECRET
from tests.support.asgi import raw_asgi_call
from tests.support.model import make_model

with warnings.catch_warnings():  # see reliability/test_hostile.py: keep hypothesis failure reports readable
    warnings.simplefilter("ignore")
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

PROPS = settings(
    database=None, deadline=None, derandomize=True, max_examples=400, suppress_health_check=[HealthCheck.too_slow]
)
MODEL = make_model(size_bytes=5000, seed=61)
SIZE = MODEL.model_layer.size


def _reply_status(exc: BaseException) -> int | None:
    if isinstance(exc, RangeNotSatisfiable):  # the app answers it 416
        return 416
    return getattr(exc, "status", None)


range_values = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda u, a, b: f"{u}={a}-{b}",
        st.sampled_from(["bytes", "BYTES", " bytes ", "items", ""]),
        st.one_of(
            st.integers(min_value=0, max_value=2**70).map(str),
            st.sampled_from(["", "-1", "0x1", "+1", "\u00b2", "\u0661\u0662"]),
        ),
        st.one_of(
            st.integers(min_value=0, max_value=2**70).map(str), st.sampled_from(["", " 5", "1_0", "\u00b2", "\u0661"])
        ),
    ),
)


@PROPS
@given(range_values, st.integers(min_value=0, max_value=2**40))
@example("bytes=0-" + "9" * 5000, 100)
@example("bytes=-0", 100)
@example("bytes=\u00b2-", 100)
@example("bytes=-\u00b2", 100)
def test_range_parser_answers_none_a_range_or_416(header: str, size: int) -> None:
    try:
        got = parse_range(header, size)
    except Exception as exc:  # the only refusal allowed is the app's own 416 reply
        refusal: Exception | None = exc
    else:
        refusal = None
    if refusal is not None:
        assert _reply_status(refusal) == 416, repr(refusal)
        return
    if got is not None:
        start, end = got
        assert 0 <= start < end <= size


PIECES = [
    b"/v2",
    b"/",
    b"//",
    b"library",
    b"tiny",
    b"manifests",
    b"blobs",
    b"latest",
    b"tags",
    b"list",
    b"_catalog",
    b"registry.ollama.ai",
    b"..",
    b".",
    b"%2e%2e",
    b"%2f",
    b"%252e",
    b"%00",
    b"\\",
    b"secret.txt",
    MODEL.model_layer.digest.encode(),
    b"sha256:",
    b"sha256-" + MODEL.model_layer.hex.encode(),
    b"%c0%ae",
    b"?",
    b"#",
    b"\xff",
    b"~",
    b" ",
]
raw_paths = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=10).map(b"".join), st.binary(max_size=80).map(lambda b: b"/" + b)
)


def _header_bytes(text: str) -> bytes:
    """Header bytes as a client would send them: latin-1 when possible (what ASGI servers decode), else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


class _Files(tuple[bytes, ...]):
    """The store's file contents (a short repr keeps hypothesis reports readable)."""

    def __repr__(self) -> str:
        return f"<{len(self)} store files>"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[MirrorApp, _Files]:
    base = tmp_path_factory.mktemp("mirror")
    store = base / "store"
    MODEL.expected_store(store, "registry.ollama.ai", "library/tiny", "latest")
    (base / "secret.txt").write_bytes(SECRET)
    (store / "secret.txt").symlink_to(base / "secret.txt")
    return MirrorApp(ModelStore(store)), _Files(
        p.read_bytes() for p in store.rglob("*") if p.is_file() and not p.is_symlink()
    )


@PROPS
@given(raw_paths, st.sampled_from(["GET", "HEAD", "GET", "PUT", "DELETE"]), st.one_of(st.none(), range_values))
@example(b"/v2/library/tiny/blobs/" + MODEL.model_layer.digest.encode(), "GET", "bytes=10-20")
@example(b"/v2/library/tiny/blobs/" + MODEL.model_layer.digest.encode(), "GET", "bytes=99999-")
def test_any_request_is_refused_cleanly_or_served_from_the_store(
    mirror: tuple[MirrorApp, _Files], raw_path: bytes, method: str, range_header: str | None
) -> None:
    app, files = mirror
    headers = [(b"range", _header_bytes(range_header))] if range_header is not None else []
    status, _headers, body = anyio.run(raw_asgi_call, app, raw_path, method, headers)
    assert status in (200, 206, 307, 400, 404, 405, 414, 416), (status, body[:200])
    assert SECRET not in body
    if status in (200, 206) and method == "GET" and b"/blobs/" in raw_path:
        assert any(body in whole for whole in files), "served bytes that are not a slice of a file in the store"
    if status >= 400 and method != "HEAD":
        assert json.loads(body)["errors"][0]["code"]


def test_the_store_is_really_served(mirror: tuple[MirrorApp, _Files]) -> None:
    """The baseline the property relies on: an honest ranged GET gets the right bytes."""
    app, _ = mirror
    path = f"/v2/library/tiny/blobs/{MODEL.model_layer.digest}".encode()
    status, _headers, body = anyio.run(raw_asgi_call, app, path, "GET", [(b"range", b"bytes=10-19")])
    assert status == 206
    assert body == MODEL.model_layer.read_bytes()[10:20]


@pytest.mark.parametrize("header", [b"bytes=\xb2-", b"bytes=-\xb2", b"bytes=1-\xb2"])
def test_non_ascii_digits_in_a_range_are_not_a_500(mirror: tuple[MirrorApp, _Files], header: bytes) -> None:
    """Regression (found by the property above, fixed in the mirror): str.isdigit() accepted '\u00b2' (the latin-1
    byte 0xB2), int() refused it, and the request got a 500."""
    app, _ = mirror
    path = f"/v2/library/tiny/blobs/{MODEL.model_layer.digest}".encode()
    status, _headers, _body = anyio.run(raw_asgi_call, app, path, "GET", [(b"range", header)])
    assert status in (200, 416)  # a malformed Range is ignored (RFC 9110), never an internal error
