"""Hostile and broken bundles: each is refused with a clear error, and the store is left exactly as it was."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ollama_seed import BundleError, import_bundle, verify_bundle
from ollama_seed.bundle.format.names import INDEX_MEMBER
from ollama_seed.cli.main import main
from tests.support.craft import (
    END,
    Model,
    bundle_members,
    index_member,
    join,
    member,
    models,
    pax_member,
    set_type,
    snapshot,
    zstd,
)

BLOB = "blobs/sha256-" + "ab" * 32
Case = Callable[[list[Model]], bytes]


def _index_doc(items: list[Model]) -> dict[str, object]:
    from ollama_seed.bundle.format.index import BundleIndex

    index = BundleIndex.build([(m.name, m.manifest) for m in items], created_by="craft", created="")
    doc: dict[str, object] = json.loads(index.encode())
    return doc


def _with_index(items: list[Model], edit: Callable[[dict[str, object]], None]) -> bytes:
    doc = _index_doc(items)
    edit(doc)
    rest = bundle_members(items)[1:]
    return join([index_member(items, raw=json.dumps(doc).encode()), *rest])


def _model_blob(m: Model) -> tuple[str, bytes]:
    b = m.built.model_layer
    return f"blobs/sha256-{b.hex}", b.read_bytes()


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def _hash_mismatch(items: list[Model]) -> bytes:
    path, data = _model_blob(items[0])
    members = bundle_members(items)
    members[1] = member(path, _flip(data))
    return join(members)


def _dup_blob(items: list[Model]) -> bytes:
    path, data = _model_blob(items[0])
    return join([member(path, data), member(path, _flip(data))])


def _dup_manifest(items: list[Model]) -> bytes:
    m = items[0]
    return join([member(m.manifest_path, m.built.manifest), member(m.manifest_path, items[1].built.manifest)])


def _missing_blob_loose(items: list[Model]) -> bytes:
    model_path, _ = _model_blob(items[0])
    members = [x for x in bundle_members(items[:1], index=False) if not x.startswith(model_path.encode())]
    return join(members)


def _missing_blob_index(items: list[Model]) -> bytes:
    model_digest = items[0].built.model_layer.digest

    def edit(doc: dict[str, object]) -> None:
        blobs = doc["blobs"]
        assert isinstance(blobs, list)
        doc["blobs"] = [b for b in blobs if b["digest"] != model_digest]

    return _with_index(items, edit)


def _bomb(items: list[Model]) -> bytes:
    filler = pax_member({"comment": "x" * 60_000})
    junk = (filler + member("blobs/", type=tarfile.DIRTYPE)) * 400  # 24 MB of headers, a few KB compressed
    members = bundle_members(items[:1])
    data = zstd(join([members[0], junk, *members[1:]]), level=19)
    assert len(data) < 200_000
    return data


def _newer(items: list[Model]) -> bytes:
    return _with_index(items, lambda doc: doc.update(version=2))


def _unused_blob(items: list[Model]) -> bytes:
    def edit(doc: dict[str, object]) -> None:
        blobs = doc["blobs"]
        assert isinstance(blobs, list)
        blobs.append({"digest": "sha256:" + "cd" * 32, "size": 3, "mediaType": "x"})

    return _with_index(items, edit)


def _size_mismatch(items: list[Model]) -> bytes:
    path, data = _model_blob(items[0])
    members = bundle_members(items)
    members[1] = member(path, data + b"!")
    return join(members)


def _manifest_not_index(items: list[Model]) -> bytes:
    members = bundle_members(items[:1])
    members[-1] = member(items[0].manifest_path, items[1].built.manifest)
    return join(members)


def _blob_not_in_index(items: list[Model]) -> bytes:
    members = bundle_members(items[:1])
    return join([members[0], member(BLOB, b"abc"), *members[1:]])


def _index_not_first(items: list[Model]) -> bytes:
    members = bundle_members(items)
    return join([members[1], members[0], *members[2:]])


def _oci_no_name(items: list[Model]) -> bytes:
    m = items[0]
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "x",
                "digest": m.built.manifest_digest,
                "size": len(m.built.manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    return join(
        [member("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), member("index.json", json.dumps(index).encode())]
    )


def _huge_size(items: list[Model]) -> bytes:
    info = tarfile.TarInfo(BLOB)
    info.size = 2**60
    return info.tobuf(tarfile.GNU_FORMAT) + END


def _damaged_header(items: list[Model]) -> bytes:
    data = bytearray(join(bundle_members(items)))
    data[10] ^= 0x55
    return bytes(data)


def _damaged_gzip(data: bytes) -> bytes:
    """A gzip stream with its deflate data damaged near the start (inside the index)."""
    packed = bytearray(gzip.compress(data))
    packed[30:34] = b"\xff\xff\xff\xff"
    return bytes(packed)


CASES: dict[str, tuple[Case, str]] = {
    "absolute-path": (lambda items: join([member("/etc/cron.d/evil", b"x")]), "absolute path"),
    "dot-dot": (lambda items: join([member("blobs/../../evil", b"x")]), r"'\.\.'"),
    "dot-dot-manifest": (lambda items: join([member("manifests/../../../../etc/x", b"{}")]), r"'\.\.'"),
    "symlink": (lambda items: join([member(BLOB, type=tarfile.SYMTYPE, linkname="/etc/passwd")]), "symbolic link"),
    "hard-link": (lambda items: join([member(BLOB, type=tarfile.LNKTYPE, linkname="/etc/passwd")]), "hard link"),
    "char-device": (lambda items: join([member(BLOB, type=tarfile.CHRTYPE)]), "character device"),
    "fifo": (lambda items: join([member(BLOB, type=tarfile.FIFOTYPE)]), "FIFO"),
    "sparse": (lambda items: join([set_type(member(BLOB, b"abc"), b"S")]), "sparse"),
    "outside-store": (lambda items: join([member("evil.sh", b"#!/bin/sh\n")]), "only manifests/"),
    "state-dir-member": (lambda items: join([member(".ollama-seed/staging/x", b"x")]), "pack only manifests and blobs"),
    "bad-blob-name": (lambda items: join([member("blobs/sha256-1234", b"x")]), "sha256-<64 lowercase hex>"),
    "uppercase-digest": (lambda items: join([member("blobs/sha256-" + "AB" * 32, b"x")]), "lowercase hex"),
    "manifest-depth": (
        lambda items: join([member("manifests/registry.ollama.ai/library/x", b"{}")]),
        "manifests/<host>",
    ),
    "manifest-bad-name": (lambda items: join([member("manifests/h/ns/-x/latest", b"{}")]), "not a valid model name"),
    "hash-mismatch": (_hash_mismatch, "hashes to sha256:"),
    "duplicate-blob": (_dup_blob, "duplicate member with other content"),
    "duplicate-manifest": (_dup_manifest, "duplicate member with other content"),
    "missing-blob": (_missing_blob_loose, "neither in the bundle nor in the store"),
    "missing-blob-in-index": (_missing_blob_index, "neither in the bundle nor in the store"),
    "decompression-bomb": (_bomb, "decompression bomb"),
    "index-too-large": (lambda items: member(INDEX_MEMBER, size=17 * 2**20) + END, "more than the"),
    "pax-too-large": (
        lambda items: member("x", size=2**20, type=tarfile.XHDTYPE, fmt=tarfile.USTAR_FORMAT),
        "pax extended header",
    ),
    "newer-version": (_newer, "upgrade ollama-seed"),
    "index-not-first": (_index_not_first, "must be the first member"),
    "index-unused-blob": (_unused_blob, "no model uses it"),
    "blob-not-in-index": (_blob_not_in_index, "does not list this blob"),
    "size-mismatch": (_size_mismatch, "but the bundle says"),
    "manifest-not-in-index": (_manifest_not_index, "not the manifest the index names"),
    "manifest-not-json": (
        lambda items: join([member(items[0].manifest_path, b"not json")]),
        "not a valid Ollama manifest",
    ),
    "mixed-oci-and-store": (
        lambda items: join([member("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), member(BLOB, b"abc")]),
        "mixes models-directory members with OCI layout",
    ),
    "oci-without-names": (_oci_no_name, "no full model name"),
    "huge-size": (_huge_size, "claims"),
    "damaged-header": (_damaged_header, "not a valid tar header"),
    "not-a-bundle": (lambda items: os.urandom(4096), "not a valid tar header"),
    "gzip-damaged": (
        lambda items: _damaged_gzip(join(bundle_members(items))),
        "gzip stream of the bundle is damaged|bundle index",
    ),
    "gzip-truncated": (lambda items: gzip.compress(join(bundle_members(items)))[:300], "truncated|ends before"),
    "xz": (lambda items: lzma.compress(join(bundle_members(items))), "xz-compressed"),
    "empty": (lambda items: b"", "is empty"),
    "truncated-index": (lambda items: join(bundle_members(items))[:700], "truncated"),
}


def test_there_are_at_least_twenty_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_bundle_is_refused_and_store_unchanged(case: str, store: Path) -> None:
    build, expected = CASES[case]
    data = build(models(2))
    before = snapshot(store)
    with pytest.raises(BundleError, match=expected):
        import_bundle(io.BytesIO(data), models_dir=store)
    assert snapshot(store) == before
    assert list((store / ".ollama-seed" / "staging").iterdir()) == []


@pytest.mark.parametrize("case", ["symlink", "hash-mismatch", "decompression-bomb", "missing-blob-in-index"])
def test_verify_refuses_too(case: str) -> None:
    build, expected = CASES[case]
    with pytest.raises(BundleError, match=expected):
        verify_bundle(io.BytesIO(build(models(2))))


def test_cli_exit_code_for_a_bad_bundle(tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.bundle"
    path.write_bytes(CASES["symlink"][0](models(2)))
    assert main(["import", str(path), "--models-dir", str(store), "--progress", "none"]) == 12
    assert "symbolic link" in capsys.readouterr().err
    assert main(["bundle", "verify", str(path), "--progress", "none"]) == 12
