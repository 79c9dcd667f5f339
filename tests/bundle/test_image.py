"""Model images: build (layout, archive), reproducibility, layering, verify, extract, hostile images."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.bundle.image.api import build_image, extract_image, verify_image
from ollama_seed.core.errors import BundleError, ConfigError, IntegrityError, OfflineError
from ollama_seed.core.ociimage import layer_cap
from tests.support.craft import snapshot
from tests.support.images import (
    add_layer,
    layout_blob,
    layout_doc,
    layout_put,
    layout_ref,
    models_of,
    rewrite,
    store_models,
    tar_file,
    tar_of,
    wrong_diff_id,
)


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    store = tmp_path / "store"
    names = store_models(store)
    layout = tmp_path / "img"
    build_image(names, oci_layout=f"{layout}:t", models_dir=store)
    return store, layout, names


def test_build_is_reproducible_and_layers_are_per_blob(tmp_path: Path, built: tuple[Path, Path, list[str]]) -> None:
    store, layout, names = built
    again = build_image(names, oci_layout=f"{tmp_path / 'again'}:t", models_dir=store)
    archive = build_image(names, oci_archive=tmp_path / "img.tar", models_dir=store)
    first = layout_ref(layout, "t")["digest"]
    assert str(again.digest) == str(archive.digest) == first
    # one layer per distinct blob of the two models, largest first, then the manifests layer
    blobs = {layer["digest"]: layer["size"] for m in names for layer in _ollama_manifest(store, m)}
    assert len(again.layers) == len(blobs) + 1
    assert [la.label for la in again.layers][-1] == "manifests"
    sizes = [blobs[la.label] for la in again.layers[:-1]]
    assert sizes == sorted(sizes, reverse=True)
    # uncompressed: the layer digest is its diff_id; both platforms share every layer
    assert all(la.digest == la.diff_id for la in again.layers)
    amd, arm = (layout_doc(layout, layout_ref(layout, f"t-linux-{a}")["digest"]) for a in ("amd64", "arm64"))
    assert amd["layers"] == arm["layers"] and amd["config"] != arm["config"]
    config = layout_doc(layout, amd["config"]["digest"])
    assert config["config"]["Env"] == ["OLLAMA_MODELS=/models"] and config["created"] == "1970-01-01T00:00:00Z"
    # the archive holds the same blobs as the directory
    with tarfile.open(tmp_path / "img.tar") as tf:
        for info in tf.getmembers():
            if info.isfile() and info.name.startswith("blobs/sha256/"):
                data = tf.extractfile(info).read()  # type: ignore[union-attr]
                assert hashlib.sha256(data).hexdigest() == info.name.rsplit("/", 1)[1]


def _ollama_manifest(store: Path, name: str) -> list[dict[str, Any]]:
    path = store / "manifests" / "registry.ollama.ai" / "library" / name.split(":")[0] / name.split(":")[1]
    doc = json.loads(path.read_bytes())
    return [*doc["layers"], doc["config"]]


def test_a_shared_blob_gives_the_same_layer_in_every_image(tmp_path: Path) -> None:
    store = tmp_path / "store"
    names = store_models(store)
    one = build_image(names[:1], oci_layout=tmp_path / "one", models_dir=store, mtime=5)
    two = build_image(names[1:], oci_layout=tmp_path / "two", models_dir=store, mtime=5, models_path="/models")
    shared = {la.label: la.digest for la in one.layers}.items() & {la.label: la.digest for la in two.layers}.items()
    # template, license and params are shared by the two models: same blob, same layer digest
    assert len(shared) == 3
    assert one.digest != two.digest


def test_layering_options(tmp_path: Path) -> None:
    store = tmp_path / "store"
    names = store_models(store)
    single = build_image(names, oci_layout=tmp_path / "s", models_dir=store, layering="single")
    assert len(single.layers) == 1 and "manifests" in single.layers[0].label.split()
    capped = build_image(names, oci_layout=tmp_path / "c", models_dir=store, max_layers=3)
    assert len(capped.layers) == 3 and capped.layers[-1].label == "manifests"
    assert len(capped.layers[1].label.split()) > 1  # the smallest blobs merged
    for layout in ("s", "c"):
        report = verify_image(oci_layout=tmp_path / layout)
        assert sorted(n.display for n in report.models) == sorted(names)
    with pytest.raises(ConfigError):
        build_image(names, oci_layout=tmp_path / "x", models_dir=store, layering="many")


@pytest.mark.parametrize("compression", ["gzip", "zstd:3"])
def test_compressed_layers_verify_and_extract(tmp_path: Path, compression: str) -> None:
    store = tmp_path / "store"
    names = store_models(store)
    result = build_image(names, oci_layout=tmp_path / "img", models_dir=store, compression=compression)
    assert all(la.digest != la.diff_id for la in result.layers)
    assert result.layers[0].media_type.endswith("+" + compression.split(":")[0])
    again = build_image(names, oci_layout=tmp_path / "again", models_dir=store, compression=compression)
    assert again.digest == result.digest
    verify_image(oci_layout=tmp_path / "img")
    extract_image(oci_layout=tmp_path / "img", models_dir=tmp_path / "out")
    assert models_of(tmp_path / "out") == models_of(store)
    # an archive takes compressed layers too (each header rewritten once the size is known): same digests
    archive = build_image(names, oci_archive=tmp_path / "img.tar", models_dir=store, compression=compression)
    assert archive.digest == result.digest
    with tarfile.open(tmp_path / "img.tar") as tf:
        sizes = {m.name: m.size for m in tf.getmembers()}
    assert all(sizes[f"blobs/sha256/{la.digest.hex}"] == la.size for la in archive.layers)
    assert verify_image(oci_archive=tmp_path / "img.tar").digest == result.digest


def test_extract_installs_the_same_store_and_skips_what_is_there(
    tmp_path: Path, built: tuple[Path, Path, list[str]]
) -> None:
    store, layout, _ = built
    out = tmp_path / "out"
    report = extract_image(oci_layout=f"{layout}:t", models_dir=out)
    assert models_of(out) == models_of(store)
    assert report.platforms == ("linux/amd64",) and report.blobs_written == len(list((store / "blobs").iterdir()))
    again = extract_image(oci_layout=f"{layout}:t", models_dir=out)
    assert again.blobs_written == 0 and again.layers_skipped == report.layers_read - 1
    assert not (out / ".ollama-seed" / "image-layers").exists()


def test_offline_build_refuses_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(OfflineError):
        build_image(["nothere:1"], oci_layout=tmp_path / "img", models_dir=tmp_path / "store", offline=True)
    assert not (tmp_path / "img").exists()


def test_a_corrupt_store_blob_stops_the_build_and_leaves_no_layout(tmp_path: Path) -> None:
    store = tmp_path / "store"
    names = store_models(store, 1)
    blob = max((store / "blobs").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 1
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        build_image(names, oci_layout=tmp_path / "img", models_dir=store)
    assert not (tmp_path / "img").exists()


def test_layer_caps() -> None:
    assert layer_cap("ghcr.io") == (10 * 10**9, layer_cap("ghcr.io")[1])  # type: ignore[index]
    assert layer_cap("123456789012.dkr.ecr.eu-west-1.amazonaws.com")[0] == 52_000 << 20  # type: ignore[index]
    assert layer_cap("public.ecr.aws")[0] == 10_000 << 20  # type: ignore[index]
    assert layer_cap("127.0.0.1:5000") is None


# -- hostile and corrupt images: refused by verify and extract, the store left as it was --------------


def _wrong_layer_digest(layout: Path) -> None:
    manifest = layout_doc(layout, layout_ref(layout, "t-linux-amd64")["digest"])
    path = layout_blob(layout, manifest["layers"][0]["digest"])
    data = bytearray(path.read_bytes())
    data[4096] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncated_layer(layout: Path) -> None:
    manifest = layout_doc(layout, layout_ref(layout, "t-linux-amd64")["digest"])
    path = layout_blob(layout, manifest["layers"][0]["digest"])
    path.write_bytes(path.read_bytes()[:5000])


def _traversal(layout: Path) -> None:
    add_layer(layout, "t-linux-amd64", tar_of([tar_file("models/../../etc/x")], {"models/../../etc/x": b"x"}))


def _outside(layout: Path) -> None:
    add_layer(layout, "t-linux-amd64", tar_of([tar_file("etc/passwd")], {"etc/passwd": b"x"}))


def _link(layout: Path) -> None:
    info = tarfile.TarInfo("models/blobs/sha256-" + "3" * 64)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
    add_layer(layout, "t-linux-amd64", tar_of([info], {}))


def _fifo_manifest(layout: Path) -> None:
    path = layout_blob(layout, layout_ref(layout, "t-linux-amd64")["digest"])
    path.unlink()
    os.mkfifo(path)  # opening it for reading would wait for a writer forever


def _missing_blob(layout: Path) -> None:
    def change(manifest: dict[str, Any], config: dict[str, Any]) -> None:
        del manifest["layers"][0]
        del config["rootfs"]["diff_ids"][0]

    rewrite(layout, "t-linux-amd64", change)


def _foreign_layer_on_top(layout: Path) -> None:
    tar = tar_of([tar_file("models/blobs/x")], {"models/blobs/x": b"x"})
    digest, size = layout_put(layout, tar)

    def change(manifest: dict[str, Any], config: dict[str, Any]) -> None:
        manifest["layers"].append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}
        )
        config["rootfs"]["diff_ids"].append(digest)

    rewrite(layout, "t-linux-amd64", change)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (wrong_diff_id, "diff_id"),
        (_wrong_layer_digest, "hashes to"),
        (_truncated_layer, "bytes, but the manifest says"),
        (_traversal, r"'\.\.'"),
        (_outside, "outside the models path"),
        (_link, "symbolic link"),
        (_fifo_manifest, "not a regular file"),
        (_missing_blob, "neither in the bundle nor in the store"),
        (_foreign_layer_on_top, "not a model layer but lies above one"),
    ],
)
def test_hostile_images_are_refused_and_nothing_is_written(
    tmp_path: Path, built: tuple[Path, Path, list[str]], damage: Callable[[Path], None], message: str
) -> None:
    _, layout, _ = built
    damage(layout)
    with pytest.raises(BundleError, match=message):
        verify_image(oci_layout=f"{layout}:t-linux-amd64")
    out = tmp_path / "out"
    store_models(out, 1, 7777)  # a store with a model of its own, which must stay as it is
    before = snapshot(out)
    with pytest.raises(BundleError, match=message):
        extract_image(oci_layout=f"{layout}:t-linux-amd64", models_dir=out)
    after = snapshot(out)
    assert {k: v for k, v in after.items() if not k.startswith(".ollama-seed")} == {
        k: v for k, v in before.items() if not k.startswith(".ollama-seed")
    }
    staging = out / ".ollama-seed" / "staging"  # absent when the refusal came before the store was opened
    assert not staging.exists() or not list(staging.iterdir())


def test_verify_refuses_what_a_read_only_mount_cannot_serve(
    tmp_path: Path, built: tuple[Path, Path, list[str]]
) -> None:
    _, layout, _ = built
    private = tar_file("models/blobs/" + "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", b"")
    private.mode = 0o600
    empty = tarfile.TarInfo("models/manifests/registry.ollama.ai/library/gone")
    empty.type, empty.mode = tarfile.DIRTYPE, 0o755
    for members, message in (([private], "world-readable"), ([empty], "empty directory")):
        copy = tmp_path / f"copy-{message[:5]}"
        os.system(f"cp -r {layout} {copy}")
        add_layer(copy, "t-linux-amd64", tar_of(members, {private.name: b""}))
        with pytest.raises(BundleError, match=message):
            verify_image(oci_layout=f"{copy}:t-linux-amd64")


def test_a_layer_over_the_registrys_cap_is_refused_before_any_request(tmp_path: Path) -> None:
    """GHCR takes at most 10 GB per layer: an 11 GB weights blob (a sparse file here) stops the build at once."""
    from tests.support.model import make_model

    store = tmp_path / "store"
    built = make_model(size_bytes=1000, seed=3)
    built.expected_store(store, "registry.ollama.ai", "library/huge", "1")
    doc = json.loads((store / "manifests" / "registry.ollama.ai" / "library" / "huge" / "1").read_bytes())
    big = "sha256:" + "5" * 64
    with open(store / "blobs" / big.replace(":", "-"), "wb") as f:
        f.truncate(11 * 10**9)
    doc["layers"][0] = {"mediaType": "application/vnd.ollama.image.model", "digest": big, "size": 11 * 10**9}
    (store / "manifests" / "registry.ollama.ai" / "library" / "huge" / "1").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"GitHub Container Registry .*10\.0 GB"):
        build_image(["huge:1"], push="ghcr.io/acme/models:huge", models_dir=store, offline=True)


def test_no_exception_group_leaves_verify(built: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A task group's failure that is no SeedError comes out as itself, never as an exception group."""
    import builtins
    import importlib

    from ollama_seed.bundle.image import read

    group: Any = getattr(builtins, "ExceptionGroup", None) or importlib.import_module("exceptiongroup").ExceptionGroup

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise group("unhandled errors in a TaskGroup", [RuntimeError("a bug in a worker")])

    monkeypatch.setattr(read, "read_image", failing)
    _, layout, _ = built
    with pytest.raises(RuntimeError, match="a bug in a worker"):
        verify_image(oci_layout=f"{layout}:t-linux-amd64")
