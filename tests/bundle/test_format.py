"""The pure parts of bundles: member names, the index, option parsing, tar headers."""

from __future__ import annotations

import json
import tarfile

import pytest

from ollama_seed import BundleError, Digest, Manifest, ModelName
from ollama_seed.bundle.format.index import FORMAT_VERSION, BundleIndex
from ollama_seed.bundle.format.names import MemberKind, classify_member
from ollama_seed.bundle.format.tar import padding, parse_header, parse_pax, pax_size
from ollama_seed.bundle.options import Compression, parse_compress, parse_split_size
from ollama_seed.core.ociimage import tar_header
from tests.support.model import make_model

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (".ollama-seed/bundle.json", MemberKind.INDEX),
        (f"blobs/sha256-{HEX}", MemberKind.BLOB),
        (f"./blobs/sha256-{HEX}", MemberKind.BLOB),
        ("manifests/registry.ollama.ai/library/gemma3/270m", MemberKind.MANIFEST),
        ("manifests/localhost:5000/ns/model/v1.2", MemberKind.MANIFEST),
        ("oci-layout", MemberKind.OCI_LAYOUT),
        ("index.json", MemberKind.OCI_INDEX),
        (f"blobs/sha256/{HEX}", MemberKind.OCI_BLOB),
    ],
)
def test_accepted_member_names(name: str, kind: MemberKind) -> None:
    ref = classify_member(name)
    assert ref.kind is kind
    if kind is MemberKind.MANIFEST:
        assert ref.name is not None and "manifests/" + "/".join(ref.name.path_parts) == ref.path
    if kind in (MemberKind.BLOB, MemberKind.OCI_BLOB):
        assert ref.digest == Digest(HEX)


@pytest.mark.parametrize(
    "name",
    [
        "./",
        ".",
        "manifests",
        "manifests/registry.ollama.ai/",
        "manifests/registry.ollama.ai/library/gemma3",
        "blobs/",
        "blobs/sha256",
        ".ollama-seed",
    ],
)
def test_accepted_directories(name: str) -> None:
    assert classify_member(name, is_dir=True).kind is MemberKind.DIR


@pytest.mark.parametrize(
    ("name", "is_dir", "why"),
    [
        ("/blobs/x", False, "absolute"),
        ("blobs/../x", False, r"'\.\.'"),
        ("blobs//x", False, "empty component"),
        ("blobs\\x", False, "backslash"),
        ("blobs/x\x00", False, "control"),
        ("", False, "empty"),
        ("a" * 2000, False, "too long"),
        (f"blobs/sha256:{HEX}", False, "blobs/sha256-<64"),
        (f"blobs/sha256-{HEX}-partial", False, "blobs/sha256-<64"),
        ("manifests/h/ns/m", False, "manifests/<host>"),
        ("manifests/h/ns/m/t/extra", False, "manifests/<host>"),
        ("manifests/h/n.s/m/t", False, "not a valid model name"),
        ("manifests/h/ns/m/-t", False, "not a valid model name"),
        ("etc/passwd", False, "only manifests"),
        ("blobs/sub/dir", True, "no place"),
        ("etc", True, "no place"),
        ("manifests/h/n.s", True, "not a valid model name"),
    ],
)
def test_refused_member_names(name: str, is_dir: bool, why: str) -> None:
    with pytest.raises(BundleError, match=why):
        classify_member(name, is_dir=is_dir)


def _models() -> list[tuple[ModelName, Manifest]]:
    a, b = make_model(size_bytes=1000, seed=1), make_model(size_bytes=2000, seed=2)
    return [
        (ModelName.parse("a"), Manifest.parse(a.manifest)),
        (ModelName.parse("hf.co/u/b:Q4"), Manifest.parse(b.manifest)),
    ]


def test_index_round_trip_dedupes_blobs() -> None:
    items = _models()
    index = BundleIndex.build(items, created_by="ollama-seed test", created="2026-01-01T00:00:00Z")
    assert len(index.blobs) == 7  # 5 + 5, three shared
    decoded = BundleIndex.decode(index.encode())
    assert decoded == index
    doc = json.loads(index.encode())
    assert doc["format"] == "ollama-seed-bundle" and doc["version"] == FORMAT_VERSION
    assert doc["models"][1]["manifest"]["path"] == "manifests/hf.co/u/b/Q4"
    distinct = {layer.digest: layer.size for _, m in items for layer in m.blobs}
    assert doc["size"] == index.size == sum(distinct.values()) + sum(len(m.raw) for _, m in items)


