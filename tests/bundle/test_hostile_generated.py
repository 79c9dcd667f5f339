"""Hostile bundles, generated: the bundle reader raises only SeedErrors and never writes outside the store.

Complements ``tests/bundle/test_hostile.py`` (a table of crafted bundles) with hypothesis:
arbitrary member names, arbitrary index documents, and honest bundles mutated at random (bytes
flipped, cut short, hostile members spliced in, zstd-wrapped). Whatever the bytes, the import
either installs verified models or raises a :class:`~ollama_seed.SeedError`; the model already
in the store survives byte for byte, nothing outside the store changes, and the store
invariants hold.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ollama_seed import BundleError, SeedError, import_bundle
from ollama_seed.bundle.format.index import BundleIndex
from ollama_seed.bundle.format.names import INDEX_MEMBER, MemberKind, classify_member
from tests.support.craft import bundle_members, install, join, member, models, zstd
from tests.support.invariants import assert_store_ok, outside_snapshot, tree
from tests.support.model import make_model

with warnings.catch_warnings():  # see reliability/test_hostile.py: keep hypothesis failure reports readable
    warnings.simplefilter("ignore")
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

PROPS = settings(
    database=None, deadline=None, derandomize=True, max_examples=400, suppress_health_check=[HealthCheck.too_slow]
)
E2E = settings(
    database=None,
    deadline=None,
    derandomize=True,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PIECES = [
    "blobs",
    "manifests",
    ".ollama-seed",
    "bundle.json",
    "sha256-" + "ab" * 32,
    "sha256",
    "ab" * 32,
    "..",
    ".",
    "",
    "/",
    "//",
    "./",
    "\\",
    "\x00",
    "host",
    "ns",
    "m",
    "t",
    "registry.ollama.ai",
    "library",
    "etc",
    "passwd",
    "oci-layout",
    "index.json",
    "é",
    " ",
    "~",
    ":",
]
member_names = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(PIECES), max_size=8).map("/".join),
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
)


@PROPS
@given(member_names, st.booleans())
@example("blobs/../../etc/passwd", False)
@example("manifests/h/ns/m/../../../../x", False)
@example("./manifests/h/ns/m/t", False)
@example("/etc/passwd", False)
@example("blobs/sha256-" + "ab" * 32 + "/", True)
def test_member_names_are_refused_or_stay_inside_the_store(raw: str, is_dir: bool) -> None:
    try:
        ref = classify_member(raw, is_dir=is_dir)
    except BundleError:
        return
    store = "/store"
    target = os.path.normpath(os.path.join(store, ref.path))
    assert target == store or target.startswith(store + "/"), (raw, ref)
    assert ".." not in ref.path.split("/")
    if ref.kind is MemberKind.BLOB:
        assert ref.digest is not None and ref.path == f"blobs/{ref.digest.filename}"
    if ref.kind is MemberKind.MANIFEST:
        assert ref.name is not None and ref.path == "manifests/" + "/".join(ref.name.path_parts)
    if ref.kind is MemberKind.INDEX:
        assert ref.path == INDEX_MEMBER


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
HEX = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
index_docs = st.fixed_dictionaries(
    {
        "format": st.sampled_from(["ollama-seed-bundle", "other", 1]),
        "version": st.sampled_from([1, 2, 0, -1, True, "1", None, 1.0]),
    },
    optional={
        "models": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.one_of(
                        st.sampled_from(["m:latest", "../../x", "h/ns/m:t@sha256:" + "0" * 64]), json_values
                    ),
                    "manifest": st.one_of(
                        st.fixed_dictionaries(
                            {
                                "digest": st.one_of(HEX.map(lambda h: f"sha256:{h}"), json_values),
                                "size": st.one_of(st.integers(), json_values),
                                "path": st.one_of(
                                    st.sampled_from(
                                        ["manifests/registry.ollama.ai/library/m/latest", "../../../etc/passwd"]
                                    ),
                                    json_values,
                                ),
                            }
                        ),
                        json_values,
                    ),
                    "blobs": st.one_of(st.lists(HEX.map(lambda h: f"sha256:{h}"), max_size=3), json_values),
                }
            ),
            max_size=3,
        )
        | json_values,
        "blobs": st.lists(
            st.fixed_dictionaries(
                {
                    "digest": st.one_of(HEX.map(lambda h: f"sha256:{h}"), json_values),
                    "size": st.one_of(st.integers(min_value=-5, max_value=2**60), json_values),
                    "mediaType": st.one_of(st.text(max_size=300), json_values),
                }
            ),
            max_size=3,
        )
        | json_values,
        "created_by": json_values,
        "created": json_values,
        "size": json_values,
    },
)


@PROPS
@given(st.one_of(st.binary(max_size=300), index_docs.map(lambda d: json.dumps(d).encode())))
@example(b"[" * 100_000)
@example(b'{"format": "ollama-seed-bundle", "version": 1, "models": [' + b"1" * 5000 + b"]}")
def test_index_decoder_refuses_with_a_bundle_error_or_yields_a_consistent_index(raw: bytes) -> None:
    try:
        index = BundleIndex.decode(raw)
    except BundleError:
        return
    carried = {b.digest for b in index.blobs}
    for m in index.models:
        assert m.name.digest is None
        assert set(m.blobs) <= carried or not carried  # every carried blob is used; a thin bundle may carry none
        assert m.manifest_path == "manifests/" + "/".join(m.name.path_parts)


# --------------------------------------------------------------------------- the reader, end to end

_HONEST = models(2, size=20_000)
_PLAIN = join(bundle_members(_HONEST))


@st.composite
def mutated_bundles(draw: st.DrawFn) -> bytes:
    data = bytearray(_PLAIN)
    kind = draw(
        st.sampled_from(
            ["flip", "truncate", "splice", "splice", "index-only", "zstd-of-mutation", "honest", "cut-between-members"]
        )
    )
    if kind in ("flip", "zstd-of-mutation"):
        for _ in range(draw(st.integers(min_value=1, max_value=8))):
            i = draw(st.integers(min_value=0, max_value=len(data) - 1))
            data[i] ^= draw(st.integers(min_value=1, max_value=255))
    elif kind == "truncate":
        data = data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
    elif kind == "splice":
        members = bundle_members(_HONEST)
        name = draw(
            st.one_of(
                member_names,
                st.sampled_from(
                    [
                        "blobs/sha256-" + _HONEST[0].built.model_layer.hex,
                        "manifests/registry.ollama.ai/library/m0/latest",
                        ".ollama-seed/bundle.json",
                        "../outside",
                        "/tmp/outside",
                        "manifests/registry.ollama.ai/library/evil/t",
                    ]
                ),
            )
        )
        typeflag = draw(
            st.sampled_from(
                [tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]
            )
        )
        linkname = draw(st.sampled_from(["", "/etc/passwd", "../../outside", "blobs/sha256-" + "ab" * 32]))
        payload = draw(st.binary(max_size=64))
        try:
            extra = member(name, payload, type=typeflag, linkname=linkname)
        except (ValueError, UnicodeError):  # a name tarfile itself cannot encode
            extra = member("../outside", payload)
        members.insert(draw(st.integers(min_value=0, max_value=len(members))), extra)
        data = bytearray(join(members))
    elif kind == "index-only":
        data = bytearray(join(bundle_members(_HONEST)[:1]))
    elif kind == "cut-between-members":  # a bundle that stops after some member: earlier models still install
        members = bundle_members(_HONEST)
        data = bytearray(
            join(members[: draw(st.integers(min_value=1, max_value=len(members)))], end=draw(st.booleans()))
        )
    if kind == "zstd-of-mutation" or (draw(st.booleans()) and kind != "truncate"):
        return zstd(bytes(data))
    return bytes(data)


@E2E
@given(mutated_bundles())
def test_a_mutated_bundle_installs_verified_models_or_raises_a_seed_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        store = base / "models"
        existing = make_model(size_bytes=5000, seed=901)
        existing.expected_store(store, "registry.ollama.ai", "library/existing", "v1")
        (base / "outside").mkdir()
        (base / "outside" / "keep").write_bytes(b"keep")
        before, outside = tree(store), outside_snapshot(base, store)
        error: Exception | None = None
        try:
            import_bundle(io.BytesIO(data), models_dir=store)
        except SeedError as exc:
            error = exc
        assert outside_snapshot(base, store) == outside
        after = tree(store)
        assert {k: after.get(k) for k in before} == before  # what was there is untouched
        assert_store_ok(store)
        staging = store / ".ollama-seed" / "staging"
        assert not staging.is_dir() or list(staging.iterdir()) == [], error


def test_an_honest_bundle_still_imports(tmp_path: Path) -> None:
    """The mutation baseline: unmutated, the crafted bundle installs both models exactly."""
    result = import_bundle(io.BytesIO(_PLAIN), models_dir=tmp_path / "models")
    assert len(result.models) == 2
    expected = tmp_path / "expected"
    install(expected, _HONEST)
    assert tree(tmp_path / "models") == tree(expected)
