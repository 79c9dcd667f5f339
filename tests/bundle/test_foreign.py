"""Bundles other tools write: ollamazip archives (written by ollamazip itself), gzip bundles (``tar -czf``, ``gzip``).

Each archive here is made by the tool users already have; ollama-seed must import it with all
of its own checks, and refuse the hostile variants with the store unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from ollamazip import core as ollamazip

from ollama_seed import BundleError, ModelName, export_bundle, import_bundle, inspect_bundle, verify_bundle
from ollama_seed.cli.main import main
from tests.support.craft import Model, install, snapshot
from tests.support.fake_ollama import FakeOllama
from tests.support.invariants import assert_store_ok
from tests.support.model import make_model

NAME = "hf.co/some-user/tiny-GGUF:Q4_K_M"
OTHER = "alpha:latest"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    install(
        root,
        [
            Model(ModelName.parse(NAME), make_model(size_bytes=300_000, seed=11)),
            Model(ModelName.parse(OTHER), make_model(size_bytes=120_000, seed=12)),
        ],
    )
    return root


def pack(src: Path, tmp_path: Path, name: str, compress: str) -> Path:
    """``ollamazip pack NAME --compress C`` run by ollamazip's own code over the store *src*."""
    out = tmp_path / f"{name.replace('/', '_').replace(':', '_')}-{compress}.ollamazip"
    return Path(ollamazip.pack_model(name, output=out, compress=compress, home=src))


def manifest_digest(root: Path, name: str) -> str:
    seen = FakeOllama(root).find(name)
    assert seen is not None, f"Ollama would not see {name} in {root}"
    return str(seen["digest"])


MAGIC = {"zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b", "none": b"metadata.json"}


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
def test_ollamazip_archive_imports_in_each_compression(src: Path, tmp_path: Path, compress: str) -> None:
    archive = pack(src, tmp_path, NAME, compress)
    assert archive.read_bytes().startswith(MAGIC[compress])
    dst = tmp_path / "dst"
    result = import_bundle(archive, models_dir=dst)
    assert [n.display for n in result.models] == [NAME]
    assert result.format == "ollamazip" and result.compression == compress and result.blobs_written == 5
    assert manifest_digest(dst, NAME) == manifest_digest(src, NAME)
    for blob in (dst / "blobs").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name.removeprefix("sha256-")
    assert_store_ok(dst)
    again = import_bundle(archive, models_dir=dst)  # a second import writes nothing
    assert again.unchanged == again.models and again.blobs_written == 0


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
def test_ollamazip_archive_ls_and_verify(src: Path, tmp_path: Path, compress: str) -> None:
    archive = pack(src, tmp_path, OTHER, compress)
    info = inspect_bundle(archive)
    assert info.format == "ollamazip" and info.compression == compress
    assert [m.name.display for m in info.models] == [OTHER] and len(info.blobs) == 5
    checked = verify_bundle(archive)
    assert [n.display for n in checked.models] == [OTHER]


def test_ollamazip_as_renames_like_unpack_name(src: Path, tmp_path: Path) -> None:
    archive = pack(src, tmp_path, NAME, "zstd")
    dst = tmp_path / "dst"
    result = import_bundle(archive, models_dir=dst, as_name="my-model:v1")
    assert [n.display for n in result.models] == ["my-model:v1"]
    assert manifest_digest(dst, "my-model:v1") == manifest_digest(src, NAME)
    assert FakeOllama(dst).find(NAME) is None
    assert_store_ok(dst)