def _doc() -> dict[str, object]:
    doc: dict[str, object] = json.loads(BundleIndex.build(_models(), created_by="t", created="").encode())
    return doc


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(version=0), "no valid version"),
        (lambda d: d.update(version=True), "no valid version"),
        (lambda d: d.update(version=99), "upgrade ollama-seed"),
        (lambda d: d.update(models=[]), "non-empty list"),
        (lambda d: d["models"].append(d["models"][0]), "listed twice"),
        (lambda d: d["blobs"].append(d["blobs"][0]), "listed twice"),
        (lambda d: d["blobs"][0].update(size=-1), "whole number"),
        (lambda d: d["blobs"][0].update(digest="sha256:xyz"), "not a sha256 digest"),
        (lambda d: d["models"][0].update(name="bad name"), "models\\[0\\].name"),
        (lambda d: d["models"][0].update(name="a@sha256:" + HEX), "pinned"),
        (lambda d: d["models"][0]["manifest"].update(path="manifests/x/y/z/w"), "does not match the name"),
        (lambda d: d["models"][0]["manifest"].update(size=2**40), "whole number"),
        (lambda d: d["models"][0].update(blobs=["sha256:" + HEX, "sha256:" + HEX]), "twice"),
    ],
)
def test_index_validation(edit: object, why: str) -> None:
    doc = _doc()
    edit(doc)  # type: ignore[operator]
    with pytest.raises(BundleError, match=why):
        BundleIndex.decode(json.dumps(doc).encode())


def test_index_ignores_unknown_keys_and_refuses_garbage() -> None:
    doc = _doc()
    doc["future"] = {"anything": 1}
    assert len(BundleIndex.decode(json.dumps(doc).encode()).models) == 2
    with pytest.raises(BundleError, match="not JSON"):
        BundleIndex.decode(b"\xff{")
    with pytest.raises(BundleError, match="more than"):
        BundleIndex.decode(b" " * (17 * 2**20))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auto", Compression("auto")),
        ("none", Compression("none")),
        ("zstd", Compression("zstd", 1)),
        ("zstd:19", Compression("zstd", 19)),
        ("ZSTD:3", Compression("zstd", 3)),
        ("gzip", Compression("gzip", 1)),
        ("gzip:9", Compression("gzip", 9)),
    ],
)
def test_parse_compress(text: str, expected: Compression) -> None:
    assert parse_compress(text) == expected
    assert str(expected) in ("auto", "none") or str(expected).startswith(("zstd:", "gzip:"))


@pytest.mark.parametrize("text", ["zstd:0", "zstd:23", "gzip:0", "gzip:10", "xz", "zstd:x", ""])
def test_parse_compress_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a compression"):
        parse_compress(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4G", 4 * 10**9),
        ("4GiB", 4 * 2**30),
        ("4gb", 4 * 10**9),
        ("700M", 700 * 10**6),
        ("4.5k", 4500),
        ("65536", 65536),
        (8192, 8192),
        ("2T", 2 * 10**12),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_split_size(text) == expected


@pytest.mark.parametrize("text", ["4X", "-1", "10", "", "G"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_split_size(text)


def test_tar_header_for_a_blob_over_8_gib_uses_pax() -> None:
    name = f"blobs/sha256-{HEX}"
    raw = tar_header(name, 13_000_000_000, mtime=1_700_000_000)
    pax = parse_header(raw[:512])
    assert pax is not None and pax.kind == "pax"
    records = parse_pax(raw[512 : 512 + pax.size])
    file = parse_header(raw[512 + pax.size + padding(pax.size) :][:512])
    assert file is not None and file.name == name and file.kind == "file"
    assert pax_size(records, file.size) == 13_000_000_000
    info = tarfile.TarInfo.frombuf(raw[-512:], "utf-8", "strict")
    assert info.name == name


def test_tar_header_long_names_and_refusals() -> None:
    long = "manifests/" + "h" * 200 + "/ns/m/t"
    raw = tar_header(long, 10, mtime=0)
    pax = parse_header(raw[:512])
    assert pax is not None and parse_pax(raw[512 : 512 + pax.size])["path"] == long
    assert parse_header(bytes(512)) is None
    with pytest.raises(BundleError, match="truncated"):
        parse_header(b"x" * 100)
    for bad in (b"12 path=x\n", b"abc", b"5 a=b\n"):
        with pytest.raises(BundleError, match="malformed"):
            parse_pax(bad)
    with pytest.raises(BundleError, match="pax size"):
        pax_size({"size": "-5"}, 0)
    link = tarfile.TarInfo("x")
    link.type = tarfile.SYMTYPE
    header = parse_header(link.tobuf(tarfile.USTAR_FORMAT))
    assert header is not None and header.refused and header.kind == "a symbolic link"
