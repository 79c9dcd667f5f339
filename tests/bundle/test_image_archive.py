"""``image verify``/``image extract --oci-archive``: an image read from a tar of a layout where it lies, and
hostile archives (links, traversal, two members of one name, lying sizes) refused with nothing written."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ollama_seed.bundle.image.api import build_image, extract_image, verify_image
from ollama_seed.bundle.image.archive import scan_members
from ollama_seed.bundle.image.layout import USTAR_MAX_SIZE, ArchiveTarget, split_layout_arg
from ollama_seed.cli.main import main
from ollama_seed.core.errors import BundleError, ConfigError, ModelNotFound
from tests.support.craft import snapshot
from tests.support.images import models_of, store_models


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("archive")
    store = root / "store"
    names = store_models(store, 2, 50_000)
    build_image(names, oci_archive=root / "img.tar", models_dir=store)
    return store, root / "img.tar", names


def test_an_archive_verifies_and_extracts_without_unpacking(
    tmp_path: Path, built: tuple[Path, Path, list[str]]
) -> None:
    store, archive, _ = built
    report = verify_image(oci_archive=archive)
    assert report.platforms == ("linux/amd64", "linux/arm64/v8")
    out = tmp_path / "out"
    extracted = extract_image(oci_archive=f"{archive}:latest-linux-amd64", models_dir=out)
    assert models_of(out) == models_of(store) and extracted.digest != report.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing unpacked beside it
    with pytest.MonkeyPatch.context() as env:  # an archive on disk needs no network
        env.setenv("OLLAMA_SEED_OFFLINE", "1")
        assert main(["image", "verify", "--oci-archive", str(archive), "--progress", "none"]) == 0
    with pytest.raises(ModelNotFound, match="no image tagged 'v9'"):
        verify_image(oci_archive=f"{archive}:v9")
    with pytest.raises(ConfigError, match="name the image"):
        verify_image(oci_archive=archive, oci_layout=tmp_path)


def _members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(archive) as tf:
        return [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]  # type: ignore[union-attr]


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)


def _add(extra: tarfile.TarInfo, data: bytes | None = None) -> Callable[[Path, Path], None]:
    def damage(src: Path, dst: Path) -> None:
        _write(dst, [(extra, data), *_members(src)])

    return damage


def _link(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, "/etc/shadow"
    return info


def _file(name: str, data: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def _duplicate_index(src: Path, dst: Path) -> None:
    members = _members(src)
    fake = b'{"schemaVersion":2,"manifests":[]}'
    _write(dst, [*members, (_file("index.json", fake), fake)])


def _lying_size(src: Path, dst: Path) -> None:
    raw = src.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])  # the largest member now claims more bytes than the file holds


def _gzipped(src: Path, dst: Path) -> None:
    import gzip

    dst.write_bytes(gzip.compress(src.read_bytes(), 1))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_add(_link("blobs/sha256/" + "1" * 64, tarfile.SYMTYPE)), "symbolic link"),
        (_add(_link("index2.json", tarfile.LNKTYPE)), "hard link"),
        (_add(_file("../../etc/cron.d/x", b"x"), b"x"), r"'\.\.'"),
        (_add(_file("/etc/passwd", b"x"), b"x"), "absolute path"),
        (_duplicate_index, "two members named 'index.json'"),
        (_lying_size, "truncated, or the size lies"),
        (_gzipped, "gzip-compressed file; decompress it first"),
        (lambda src, dst: dst.write_bytes(b"{}" * 600), "no valid tar header at byte 0; it is not an OCI archive"),
    ],
)
def test_hostile_archives_are_refused_and_nothing_is_written(
    tmp_path: Path, built: tuple[Path, Path, list[str]], damage: Callable[[Path, Path], None], message: str
) -> None:
    _, archive, _ = built
    bad = tmp_path / "bad.tar"
    damage(archive, bad)
    with pytest.raises(BundleError, match=message):
        verify_image(oci_archive=bad)
    out = tmp_path / "out"
    store_models(out, 1, 7777)
    before = snapshot(out)
    with pytest.raises(BundleError, match=message):
        extract_image(oci_archive=bad, models_dir=out)
    assert snapshot(out) == before


def test_a_layer_whose_bytes_lie_is_refused_when_read(tmp_path: Path, built: tuple[Path, Path, list[str]]) -> None:
    """The archive's own structure is sound but a layer's bytes changed: its digest stops the extract."""
    _, archive, _ = built
    members = _members(archive)
    i = max(range(len(members)), key=lambda k: members[k][0].size)
    info, data = members[i]
    assert data is not None
    members[i] = (info, data[:4096] + bytes([data[4096] ^ 0xFF]) + data[4097:])
    bad = tmp_path / "bad.tar"
    _write(bad, members)
    out = tmp_path / "out"
    with pytest.raises(BundleError, match="hashes to"):
        extract_image(oci_archive=f"{bad}:latest-linux-amd64", models_dir=out)
    assert not (out / "manifests").exists() or not any((out / "manifests").rglob("*"))


def test_a_header_that_may_pass_8_gib_keeps_its_length(tmp_path: Path) -> None:
    """A compressed layer's size is known only at its end: when it may pass ustar's limit, the header
    carries a pax size record from the start, and the rewritten header is as long as the first."""
    target = ArchiveTarget(tmp_path / "x.tar", 0)
    digest, size = target.put([b"a" * 1000, b"b" * 24], None, USTAR_MAX_SIZE + 1)
    digest2, _ = target.put([b"small"], None, 100)
    target.commit({})
    with tarfile.open(tmp_path / "x.tar") as tf:
        found = {m.name: (m.size, m.pax_headers.get("size")) for m in tf.getmembers() if m.isfile()}
    assert found[f"blobs/sha256/{digest.hex}"] == (1024, "1024") and size == 1024
    assert found[f"blobs/sha256/{digest2.hex}"] == (5, None)
    with open(tmp_path / "x.tar", "rb") as f:  # and our own reader finds both where they are
        members = scan_members(f.fileno(), (tmp_path / "x.tar").stat().st_size, "x.tar")
    assert members[f"blobs/sha256/{digest.hex}"][1] == 1024 and members[f"blobs/sha256/{digest2.hex}"][1] == 5


@pytest.mark.parametrize(
    ("arg", "path", "tag"),
    [
        ("img.tar", "img.tar", "latest"),
        ("img.tar:v1", "img.tar", "v1"),
        ("/srv/a:b/img.tar", "/srv/a:b/img.tar", "latest"),
        ("C:\\img\\m.tar", "C:\\img\\m.tar", "latest"),  # a Windows path is not DIR:TAG
        ("C:\\img\\m.tar:v1", "C:\\img\\m.tar", "v1"),
    ],
)
def test_file_and_tag_arguments(arg: str, path: str, tag: str) -> None:
    assert split_layout_arg(arg) == (Path(path), tag)


def test_fifos_are_refused_not_waited_on(tmp_path: Path, built: tuple[Path, Path, list[str]]) -> None:
    """An --oci-archive that is a FIFO (or /dev/stdin from a pipe), and a layer blob of a layout that
    is one: refused at once, never opened for a writer that does not come."""
    import signal

    store, _, names = built
    fifo = tmp_path / "pipe.tar"
    os.mkfifo(fifo)
    layout = tmp_path / "img"
    result = build_image(names, oci_layout=f"{layout}:t", models_dir=store, platforms="linux/amd64")
    blob = layout / "blobs" / "sha256" / result.layers[0].digest.hex
    blob.unlink()
    os.mkfifo(blob)
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("waited on a FIFO"))
    signal.alarm(20)
    try:
        with pytest.raises(BundleError, match="not a regular file; --oci-archive reads a tar file"):
            verify_image(oci_archive=fifo)
        with pytest.raises(BundleError, match="is not a regular file"):
            extract_image(oci_layout=f"{layout}:t", models_dir=tmp_path / "out")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