def test_cli_import_of_an_ollamazip_archive_with_as(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = pack(src, tmp_path, OTHER, "gzip")
    dst = tmp_path / "dst"
    assert (
        main(["import", str(archive), "--as", "Renamed:x", "--models-dir", str(dst), "--json", "--progress", "none"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"] == ["Renamed:x"] and doc["format"] == "ollamazip" and doc["compression"] == "gzip"
    assert manifest_digest(dst, "renamed:x") == manifest_digest(src, OTHER)  # Ollama matches names case-insensitively


# -- gzip bundles ------------------------------------------------------------------------


def test_gzip_of_our_bundle_and_tar_czf_of_a_store_import(src: Path, tmp_path: Path) -> None:
    plain = tmp_path / "x.bundle"
    export_bundle([NAME, OTHER], plain, models_dir=src, compress="none")
    gz = tmp_path / "x.bundle.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    tgz = tmp_path / "store.tgz"
    subprocess.run(["tar", "-czf", str(tgz), "-C", str(src), "manifests", "blobs"], check=True)
    for source, fmt in ((gz, "ollama-seed"), (tgz, "tar")):
        dst = tmp_path / f"dst-{source.name}"
        result = import_bundle(source, models_dir=dst)
        assert result.compression == "gzip" and result.format == fmt
        assert sorted(n.display for n in result.models) == sorted([NAME, OTHER])
        for name in (NAME, OTHER):
            assert manifest_digest(dst, name) == manifest_digest(src, name)
        assert_store_ok(dst)
        assert inspect_bundle(source).compression == "gzip"
        assert len(verify_bundle(source).models) == 2


def test_gzip_from_a_pipe(src: Path, tmp_path: Path) -> None:
    plain = io.BytesIO()
    export_bundle([OTHER], plain, models_dir=src, compress="none")
    result = import_bundle(io.BytesIO(gzip.compress(plain.getvalue())), models_dir=tmp_path / "dst")
    assert result.compression == "gzip" and [n.display for n in result.models] == [OTHER]


@pytest.mark.parametrize("level", ["gzip", "gzip:6"])
def test_export_compress_gzip_is_read_by_gzip_and_tar(src: Path, tmp_path: Path, level: str) -> None:
    out = tmp_path / "x.tar.gz"
    result = export_bundle([NAME, OTHER], out, models_dir=src, compress=level)
    assert result.compression == ("gzip:1" if level == "gzip" else "gzip:6")
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    listed = subprocess.run(["tar", "-tzf", str(out)], check=True, capture_output=True, text=True).stdout.split()
    assert listed[0] == ".ollama-seed/bundle.json" and len([n for n in listed if n.startswith("blobs/")]) == 7
    unpacked = tmp_path / "unpacked"  # the emergency path works with gzip too
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(out), "-C", str(unpacked)], check=True)
    assert manifest_digest(unpacked, NAME) == manifest_digest(src, NAME)
    result2 = import_bundle(out, models_dir=tmp_path / "dst")
    assert result2.compression == "gzip" and len(result2.models) == 2
    assert_store_ok(tmp_path / "dst")


# -- hostile ollamazip archives ------------------------------------------------------------


def oz_archive(members: list[tuple[str, bytes]], compress: str = "none") -> bytes:
    """An archive laid out as ollamazip lays it out, with whatever members a test needs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw) if compress == "gzip" else raw


def oz_members(
    model: Model, *, metadata: Mapping[str, object] | None = None, skip: int | None = None
) -> list[tuple[str, bytes]]:
    host, ns, name, tag = model.name.path_parts
    meta = {"archive_version": 1, "model": name, "tag": tag, "registry": host, "namespace": ns}
    out = [
        ("metadata.json", json.dumps(metadata if metadata is not None else meta).encode()),
        ("manifest.json", model.built.manifest),
    ]
    for i, blob in enumerate(model.built.blobs):
        if i != skip:
            out.append((f"blobs/sha256-{blob.hex}", blob.read_bytes()))
    return out


TRAVERSALS = [
    {"registry": "registry.ollama.ai", "namespace": "library", "model": "../../../../tmp/evil", "tag": "latest"},
    {"registry": "..", "namespace": "..", "model": "evil", "tag": "latest"},
    {"registry": "registry.ollama.ai", "namespace": "library", "model": "evil", "tag": "../../../x"},
    {"registry": "/etc", "namespace": "library", "model": "evil", "tag": "latest"},
    {"registry": "registry.ollama.ai", "namespace": "a/b", "model": "evil", "tag": "latest"},
    {"registry": "registry.ollama.ai", "namespace": "library", "model": "evil\\..\\x", "tag": "latest"},
]


def _model() -> Model:
    return Model(ModelName.parse("victim:1"), make_model(size_bytes=50_000, seed=901))


def _bad_blob(model: Model) -> list[tuple[str, bytes]]:
    """The model's weights (a blob no store has yet) with one bit flipped."""
    members = oz_members(model)
    i = next(i for i, (name, _) in enumerate(members) if name.endswith(model.built.model_layer.hex))
    name, data = members[i]
    members[i] = (name, bytes([data[0] ^ 1]) + data[1:])
    return members


HOSTILE: dict[str, tuple[list[tuple[str, bytes]], str]] = {
    "blob-missing": (oz_members(_model(), skip=1), "neither in the bundle nor in the store"),
    "blob-bytes-differ": (_bad_blob(_model()), "hashes to"),
    "no-model-name": (oz_members(_model(), metadata={"archive_version": 1, "tag": "x"}), "gives no model"),
    "newer-version": (oz_members(_model(), metadata={"archive_version": 2, "model": "m"}), "archive_version"),
    "metadata-not-json": ([("metadata.json", b"{nope"), *oz_members(_model())[1:]], "not JSON"),
    "metadata-not-object": ([("metadata.json", b"[1]"), *oz_members(_model())[1:]], "not a JSON object"),
    "no-metadata": (oz_members(_model())[1:], "no metadata.json"),
    "no-manifest": ([oz_members(_model())[0], *oz_members(_model())[2:]], "holds no manifest.json"),
    "manifest-twice": ([*oz_members(_model())[:2], ("manifest.json", b"{}")], "appears twice"),
    "mixed-with-ours": (
        [*oz_members(_model())[:2], ("manifests/registry.ollama.ai/library/x/y", b"{}"), *oz_members(_model())[2:]],
        "mixes",
    ),
    "metadata-huge": ([("metadata.json", b" " * (65 * 1024)), *oz_members(_model())[1:]], "more than"),
    **{
        f"traversal-{i}": (oz_members(_model(), metadata=meta), "not a valid model name")
        for i, meta in enumerate(TRAVERSALS)
    },
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_hostile_ollamazip_archive_is_refused_and_store_unchanged(
    case: str, compress: str, store: Path, tmp_path: Path
) -> None:
    members, expected = HOSTILE[case]
    archive = tmp_path / "hostile.ollamazip"
    archive.write_bytes(oz_archive(members, compress))
    before = snapshot(store)
    with pytest.raises(BundleError, match=expected):
        import_bundle(archive, models_dir=store)
    assert snapshot(store) == before
    assert list((store / ".ollama-seed" / "staging").iterdir()) == []
    assert not list(tmp_path.glob("**/evil*")) and not Path("/tmp/evil").exists()


def test_manifest_without_metadata_imports_with_as(store: Path, tmp_path: Path) -> None:
    model = _model()
    archive = tmp_path / "bare.ollamazip"
    archive.write_bytes(oz_archive(oz_members(model)[1:]))  # no metadata.json: --as names it
    result = import_bundle(archive, models_dir=store, as_name="named:now")
    assert [n.display for n in result.models] == ["named:now"]
    assert manifest_digest(store, "named:now") == hashlib.sha256(model.built.manifest).hexdigest()


def test_as_needs_no_name_in_metadata_but_still_checks_it(store: Path, tmp_path: Path) -> None:
    model = _model()
    nameless = tmp_path / "nameless.ollamazip"
    nameless.write_bytes(oz_archive(oz_members(model, metadata={"archive_version": 1, "model": "../../x"})))
    result = import_bundle(nameless, models_dir=store, as_name="given:1")  # --as names it: the bad name is unused
    assert [n.display for n in result.models] == ["given:1"]
    newer = tmp_path / "newer.ollamazip"
    newer.write_bytes(oz_archive(oz_members(model, metadata={"archive_version": 2, "model": "m"})))
    with pytest.raises(BundleError, match="archive_version"):
        import_bundle(newer, models_dir=store, as_name="given:2")
    assert FakeOllama(store).find("given:2") is None


def test_as_refuses_a_bundle_of_two_models_before_writing(src: Path, store: Path, tmp_path: Path) -> None:
    indexed = tmp_path / "two.bundle"
    export_bundle([NAME, OTHER], indexed, models_dir=src, compress="none")
    tar_of_store = tmp_path / "two.tar"
    with tarfile.open(tar_of_store, "w") as tar:
        for sub in ("blobs", "manifests"):
            tar.add(src / sub, arcname=sub)
    for bundle in (indexed, tar_of_store):
        before = snapshot(store)
        with pytest.raises(BundleError, match="--as names one model, but this bundle holds 2"):
            import_bundle(bundle, models_dir=store, as_name="one:x")
        assert snapshot(store) == before


def test_ollamazip_unpack_reads_what_we_import_from(src: Path, tmp_path: Path) -> None:
    """The same archive, unpacked by ollamazip with --verify, gives the store we give (the reference behaviour)."""
    archive = pack(src, tmp_path, NAME, "zstd")
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    subprocess.run(
        [sys.executable, "-m", "ollamazip", "unpack", str(archive), "--verify"],
        check=True,
        capture_output=True,
        env={**os.environ, "OLLAMA_MODELS": str(theirs)},
    )
    import_bundle(archive, models_dir=ours)
    for sub in ("blobs", "manifests"):
        a = sorted(p.relative_to(theirs) for p in (theirs / sub).rglob("*") if p.is_file())
        b = sorted(p.relative_to(ours) for p in (ours / sub).rglob("*") if p.is_file())
        assert a == b
    shutil.rmtree(theirs)
