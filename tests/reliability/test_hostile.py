"""Hostile input: names, manifests, range headers, resume state and models directories built to hurt.

The promise checked here: whatever the input, the only exceptions are the documented
:class:`~ollama_seed.SeedError` hierarchy, and nothing is written outside the models directory.
Property tests use hypothesis (derandomized, so CI runs are reproducible).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ollama_seed
from ollama_seed import (
    InsufficientSpace,
    InvalidName,
    Manifest,
    ModelName,
    RegistryProtocolError,
    SeedError,
    StoreError,
)
from ollama_seed.core.layout import ModelsLayout
from ollama_seed.core.manifest import MAX_BLOB_SIZE
from ollama_seed.core.plan import STATE_HEADER, STATE_MAGIC, BlobPlan
from ollama_seed.core.ranges import (
    Accept,
    Expired,
    Fail,
    Ignored,
    Redirect,
    Retry,
    classify,
    parse_content_range,
    parse_retry_after,
)
from tests.support import MIB
from tests.support.fake_registry import FakeRegistry, Faults
from tests.support.invariants import assert_store_ok, outside_snapshot, tree
from tests.support.model import MT_MODEL, BlobInfo, BuiltModel, make_model, sha256_digest

with warnings.catch_warnings():
    # hypothesis imports libcst to print a patch when a property fails; on some installs that import warns
    # (mypy_extensions.TypedDict), which filterwarnings=error turns into a pytest INTERNALERROR hiding the
    # failure. Importing it here, quietly, keeps failures readable.
    warnings.simplefilter("ignore")
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

HOST = "reg.test"
NAME = f"{HOST}/library/tiny:latest"
PROPS = settings(
    database=None, deadline=None, derandomize=True, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
E2E = settings(
    database=None,
    deadline=None,
    derandomize=True,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --------------------------------------------------------------------------- model names

NAME_PIECES = [
    "a",
    "Z",
    "0",
    "_",
    "-",
    ".",
    ":",
    "/",
    "@",
    " ",
    "\x00",
    "\n",
    "\\",
    "é",
    "%2e",
    "..",
    "~",
    "sha256:",
    "sha256-",
    "0" * 64,
    "http://",
    "https://",
    "ftp://",
    "localhost:5000",
    "ns",
    "m",
    "tag",
]
name_texts = st.one_of(st.text(max_size=120), st.lists(st.sampled_from(NAME_PIECES), max_size=14).map("".join))


@PROPS
@given(name_texts)
@example("../../etc/passwd")
@example("host/../m:t")
@example("h/ns/m:.")
@example("localhost:5000/ns/model:tag@sha256:" + "0" * 64)
def test_name_parser_refuses_or_yields_safe_path_parts(text: str) -> None:
    try:
        name = ModelName.parse(text)
    except InvalidName as exc:
        problem: InvalidName | None = exc
    else:
        problem = None
    if problem is not None:
        assert isinstance(problem, ValueError) and str(problem)
        return
    parts = name.path_parts
    for part in parts:
        assert part and part not in (".", "..") and not part.startswith(".")
        assert not any(c in part for c in "/\\\x00\n")
    root = Path("/models")
    target = ModelsLayout(root).manifest(name)
    assert os.path.normpath(target) == str(target)
    assert target.relative_to(root / "manifests").parts == parts
    # the canonical forms parse back to the same name
    assert ModelName.parse(str(name)) == replace(name, scheme="https")
    assert ModelName.parse(name.display) == replace(name, scheme="https", digest=None)


# --------------------------------------------------------------------------- manifests

HEXES = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
digest_values = st.one_of(
    HEXES.map(lambda h: f"sha256:{h}"),
    HEXES.map(lambda h: f"sha256-{h}"),
    HEXES.map(lambda h: f"sha256:{h.upper()}"),
    HEXES.map(lambda h: f"sha512:{h}{h}"),
    HEXES.map(lambda h: f"sha256:{h[:-2]}/.."),
    st.sampled_from(
        [
            "sha256:../../../etc/passwd",
            "sha256:",
            "",
            "sha256:" + "0" * 63,
            "/etc/passwd",
            "sha256:" + "a" * 64 + "\x00",
            "..\\..\\x",
        ]
    ),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
size_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, MAX_BLOB_SIZE, MAX_BLOB_SIZE + 1]),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
)
media_values = st.one_of(
    st.sampled_from(
        [
            MT_MODEL,
            "application/vnd.ollama.image.license",
            "../../x",
            "a/b\x00c",
            "x" * 300,
            "application/vnd.oci.image.index.v1+json",
        ]
    ),
    st.text(max_size=20),
    st.integers(),
    st.none(),
)
layer_objs = st.one_of(
    st.fixed_dictionaries({"mediaType": media_values, "digest": digest_values, "size": size_values}),
    st.fixed_dictionaries({"digest": digest_values, "size": size_values}),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    st.text(max_size=5),
    st.none(),
)
manifest_docs = st.fixed_dictionaries(
    {"schemaVersion": st.sampled_from([2, 2.0, "2", 1, None, True])},
    optional={
        "mediaType": media_values,
        "config": layer_objs,
        "layers": st.one_of(
            st.lists(layer_objs, max_size=6),
            st.text(max_size=4),
            st.none(),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
    },
)


def _check_parsed(m: Manifest, raw: bytes) -> None:
    assert m.raw == raw
    assert m.digest.hex == hashlib.sha256(raw).hexdigest()
    sizes: dict[str, int] = {}
    blobs = ModelsLayout(Path("/models")).blobs_dir
    for layer in (*m.layers, *([m.config] if m.config else [])):
        assert len(layer.digest.hex) == 64 and set(layer.digest.hex) <= set("0123456789abcdef")
        assert isinstance(layer.size, int) and 0 <= layer.size <= MAX_BLOB_SIZE
        assert sizes.setdefault(layer.digest.hex, layer.size) == layer.size
        assert ModelsLayout(Path("/models")).blob(layer.digest).parent == blobs
    assert len({b.digest for b in m.blobs}) == len(m.blobs)


@PROPS
@given(st.binary(max_size=400))
@example(b"[" * 100_000)
@example(b'{"schemaVersion": 2, "layers": [' + b"1" * 5000 + b"]}")
@example(b"\xff\xfe{\x00")
def test_manifest_parser_on_any_bytes(raw: bytes) -> None:
    try:
        m = Manifest.parse(raw)
    except RegistryProtocolError as exc:
        message = str(exc)
    else:
        _check_parsed(m, raw)
        return
    assert "not a valid Ollama manifest" in message


@PROPS
@given(manifest_docs)
def test_manifest_parser_on_hostile_fields(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    try:
        m = Manifest.parse(raw)
    except RegistryProtocolError:
        return
    _check_parsed(m, raw)


# --------------------------------------------------------------------------- Range, Content-Range, Retry-After


def _num() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(min_value=0, max_value=2**66).map(str), st.sampled_from(["-1", "1e3", "²", "١٢", "*"]))


content_ranges = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda sp, a, b, t: f"bytes{sp}{a}-{b}/{t}",
        st.sampled_from([" ", "  ", "\t", "", "=", " \u00a0"]),
        _num(),
        _num(),
        _num(),
    ),
)


@PROPS
@given(content_ranges)
@example("bytes 0-1/" + "9" * 5000)
@example("bytes " + "1" * 5000 + "-2/3")
def test_content_range_parser(value: str) -> None:
    got = parse_content_range(value)
    if got is not None:
        start, end, total = got
        assert 0 <= start < end
        assert total is None or end <= total


retry_afters = st.one_of(
    st.text(max_size=40),
    _num(),
    st.sampled_from(
        [
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Mon, 01 Jan 0000 00:00:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 +9999",
            "Thu, 01 Jan 1970 00:00:00 -0000",
            "Sun, 06 Nov 1994 08:49:37",
            "1" * 5000,
            " 12 ",
            "0x10",
        ]
    ),
)


@PROPS
@given(retry_afters)
@example("²")
def test_retry_after_parser(value: str) -> None:
    got = parse_retry_after(value)
    assert got is None or 0.0 <= got <= 300.0


header_values = st.one_of(content_ranges, _num(), st.text(max_size=30), st.sampled_from(["9" * 5000, "²"]))


@st.composite
def blob_requests(draw: st.DrawFn) -> tuple[int, dict[str, str], int, int, int, bool, bool]:
    size = draw(st.integers(min_value=1, max_value=2**40))
    start = draw(st.integers(min_value=0, max_value=size - 1))
    end = draw(st.integers(min_value=start + 1, max_value=size))
    status = draw(
        st.one_of(
            st.sampled_from([200, 206, 301, 302, 307, 308, 401, 403, 404, 410, 416, 429, 503]),
            st.integers(min_value=100, max_value=599),
        )
    )
    keys = st.sampled_from(["content-range", "content-length", "location", "retry-after"])
    headers = draw(st.dictionaries(keys, header_values, max_size=4))
    return status, headers, start, end, size, draw(st.booleans()), draw(st.booleans())


@PROPS
@given(blob_requests())
def test_classify_never_raises_and_accepts_only_the_asked_bytes(
    req: tuple[int, dict[str, str], int, int, int, bool, bool],
) -> None:
    status, headers, start, end, size, ranged, via_storage = req
    outcome = classify(status, headers, start=start, end=end, size=size, ranged=ranged, via_storage=via_storage)
    assert isinstance(outcome, (Accept, Ignored, Redirect, Retry, Expired, Fail))
    if isinstance(outcome, Accept):
        assert status in (200, 206)
        if status == 206:
            cr = parse_content_range(headers["content-range"])
            assert cr is not None and cr[0] == start and cr[1] <= size and cr[2] in (None, size)
        else:
            assert start == 0 or not ranged
    if isinstance(outcome, Retry):
        assert outcome.after is None or 0 <= outcome.after <= 300


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (503, {"retry-after": "²"}),
        (200, {"content-length": "²"}),
        (200, {"content-length": "9" * 5000}),
        (206, {"content-range": "bytes 0-9/" + "1" * 5000}),
    ],
    ids=["superscript-retry-after", "superscript-length", "5000-digit-length", "5000-digit-content-range"],
)
def test_header_values_int_refuses_do_not_escape(status: int, headers: dict[str, str]) -> None:
    """Regression: str.isdigit() accepts '²' and int() refuses > 4300 digits; both escaped as ValueError."""
    outcome = classify(status, headers, start=0, end=10, size=10, ranged=True, via_storage=False)
    assert isinstance(outcome, (Retry, Fail, Accept))
    if status == 200 and headers["content-length"].isascii():
        assert isinstance(outcome, Fail)


# --------------------------------------------------------------------------- resume state


@st.composite
def state_files(draw: st.DrawFn) -> tuple[bytes, str, int]:
    hexd = draw(HEXES)
    size = draw(st.integers(min_value=0, max_value=2**24))  # small: a regression must not eat the machine's memory
    if draw(st.booleans()):
        return draw(st.binary(max_size=200)), hexd, size
    ps = draw(st.one_of(st.integers(min_value=0, max_value=2**64 - 1), st.sampled_from([1, MIB, 64 * MIB])))
    pieces = draw(st.one_of(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=8)))
    done = draw(st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=8))
    head = STATE_MAGIC + struct.pack("<QQQ", draw(st.sampled_from([size, size + 1])), ps, pieces)
    digest = bytes.fromhex(hexd if draw(st.booleans()) else draw(HEXES))
    boot = draw(st.binary(min_size=16, max_size=16))
    synced = draw(st.one_of(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=0, max_value=size)))
    watermark = struct.pack("<Q", synced)
    return head + digest + boot + watermark + struct.pack(f"<{len(done)}Q", *done), hexd, size


@PROPS
@given(state_files())
def test_resume_state_is_trusted_only_when_it_proves_itself(case: tuple[bytes, str, int]) -> None:
    raw, hexd, size = case
    plan = BlobPlan.from_state(raw, digest_hex=hexd, size=size)
    if plan is not None:
        assert plan.size == size and len(raw) == STATE_HEADER + 8 * plan.pieces
        assert all(0 <= d <= plan.piece_len(i) for i, d in enumerate(plan.done))
        assert plan.completed <= size and plan.synced <= size
        after_reboot = BlobPlan.from_state(raw, digest_hex=hexd, size=size, boot_id=b"another boot".ljust(16, b"\0"))
        assert after_reboot is not None and after_reboot.frontier == after_reboot.completed == plan.synced


def test_resume_state_with_a_tiny_piece_size_is_refused_before_allocating() -> None:
    """Regression: piece size 1 for a 1 PiB blob made from_state build a 2**50-entry list (MemoryError)."""
    hexd = "ab" * 32
    raw = (
        STATE_MAGIC + struct.pack("<QQQ", MAX_BLOB_SIZE, 1, 1) + bytes.fromhex(hexd) + bytes(24) + struct.pack("<Q", 0)
    )
    assert BlobPlan.from_state(raw, digest_hex=hexd, size=MAX_BLOB_SIZE) is None


# --------------------------------------------------------------------------- hostile registries, end to end


@dataclass
class RawModel:
    """What FakeRegistry.add needs, for manifests that make_model would never build."""

    manifest: bytes
    blobs: list[BlobInfo]

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)


def serve(manifest: bytes, blobs: dict[str, bytes] | None = None, faults: Faults | None = None) -> FakeRegistry:
    reg = FakeRegistry(faults)
    infos = [BlobInfo(f"sha256:{h}", len(data), MT_MODEL, data) for h, data in (blobs or {}).items()]
    reg.add("library/tiny", "latest", RawModel(manifest, infos))  # type: ignore[arg-type]
    return reg


def layer(data: bytes, size: int | None = None, digest: str | None = None) -> dict[str, Any]:
    return {"mediaType": MT_MODEL, "digest": digest or sha256_digest(data), "size": len(data) if size is None else size}


def manifest_bytes(*layers: dict[str, Any], config: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "layers": list(layers),
    }
    if config is not None:
        doc["config"] = config
    return json.dumps(doc).encode()


@pytest.fixture
def store_with_a_model(tmp_path: Path) -> Path:
    """A models directory that already holds one model, which every failure must leave alone."""
    root = tmp_path / "models"
    make_model(size_bytes=3000, seed=9).expected_store(root, HOST, "library/kept", "v1")
    return root


GOOD = b"good blob bytes"
HOSTILE_MANIFESTS = {
    "uppercase-digest": manifest_bytes(layer(GOOD, digest=sha256_digest(GOOD).upper())),
    "sha512-digest": manifest_bytes(layer(GOOD, digest="sha512:" + "a" * 128)),
    "traversal-digest": manifest_bytes(layer(GOOD, digest="sha256:../../../../tmp/owned")),
    "slash-in-digest": manifest_bytes(layer(GOOD, digest="sha256:" + "a" * 30 + "/" + "a" * 33)),
    "negative-size": manifest_bytes(layer(GOOD, size=-1)),
    "absurd-size": manifest_bytes(layer(GOOD, size=2**63)),
    "string-size": manifest_bytes({**layer(GOOD), "size": "15"}),
    "float-size": manifest_bytes({**layer(GOOD), "size": 15.0}),
    "bool-size": manifest_bytes({**layer(GOOD), "size": True}),
    "duplicate-with-two-sizes": manifest_bytes(layer(GOOD), layer(GOOD, size=len(GOOD) + 1)),
    "nul-in-media-type": manifest_bytes({**layer(GOOD), "mediaType": "a\x00b"}),
    "index-not-manifest": json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}
    ).encode(),
    "schema-1": json.dumps({"schemaVersion": 1, "layers": []}).encode(),
    "deeply-nested": b"[" * 50_000 + b"]" * 50_000,
    "not-json": b"\x89PNG\r\n",
    "too-large": b'{"schemaVersion":2,"layers":[],"pad":"' + b"x" * (5 * MIB) + b'"}',
}


@pytest.mark.parametrize("raw", list(HOSTILE_MANIFESTS.values()), ids=list(HOSTILE_MANIFESTS))
def test_hostile_manifest_is_refused_and_the_store_untouched(
    raw: bytes, store_with_a_model: Path, tmp_path: Path
) -> None:
    reg = serve(raw, {hashlib.sha256(GOOD).hexdigest(): GOOD})
    before, outside = tree(store_with_a_model), outside_snapshot(tmp_path, store_with_a_model)
    with pytest.raises(RegistryProtocolError) as info:
        ollama_seed.pull(NAME, models_dir=store_with_a_model, transport=reg.transport())
    assert info.value.exit_code == 4
    assert "manifest" in str(info.value)
    assert reg.blob_requests() == []
    assert tree(store_with_a_model) == before
    assert outside_snapshot(tmp_path, store_with_a_model) == outside
    assert_store_ok(store_with_a_model)


def test_path_characters_in_media_type_are_only_labels(models_dir: Path, tmp_path: Path) -> None:
    raw = manifest_bytes({**layer(GOOD), "mediaType": "../../../../outside"})
    reg = serve(raw, {hashlib.sha256(GOOD).hexdigest(): GOOD})
    outside = outside_snapshot(tmp_path, models_dir)
    ollama_seed.pull(NAME, models_dir=models_dir, transport=reg.transport())
    assert (models_dir / "blobs" / f"sha256-{hashlib.sha256(GOOD).hexdigest()}").read_bytes() == GOOD
    assert outside_snapshot(tmp_path, models_dir) == outside
    assert_store_ok(models_dir)


def test_a_petabyte_layer_fails_the_space_check_before_any_request(store_with_a_model: Path) -> None:
    raw = manifest_bytes(layer(GOOD, size=MAX_BLOB_SIZE))
    reg = serve(raw, {hashlib.sha256(GOOD).hexdigest(): GOOD})
    before = tree(store_with_a_model)
    with pytest.raises(InsufficientSpace, match="not enough disk space"):
        ollama_seed.pull(NAME, models_dir=store_with_a_model, transport=reg.transport())
    assert reg.blob_requests() == []
    assert tree(store_with_a_model) == before


@pytest.mark.parametrize("declared", [len(GOOD) - 1, len(GOOD) + 1, 0, 1], ids=["smaller", "larger", "zero", "one"])
def test_a_size_that_lies_is_caught_and_nothing_installed(declared: int, store_with_a_model: Path) -> None:
    raw = manifest_bytes(layer(GOOD, size=declared))
    reg = serve(raw, {hashlib.sha256(GOOD).hexdigest(): GOOD})
    before = tree(store_with_a_model)
    with pytest.raises(SeedError) as info:
        ollama_seed.pull(NAME, models_dir=store_with_a_model, transport=reg.transport())
    assert info.value.exit_code in (4, 5)
    assert tree(store_with_a_model) == before
    assert_store_ok(store_with_a_model)


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (503, [("Retry-After", b"\xb2")]),
        (200, [("Content-Length", b"\xb2")]),
        (206, [("Content-Range", b"bytes 0-14/" + b"1" * 5000)]),
        (307, [("Location", b"file:///etc/passwd")]),
        (307, [("Location", b"http://[::1")]),
        (206, [("Content-Range", b"bytes 0-14/15\xff")]),
    ],
    ids=["latin1-retry-after", "latin1-length", "5000-digit-total", "file-redirect", "broken-redirect", "junk-range"],
)
def test_hostile_response_headers_end_in_a_seed_error_or_success(
    status: int, headers: list[tuple[str, bytes]], models_dir: Path
) -> None:
    """Every blob GET is answered once with these headers, then honestly."""
    m = make_model(size_bytes=1000)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", m)
    hit: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if "/blobs/" in request.url.path and request.url.path not in hit:
            hit.append(request.url.path)
            raw = [(k.encode("latin-1"), v) for k, v in headers]
            return httpx.Response(status, headers=raw, content=b"x" if status != 307 else b"")
        return await reg.handle(request)

    from ollama_seed.pulling.session import PullSession
    from ollama_seed.store.store import ModelStore
    from ollama_seed.wire.transfer import TransferConfig

    async def go() -> None:
        cfg = TransferConfig(connections=2, max_attempts=3, sleep=lambda s: None)
        async with PullSession(ModelStore(models_dir), transport=httpx.MockTransport(handler), transfer=cfg) as s:
            await s.pull(ModelName.parse(NAME))

    import anyio

    with contextlib.suppress(SeedError):
        anyio.run(go)
    assert hit
    assert_store_ok(models_dir)


blob_payloads = st.sampled_from([b"", b"x", GOOD, bytes(range(256)) * 40])


@st.composite
def hostile_pulls(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes]]:
    """A manifest whose layers mix honest, lying and malformed descriptors, and the blobs served."""
    served: dict[str, bytes] = {}
    layers: list[Any] = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        data = draw(blob_payloads)
        hexd = hashlib.sha256(data).hexdigest()
        kind = draw(st.sampled_from(["honest", "honest", "size-lie", "digest-lie", "junk"]))
        if kind == "junk":
            layers.append(draw(layer_objs))
            continue
        size = len(data) if kind != "size-lie" else draw(st.integers(min_value=0, max_value=len(data) + 3))
        digest = hexd if kind != "digest-lie" else draw(HEXES)
        served[digest] = data
        layers.append({"mediaType": MT_MODEL, "digest": f"sha256:{digest}", "size": size})
    config = draw(st.one_of(st.none(), layer_objs))
    doc: dict[str, Any] = {"schemaVersion": 2, "layers": layers}
    if config is not None:
        doc["config"] = config
    return json.dumps(doc).encode(), served


@E2E
@given(hostile_pulls())
def test_any_pull_ends_in_success_or_a_seed_error_and_writes_only_inside(case: tuple[bytes, dict[str, bytes]]) -> None:
    raw, served = case
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        models = base / "models"
        (base / "outside").mkdir()
        (base / "outside" / "keep").write_bytes(b"keep")
        outside = outside_snapshot(base, models)
        reg = serve(raw, served)
        try:
            ollama_seed.pull(NAME, models_dir=models, transport=reg.transport())
        except SeedError:
            assert not any((models / "manifests").rglob("latest")) if (models / "manifests").exists() else True
        else:
            assert (models / "manifests" / HOST / "library" / "tiny" / "latest").read_bytes() == raw
        assert outside_snapshot(base, models) == outside
        assert_store_ok(models)


# --------------------------------------------------------------------------- symlinks in the models directory


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "precious").write_bytes(b"do not touch")
    return d


def _pull_model(models: Path) -> tuple[Any, FakeRegistry]:
    m = make_model(size_bytes=MIB + 5, seed=3)
    reg = FakeRegistry()
    reg.add("library/tiny", "latest", m)
    return m, reg


def _staging(models: Path, hexd: str, suffix: str) -> Path:
    return models / ".ollama-seed" / "staging" / f"sha256-{hexd}{suffix}"


SYMLINK_SPOTS: dict[str, tuple[Callable[[Path, BuiltModel], Path], str, bool | None]] = {
    # where the link is                     : does the pull refuse (StoreError) or carry on safely
    "blobs-dir": (lambda models, m: models / "blobs", "dir", True),
    "state-dir": (lambda models, m: models / ".ollama-seed", "dir", True),
    "staging-dir": (lambda models, m: models / ".ollama-seed" / "staging", "dir", True),
    "tmp-dir": (lambda models, m: models / ".ollama-seed" / "tmp", "dir", True),
    "locks-dir": (lambda models, m: models / ".ollama-seed" / "locks", "dir", True),
    "manifests-host-dir": (lambda models, m: models / "manifests" / HOST, "dir", True),
    "manifest-file": (lambda models, m: models / "manifests" / HOST / "library" / "tiny" / "latest", "file", None),
    "blob-file": (lambda models, m: models / "blobs" / f"sha256-{m.model_layer.hex}", "file", False),
    "staging-data": (lambda models, m: _staging(models, m.model_layer.hex, ".data"), "file", None),
    "staging-state": (lambda models, m: _staging(models, m.model_layer.hex, ".state"), "file", None),
    "lock-file": (
        lambda models, m: models / ".ollama-seed" / "locks" / f"sha256-{m.model_layer.hex}.lock",
        "file",
        None,
    ),
}


@pytest.mark.parametrize("spot", list(SYMLINK_SPOTS))
def test_a_symlink_in_the_store_is_never_written_through(
    spot: str, models_dir: Path, victim: Path, tmp_path: Path
) -> None:
    where, kind, refuses = SYMLINK_SPOTS[spot]
    m, reg = _pull_model(models_dir)
    from ollama_seed.store.store import ModelStore

    ModelStore(models_dir).prepare()
    link = where(models_dir, m)
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    link.symlink_to(victim if kind == "dir" else victim / "precious")
    outside = outside_snapshot(victim, tmp_path / "none")
    try:
        ollama_seed.pull(NAME, models_dir=models_dir, transport=reg.transport())
        message = ""
    except StoreError as exc:
        message = str(exc)
    ok = not message
    assert ok or "link" in message or "symbolic" in message or "Too many levels" in message
    assert outside_snapshot(victim, tmp_path / "none") == outside, f"wrote through the {spot} symlink"
    if refuses is not None:
        assert ok is not refuses
    if ok:  # the link was replaced or bypassed, never followed
        blob = models_dir / "blobs" / f"sha256-{m.model_layer.hex}"
        assert not blob.is_symlink() and blob.is_file()
        assert_store_ok(models_dir)


def test_a_symlinked_models_root_is_followed(tmp_path: Path) -> None:
    """Users move stores to other disks with a link at ~/.ollama/models: that link is fine."""
    real = tmp_path / "bigdisk" / "models"
    real.mkdir(parents=True)
    link = tmp_path / "models"
    link.symlink_to(real)
    m, reg = _pull_model(link)
    ollama_seed.pull(NAME, models_dir=link, transport=reg.transport())
    assert (real / "blobs" / f"sha256-{m.model_layer.hex}").is_file()
    assert_store_ok(real)
