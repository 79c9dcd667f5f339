"""Model images run by a real container runtime (podman): on a busybox base, and mounted as an image volume."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_seed.bundle.image.api import build_image
from tests.support.images import skopeo_copy, store_models
from tests.support.podman import BUSYBOX, Podman, busybox_layout
from tests.support.registry import DockerRegistry

pytestmark = pytest.mark.interop

CHECK = 'cd "$OLLAMA_MODELS/blobs" && for f in sha256-*; do echo "${f#sha256-}  $f"; done | sha256sum -c'


def short_lowercase_dir() -> Path:
    """A new folder under /tmp: podman refuses a --runroot of over 50 characters and an ``oci:`` path
    with capitals (its image name), and pytest's folders under CI's ``mktemp -d`` have both. The name
    is hex only: mkdtemp's random part may hold ``_``, and ``-_`` is not valid in an image name."""
    while True:
        path = Path("/tmp") / f"ollama-seed-podman-{secrets.token_hex(6)}"
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return path


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    if shutil.which("podman") is None or not BUSYBOX.is_file():
        pytest.skip("podman or busybox-static is not installed (scripts/install-test-deps.sh installs them)")
    work = short_lowercase_dir()
    yield Podman(work)
    subprocess.run(["rm", "-rf", str(work)], check=False)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """This module's own tmp_path, in a folder podman takes (see short_lowercase_dir)."""
    path = short_lowercase_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_image_on_a_busybox_base_runs_and_its_blobs_hash_to_their_names(tmp_path: Path, podman: Podman) -> None:
    store = tmp_path / "store"
    names = store_models(store, 2, 300_000)
    base = busybox_layout(tmp_path / "busybox")
    built = build_image(names, oci_layout=f"{tmp_path / 'img'}:v1", models_dir=store, base=f"oci:{base}")
    assert [p for p, _ in built.platforms] == ["linux/amd64"]  # the base's platforms
    run = podman("run", "--rm", "--network", "none", f"oci:{tmp_path / 'img'}:v1", "/bin/sh", "-c", CHECK)
    assert run.returncode == 0, run.stderr[-2000:]
    blobs = sorted(p.name for p in (store / "blobs").iterdir())
    assert sorted(line.split(":")[0] for line in run.stdout.split("\n") if line.endswith(": OK")) == blobs
    # the base's layer is untouched: the same digest as in the base layout
    base_manifest = json.loads((base / "index.json").read_text())["manifests"][0]["digest"]
    base_layer = json.loads((base / "blobs" / "sha256" / base_manifest[7:]).read_text())["layers"][0]["digest"]
    ours = json.loads((tmp_path / "img" / "blobs" / "sha256" / str(built.platforms[0][1])[7:]).read_text())
    assert ours["layers"][0]["digest"] == base_layer
    assert ours["annotations"]["org.opencontainers.image.base.name"] == f"oci:{base}"


def test_a_model_only_image_mounted_as_an_image_volume_is_there_and_read_only(tmp_path: Path, podman: Podman) -> None:
    store = tmp_path / "store"
    names = store_models(store, 1, 300_000)
    build_image(names, oci_layout=f"{tmp_path / 'models'}:v1", models_dir=store)
    base = busybox_layout(tmp_path / "busybox")
    pulled = podman("pull", "-q", f"oci:{tmp_path / 'models'}:v1")
    assert pulled.returncode == 0, pulled.stderr
    image_id = pulled.stdout.strip().splitlines()[-1]
    script = (
        "export OLLAMA_MODELS=/mnt/volume/models; "
        + CHECK
        + "; ls $OLLAMA_MODELS/manifests/registry.ollama.ai/library; "
        "if touch $OLLAMA_MODELS/x 2>/dev/null; then echo WRITABLE; else echo READ-ONLY; fi"
    )
    run = podman(
        "run", "--rm", "--network", "none",
        "--mount", f"type=image,source={image_id},destination=/mnt/volume",
        f"oci:{base}", "/bin/sh", "-c", script,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count(": OK") == len(list((store / "blobs").iterdir()))
    assert "m0" in run.stdout.split() and run.stdout.strip().endswith("READ-ONLY")


@pytest.mark.registry
def test_base_from_the_same_registry_is_mounted_and_the_image_runs(
    tmp_path: Path, podman: Podman, docker_registry: DockerRegistry
) -> None:
    base = busybox_layout(tmp_path / "busybox")
    base_ref = f"{docker_registry.host}/base/busybox:1"
    skopeo_copy(f"oci:{base}:latest", f"docker://{base_ref}", "--dest-tls-verify=false")
    store = tmp_path / "store"
    names = store_models(store, 1, 300_000)
    ref = f"{docker_registry.host}/apps/with-models:1"
    pushed = build_image(names, push=ref, models_dir=store, insecure=True, base=base_ref)
    assert len(pushed.mounted) == 1  # the busybox layer: a cross-repository mount, not an upload
    pulled = podman("pull", "--tls-verify=false", ref)
    assert pulled.returncode == 0, pulled.stderr
    run = podman("run", "--rm", "--network", "none", ref, "/bin/sh", "-c", CHECK)
    assert run.returncode == 0 and run.stdout.count(": OK") == len(list((store / "blobs").iterdir())), run.stderr


@pytest.mark.registry
def test_a_docker_schema2_base_gives_an_all_oci_image_that_runs(
    tmp_path: Path, podman: Podman, docker_registry: DockerRegistry
) -> None:
    skopeo = shutil.which("skopeo")
    assert skopeo is not None
    base = busybox_layout(tmp_path / "busybox")
    base_ref = f"{docker_registry.host}/base/busybox:docker"
    copy = subprocess.run(
        [skopeo, "copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{base}:latest", f"docker://{base_ref}"],
        capture_output=True,
        text=True,
    )
    assert copy.returncode == 0, copy.stderr
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{base_ref}"], capture_output=True, text=True
    ).stdout
    assert json.loads(raw)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    store = tmp_path / "store"
    names = store_models(store, 1, 300_000)
    layout = tmp_path / "img"
    built = build_image(names, oci_layout=f"{layout}:v1", models_dir=store, insecure=True, base=base_ref)
    manifest = json.loads((layout / "blobs" / "sha256" / str(built.platforms[0][1])[7:]).read_text())
    types = {manifest["mediaType"], manifest["config"]["mediaType"], *(la["mediaType"] for la in manifest["layers"])}
    assert all(".oci." in t for t in types), types  # never Docker and OCI types in one manifest
    assert json.loads(raw)["layers"][0]["digest"] == manifest["layers"][0]["digest"]  # the base layer's bytes kept
    run = podman("run", "--rm", "--network", "none", f"oci:{layout}:v1", "/bin/sh", "-c", CHECK)
    assert run.returncode == 0 and run.stdout.count(": OK") == len(list((store / "blobs").iterdir())), run.stderr
