"""Bundles end to end: export and import through files, pipes, split parts, tar and OCI layouts."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import anyio
import pytest

from ollama_seed import (
    BundleError,
    InsufficientSpace,
    IntegrityError,
    LayerProgress,
    ModelName,
    ModelNotFound,
    ProgressEvent,
    Status,
    StoreError,
    aexport_bundle,
    aimport_bundle,
    export_bundle,
    import_bundle,
    inspect_bundle,
    verify_bundle,
)
from ollama_seed.bundle.sources.streams import TruncatedBundle
from ollama_seed.cli.main import main
from ollama_seed.store.store import ModelStore
from tests.support.craft import Model, install, snapshot
from tests.support.model import make_model

NAMES = ["alpha:latest", "hf.co/some-user/a-rather-long-repository-name-for-pax-headers-GGUF:Q4_K_M"]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A store with two models that share their template, license and params blobs."""
    root = tmp_path / "src"
    install(
        root,
        [
            Model(ModelName.parse(NAMES[0]), make_model(size_bytes=300_000, seed=1)),
            Model(ModelName.parse(NAMES[1]), make_model(size_bytes=200_001, seed=2)),
        ],
    )
    return root


def same_store(a: Path, b: Path) -> None:
    for sub in ("blobs", "manifests"):
        files_a = sorted(p.relative_to(a) for p in (a / sub).rglob("*") if p.is_file())
        files_b = sorted(p.relative_to(b) for p in (b / sub).rglob("*") if p.is_file())
        assert files_a == files_b
        for rel in files_a:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def staging_empty(root: Path) -> bool:
    return not any((root / ".ollama-seed" / "staging").iterdir())


