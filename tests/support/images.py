"""Model images for tests: stores of small models, and an OCI layout's documents read and rewritten (hostile images)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.craft import install, models, snapshot

__all__ = [
    "add_layer",
    "layout_blob",
    "layout_doc",
    "layout_put",
    "layout_ref",
    "models_of",
    "make_keys",
    "rewrite",
    "skopeo_copy",
    "store_models",
    "tar_file",
    "tar_of",
    "wrong_diff_id",
]

REF_NAME = "org.opencontainers.image.ref.name"


def store_models(root: Path, count: int = 2, size: int = 200_000) -> list[str]:
    items = models(count, size)
    install(root, items)
    return [m.name.display for m in items]


def make_keys(root: Path, labels: tuple[str, ...] = ("site", "other")) -> dict[str, Path]:
    """Unencrypted P-256 key pairs ``LABEL.key``/``LABEL.pub`` under *root*, by file name."""
    from ollama_seed.wire.keys import SigningKey

    for label in labels:
        SigningKey.generate("p256").save(root / f"{label}.key", root / f"{label}.pub", None)
    return {f"{label}.{ext}": root / f"{label}.{ext}" for label in labels for ext in ("key", "pub")}


def skopeo_copy(src: str, dst: str, *flags: str) -> None:
    """``skopeo copy --preserve-digests FLAGS SRC DST``, which must succeed (skipped without skopeo)."""
    import pytest

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (scripts/install-test-deps.sh installs it)")
    done = subprocess.run([skopeo, "copy", "--preserve-digests", *flags, src, dst], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def layout_blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def layout_doc(layout: Path, digest: str) -> dict[str, Any]:
    return dict(json.loads(layout_blob(layout, digest).read_bytes()))


def layout_put(layout: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    layout_blob(layout, digest).write_bytes(data)
    return digest, len(data)


def layout_ref(layout: Path, name: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    return next(m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == name)


def rewrite(layout: Path, name: str, change: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
    """Let *change* edit the manifest and config of ref *name*; re-hash both and point the ref at them."""
    ref = layout_ref(layout, name)
    manifest = layout_doc(layout, ref["digest"])
    config = layout_doc(layout, manifest["config"]["digest"])
    change(manifest, config)
    manifest["config"]["digest"], manifest["config"]["size"] = layout_put(layout, json.dumps(config).encode())
    digest, size = layout_put(layout, json.dumps(manifest).encode())
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get(REF_NAME) == name:
            m["digest"], m["size"] = digest, size
    (layout / "index.json").write_text(json.dumps(index))


def tar_of(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(data[info.name]) if info.name in data else None)
    return buf.getvalue()


def add_layer(layout: Path, name: str, tar: bytes) -> None:
    """Append a model-annotated layer holding *tar* below the manifests layer."""
    digest, size = layout_put(layout, tar)

    def change(manifest: dict[str, Any], config: dict[str, Any]) -> None:
        desc = {
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest,
            "size": size,
            "annotations": {"io.ollama-seed.layer": "sha256:" + "1" * 64},
        }
        manifest["layers"].insert(0, desc)
        config["rootfs"]["diff_ids"].insert(0, digest)

    rewrite(layout, name, change)


def models_of(root: Path) -> dict[str, tuple[str, int, str]]:
    return {k: v[:3] for k, v in snapshot(root).items() if not k.startswith(".ollama-seed")}


def wrong_diff_id(layout: Path) -> None:
    def change(manifest: dict[str, Any], config: dict[str, Any]) -> None:
        config["rootfs"]["diff_ids"][0] = "sha256:" + "2" * 64

    rewrite(layout, "t-linux-amd64", change)


def tar_file(name: str, data: bytes = b"x") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info