def test_round_trip_through_a_file_stores_a_shared_blob_once(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    result = export_bundle(NAMES, out, models_dir=src, compress="none")
    assert result.paths == (str(out),) and result.blobs == 7 and result.compression == "none"
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names[0] == ".ollama-seed/bundle.json"
    blobs = [n for n in names if n.startswith("blobs/")]
    assert len(blobs) == len(set(blobs)) == 7  # 2 x 5 blobs, three of them shared
    assert names.index("manifests/registry.ollama.ai/library/alpha/latest") < names.index(blobs[-1])
    imported = import_bundle(out, models_dir=tmp_path / "dst")
    assert [n.display for n in imported.models] == ["alpha:latest", NAMES[1]]
    assert imported.blobs_written == 7 and imported.blobs_skipped == 0 and imported.format == "ollama-seed"
    same_store(src, tmp_path / "dst")
    assert staging_empty(tmp_path / "dst")
    assert all(not ModelStore(tmp_path / "dst").verify(ModelName.parse(n)) for n in NAMES)


@pytest.mark.parametrize("compress", ["zstd", "zstd:7"])
def test_round_trip_compressed(src: Path, tmp_path: Path, compress: str) -> None:
    out = tmp_path / "x.bundle.zst"
    result = export_bundle(NAMES, out, models_dir=src, compress=compress)
    assert out.read_bytes()[:4] == b"\x28\xb5\x2f\xfd" and result.compression.startswith("zstd:")
    imported = import_bundle(out, models_dir=tmp_path / "dst")
    assert imported.compression == "zstd"
    same_store(src, tmp_path / "dst")


ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ollama_seed", *args]


def test_round_trip_through_a_pipe(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    export = subprocess.Popen(
        _cli("export", *NAMES, "-o", "-", "--models-dir", str(src), "--compress", "zstd", "--progress", "none"),
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    imported = subprocess.run(
        _cli("import", "-", "--models-dir", str(dst), "--json", "--progress", "none"),
        stdin=export.stdout,
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    assert export.stdout is not None
    export.stdout.close()
    assert export.wait(timeout=60) == 0
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["blobs_written"] == 7
    same_store(src, dst)


def test_split_parts(src: Path, tmp_path: Path) -> None:
    base = tmp_path / "parts" / "x.bundle"
    base.parent.mkdir()
    result = export_bundle(NAMES, base, models_dir=src, compress="none", split_size="100k")
    parts = sorted(base.parent.iterdir())
    assert [p.name for p in parts] == [f"x.bundle.{i:03d}" for i in range(len(parts))]
    assert len(parts) == 6 and all(p.stat().st_size == 100_000 for p in parts[:-1])
    assert result.paths == tuple(str(p) for p in parts)
    import_bundle(parts[0], models_dir=tmp_path / "a")  # the first part finds the others
    import_bundle(base, models_dir=tmp_path / "b")  # so does the name without a suffix
    joined = tmp_path / "joined.bundle"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))  # cat x.bundle.* > joined
    import_bundle(joined, models_dir=tmp_path / "c")
    for d in "abc":
        same_store(src, tmp_path / d)


def test_a_missing_part_is_named(src: Path, tmp_path: Path) -> None:
    base = tmp_path / "x.bundle"
    export_bundle(NAMES, base, models_dir=src, compress="none", split_size="100k")
    (tmp_path / "x.bundle.004").unlink()
    with pytest.raises(TruncatedBundle, match=r"x.bundle.004 is missing") as info:
        import_bundle(base, models_dir=tmp_path / "dst")
    assert info.value.installed == (ModelName.parse(NAMES[0]),)  # type: ignore[attr-defined]


def test_truncated_bundle_keeps_completed_models_only(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    export_bundle(NAMES, out, models_dir=src, compress="zstd")
    dst = tmp_path / "dst"
    install(dst, [Model(ModelName.parse("existing:1"), make_model(size_bytes=5000, seed=9))])
    ModelStore(dst).prepare()
    before = snapshot(dst)
    data = out.read_bytes()
    with pytest.raises(TruncatedBundle, match="truncated") as info:
        import_bundle(io.BytesIO(data[: int(len(data) * 0.8)]), models_dir=dst)
    assert "Models installed: alpha:latest" in str(info.value)
    store = ModelStore(dst)
    assert {m.name.display for m in store.list_models()} == {"alpha:latest", "existing:1"}
    assert staging_empty(dst)
    after = snapshot(dst)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that was there changed
    # importing the whole bundle afterwards skips what is there already
    again = import_bundle(out, models_dir=dst)
    assert again.unchanged == (ModelName.parse(NAMES[0]),) and again.blobs_skipped == 5


def test_blobs_already_in_the_store_are_read_but_not_rewritten(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    export_bundle(NAMES, out, models_dir=src)
    dst = tmp_path / "dst"
    import_bundle(out, models_dir=dst)
    inodes = {p.name: p.stat().st_ino for p in (dst / "blobs").iterdir()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in (dst / "blobs").iterdir()}
    again = import_bundle(out, models_dir=dst)
    assert again.blobs_written == 0 and again.blobs_skipped == 7
    assert set(again.unchanged) == {ModelName.parse(n) for n in NAMES}
    assert {p.name: p.stat().st_ino for p in (dst / "blobs").iterdir()} == inodes
    assert {p.name: p.stat().st_mtime_ns for p in (dst / "blobs").iterdir()} == mtimes


def test_a_changed_tag_is_replaced(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    install(dst, [Model(ModelName.parse("alpha:latest"), make_model(size_bytes=5000, seed=77))])
    result = import_bundle(export_bundle(NAMES, tmp_path / "x", models_dir=src).paths[0], models_dir=dst)
    assert result.replaced == (ModelName.parse("alpha:latest"),)
    same_store_manifest = (src / "manifests/registry.ollama.ai/library/alpha/latest").read_bytes()
    assert (dst / "manifests/registry.ollama.ai/library/alpha/latest").read_bytes() == same_store_manifest


def test_a_bundle_made_by_tar_from_a_store(src: Path, tmp_path: Path) -> None:
    plain = subprocess.run(
        ["tar", "-C", str(src), "-cf", "-", "manifests", "blobs"], capture_output=True, check=True
    ).stdout
    result = import_bundle(io.BytesIO(plain), models_dir=tmp_path / "a")
    assert result.format == "tar" and len(result.models) == 2
    same_store(src, tmp_path / "a")
    packed = tmp_path / "store.tar.zst"
    subprocess.run(["tar", "-C", str(src), "--zstd", "-cf", str(packed), "./manifests", "./blobs"], check=True)
    assert len(import_bundle(packed, models_dir=tmp_path / "b").models) == 2
    same_store(src, tmp_path / "b")
    info = inspect_bundle(packed)
    assert info.format == "tar" and {m.name.display for m in info.models} == {"alpha:latest", NAMES[1]}


def test_tar_can_unpack_a_bundle_as_the_emergency_path(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    export_bundle(NAMES, out, models_dir=src, compress="zstd")
    dst = tmp_path / "dst"
    dst.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(out), "-C", str(dst)], check=True)
    same_store(src, dst)


def test_oci_layout_directory_round_trip(src: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    result = export_bundle(NAMES, layout, models_dir=src, format="oci")
    assert result.format == "oci" and result.paths == (str(layout),)
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    exact = [m for m in index["manifests"] if "io.ollama-seed.name" in m["annotations"]]
    twins = [m for m in index["manifests"] if "org.opencontainers.image.ref.name" in m["annotations"]]
    assert [m["annotations"]["io.ollama-seed.name"] for m in exact] == [
        "registry.ollama.ai/library/alpha:latest",
        NAMES[1],
    ]
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in twins] == [
        "registry.ollama.ai/library/alpha:latest",
        NAMES[1],
    ]
    assert {m["mediaType"] for m in twins} == {"application/vnd.oci.image.manifest.v1+json"}
    assert [m["annotations"]["io.ollama-seed.twin-of"] for m in twins] == [m["digest"] for m in exact]
    import hashlib

    for path in (layout / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    for entry in exact:  # the exact manifest bytes, so the model keeps its digest
        raw = (layout / "blobs" / "sha256" / entry["digest"][7:]).read_bytes()
        assert (
            raw == (src / "manifests" / "registry.ollama.ai/library/alpha/latest").read_bytes()
            or raw == next(p for p in (src / "manifests" / "hf.co").rglob("*") if p.is_file()).read_bytes()
        )
    imported = import_bundle(layout, models_dir=tmp_path / "dst")
    assert imported.format == "oci" and len(imported.models) == 2
    same_store(src, tmp_path / "dst")


def test_oci_layout_tar_round_trip(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "layout.tar"
    export_bundle(NAMES, out, models_dir=src, format="oci")
    with tarfile.open(out) as tar:
        assert tar.getnames()[:2] == ["oci-layout", "index.json"]
    import_bundle(out, models_dir=tmp_path / "a")
    same_store(src, tmp_path / "a")
    # a layout tarred by tar (index.json anywhere) imports too
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(out), "-C", str(unpacked)], check=True)
    retarred = subprocess.run(
        ["tar", "-C", str(unpacked), "-cf", "-", "blobs", "index.json", "oci-layout"], capture_output=True, check=True
    ).stdout
    import_bundle(io.BytesIO(retarred), models_dir=tmp_path / "b")
    same_store(src, tmp_path / "b")


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (apt-get install skopeo)")
def test_skopeo_reads_the_oci_layout(src: Path, tmp_path: Path) -> None:
    layout, copy = tmp_path / "layout", tmp_path / "copy"
    export_bundle(NAMES, layout, models_dir=src, format="oci")
    ref = "registry.ollama.ai/library/alpha:latest"
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:{ref}"], capture_output=True, check=True)
    assert json.loads(raw.stdout)["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    subprocess.run(
        ["skopeo", "copy", "-q", f"oci:{layout}:{ref}", f"oci:{copy}:{ref}"], check=True, capture_output=True
    )
    result = import_bundle(copy, models_dir=tmp_path / "dst")  # a layout another tool wrote
    assert result.models == (ModelName.parse(ref),)
    assert not ModelStore(tmp_path / "dst").verify(ModelName.parse(ref))


def test_oci_layout_refuses_symlinked_blobs(src: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    export_bundle(NAMES, layout, models_dir=src, format="oci")
    victim = next(p for p in (layout / "blobs" / "sha256").iterdir() if p.stat().st_size == 300_000)
    victim.unlink()
    victim.symlink_to("/etc/hostname")
    with pytest.raises(BundleError, match="symbolic links are refused"):
        import_bundle(layout, models_dir=tmp_path / "dst")


@pytest.mark.parametrize("fifo", ["index.json", "a blob"])
def test_oci_layout_refuses_a_fifo_without_waiting(src: Path, tmp_path: Path, fifo: str) -> None:
    """Opening a FIFO for reading waits for a writer: the import must refuse it instead of hanging."""
    layout = tmp_path / "layout"
    export_bundle(NAMES, layout, models_dir=src, format="oci")
    path = layout / "index.json" if fifo == "index.json" else next((layout / "blobs" / "sha256").iterdir())
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(BundleError, match="not a regular file"):
        import_bundle(layout, models_dir=tmp_path / "dst")


def test_inspect_and_verify(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    export_bundle(NAMES, out, models_dir=src, compress="zstd")
    info = inspect_bundle(out)
    assert info.format == "ollama-seed" and info.version == 1 and info.compression == "zstd"
    assert info.created_by.startswith("ollama-seed ")
    assert [m.name.display for m in info.models] == ["alpha:latest", NAMES[1]]
    assert len(info.blobs) == 7 and info.size == sum(s for _, s in info.blobs) + sum(
        len(p.read_bytes()) for p in (src / "manifests").rglob("*") if p.is_file()
    )
    checked = verify_bundle(out)
    assert len(checked.models) == 2 and checked.blobs_written == 0
    assert not (tmp_path / "home" / ".ollama").exists()  # verify wrote nothing anywhere


def test_auto_compression_follows_the_data(tmp_path: Path) -> None:
    root = tmp_path / "s"
    install(
        root,
        [
            Model(ModelName.parse("random:1"), make_model(size_bytes=2_000_000, seed=5)),
            Model(
                ModelName.parse("zeros:1"),
                make_model(extra_layers=[("x/zeros", bytes(2_000_000))], size_bytes=1000, seed=6),
            ),
        ],
    )
    assert export_bundle("random:1", tmp_path / "r", models_dir=root).compression == "none"
    zeros = export_bundle("zeros:1", tmp_path / "z", models_dir=root)
    assert zeros.compression == "zstd:1" and zeros.bytes_out < zeros.bytes_in / 10


def test_export_refuses_missing_incomplete_and_corrupt_models(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    with pytest.raises(ModelNotFound):
        export_bundle("nothere", out, models_dir=src)
    blob = next(p for p in (src / "blobs").iterdir() if p.stat().st_size == 300_000)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        export_bundle(NAMES, out, models_dir=src)
    assert list(tmp_path.glob("*x.bundle*")) == []  # no half-written bundle left behind
    blob.unlink()
    with pytest.raises(StoreError, match="incomplete"):
        export_bundle(NAMES, out, models_dir=src)


def test_a_full_disk_mid_blob_says_so(src: Path) -> None:
    """ENOSPC while a blob is copied stays InsufficientSpace (exit 6), not a read error."""
    from ollama_seed.bundle.export import Exporter

    class FullSink:
        written = 0

        def write(self, data: bytes | memoryview) -> int:
            self.written += len(data)
            if self.written > 100_000:
                raise InsufficientSpace("no space left on the device while writing x.bundle; free some space")
            return len(data)

    store = ModelStore(src)
    model = store.get(ModelName.parse(NAMES[0]))
    with pytest.raises(InsufficientSpace, match="no space left"):
        Exporter(store, [(model.name, model.manifest)]).write_tar(FullSink())  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_async_api_reports_progress(src: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    result = await aexport_bundle(NAMES, tmp_path / "x", models_dir=src, progress=events.append)
    assert {e.status for e in events if isinstance(e, Status)} == {"exporting", "success"}
    assert sum(e.total for e in events if isinstance(e, LayerProgress) and e.done) == result.bytes_in - sum(
        len(p.read_bytes()) for p in (src / "manifests").rglob("*") if p.is_file()
    )
    events.clear()
    imported = await aimport_bundle(tmp_path / "x", models_dir=tmp_path / "dst", progress=events.append)
    assert len(imported.models) == 2
    assert [e.model for e in events if isinstance(e, Status) and e.status == "success"] == ["alpha:latest", NAMES[1]]


class _Slow(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        time.sleep(0.01)
        n = min(len(b), 4096, len(self.data) - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@pytest.mark.anyio
async def test_cancelling_an_import_removes_what_it_staged(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    await aexport_bundle(NAMES, out, models_dir=src, compress="none")
    dst = tmp_path / "dst"
    with anyio.move_on_after(0.3) as scope:
        await aimport_bundle(_Slow(out.read_bytes()), models_dir=dst)  # type: ignore[arg-type]
    assert scope.cancelled_caught
    assert not dst.exists()  # it was new: a cancelled import leaves no empty store behind


def test_blocking_api_refuses_a_running_loop(src: Path, tmp_path: Path) -> None:
    async def inner() -> None:
        with pytest.raises(RuntimeError, match="aexport_bundle"):
            export_bundle(NAMES, tmp_path / "x", models_dir=src)

    anyio.run(inner)


def test_cli_export_ls_verify_import(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.bundle"
    common = ["--models-dir", str(src), "--progress", "none"]
    assert main(["export", *NAMES, "-o", str(out), "--compress", "zstd:3", "--json", *common]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["compression"] == "zstd:3" and exported["blobs"] == 7
    assert main(["bundle", "ls", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "alpha:latest" in listing and "7 distinct blob(s)" in listing
    assert main(["bundle", "verify", str(out), "--progress", "none"]) == 0
    assert "ok: 2 model(s)" in capsys.readouterr().out
    assert main(["import", str(out), "--models-dir", str(tmp_path / "dst"), "--progress", "none"]) == 0
    assert "alpha:latest: installed" in capsys.readouterr().err
    assert main(["export", "alpha", "-o", "-", "--split-size", "1M", *common]) == 2
    assert main(["export", "alpha", "-o", str(tmp_path / "y"), "--compress", "lz4", *common]) == 2


def test_import_does_not_need_the_store_to_exist(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.bundle"
    export_bundle(NAMES, out, models_dir=src)
    dst = tmp_path / "deep" / "new" / "models"
    import_bundle(out, models_dir=dst)
    same_store(src, dst)
    assert oct((dst / ".ollama-seed").stat().st_mode & 0o777) == "0o700"
    assert shutil.which("tar")
    assert os.stat(next((dst / "blobs").iterdir())).st_mode & 0o777 == 0o644


def test_a_thin_bundle_uses_blobs_already_in_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An index may name blobs the bundle does not carry, if the target store has them."""
    from ollama_seed.bundle.format.index import BundleIndex
    from ollama_seed.bundle.format.names import INDEX_MEMBER
    from tests.support.craft import join, member, models

    first, second = models(2)
    full = BundleIndex.build([(second.name, second.manifest)], created_by="t", created="")
    shared = {b.digest for b in first.manifest.blobs}
    thin = BundleIndex(full.models, tuple(b for b in full.blobs if b.digest not in shared), "t", "")
    data = join(
        [
            member(INDEX_MEMBER, thin.encode()),
            *[member(b.path, second.built.blob(str(b.digest)).read_bytes()) for b in thin.blobs],
            member(second.manifest_path, second.built.manifest),
        ]
    )
    path = tmp_path / "thin.bundle"
    path.write_bytes(data)
    with pytest.raises(BundleError, match="neither in the bundle nor in the store"):
        verify_bundle(path)
    dst = tmp_path / "dst"
    install(dst, [first])
    assert len(verify_bundle(path, models_dir=dst).models) == 1
    result = import_bundle(path, models_dir=dst)
    assert result.blobs_written == 2 and not ModelStore(dst).verify(second.name)
    assert main(["bundle", "ls", str(path), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["format"] == "ollama-seed" and [m["name"] for m in listing["models"]] == ["m1:latest"]
    assert len(listing["blobs"]) == 2
