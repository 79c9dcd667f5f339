"""Model images through a real registry (Docker Distribution) and skopeo: push, round trips, extract, rebuilds."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ollama_seed.bundle.image.api import build_image, extract_image, verify_image
from tests.support.images import models_of, store_models
from tests.support.model import make_model
from tests.support.registry import DockerRegistry

pytestmark = [pytest.mark.interop, pytest.mark.registry]


def _skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        pytest.skip("skopeo is not installed (scripts/install-test-deps.sh installs it)")
    return path


def _uploads(reg: DockerRegistry, repo: str) -> int:
    text = (reg.workdir / "registry.log").read_text(errors="replace")
    return text.count(f'"POST /v2/{repo}/blobs/uploads/')


def test_push_skopeo_round_trips_and_extract(tmp_path: Path, docker_registry: DockerRegistry) -> None:
    skopeo = _skopeo()
    store = tmp_path / "store"
    names = store_models(store, 2, 300_000)
    ref = f"{docker_registry.host}/img/round:v1"
    pushed = build_image(names, push=ref, models_dir=store, insecure=True)
    # registry -> OCI layout keeps every digest (skopeo copies the index and both platforms)
    back = tmp_path / "back"
    done = subprocess.run(
        [skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{ref}", f"oci:{back}:v1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((back / "index.json").read_text())["manifests"][0]["digest"] == str(pushed.digest)
    # our layout -> registry -> layout keeps every digest too
    layout = tmp_path / "img"
    built = build_image(names, oci_layout=f"{layout}:v1", models_dir=store)
    assert built.digest == pushed.digest
    other = f"{docker_registry.host}/img/copied:v1"
    for src, dst, flag in (
        (f"oci:{layout}:v1", f"docker://{other}", "--dest-tls-verify=false"),
        (f"docker://{other}", f"oci:{tmp_path / 'again'}:v1", "--src-tls-verify=false"),
    ):
        done = subprocess.run(
            [skopeo, "copy", "--all", "--preserve-digests", flag, src, dst], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "again" / "index.json").read_text())["manifests"][0]["digest"] == str(built.digest)
    # verify and extract straight from the registry
    report = verify_image(ref, insecure=True)
    assert report.platforms == ("linux/amd64", "linux/arm64/v8")
    out = tmp_path / "out"
    extracted = extract_image(ref, insecure=True, models_dir=out)
    assert models_of(out) == models_of(store)
    assert not (out / ".ollama-seed" / "image-layers").exists()
    again = extract_image(ref, insecure=True, models_dir=out)
    assert again.blobs_written == 0 and again.layers_skipped == extracted.layers_read - 1


def test_a_rebuild_after_a_new_system_prompt_pushes_only_the_changed_layers(
    tmp_path: Path, docker_registry: DockerRegistry
) -> None:
    store = tmp_path / "store"
    repo = "img/rebuild"
    make_model(size_bytes=8_000_000, seed=7, system="You are terse.").expected_store(
        store, "registry.ollama.ai", "library/m", "1"
    )
    first = build_image(["m:1"], push=f"{docker_registry.host}/{repo}:v1", models_dir=store, insecure=True)
    before = _uploads(docker_registry, repo)
    make_model(size_bytes=8_000_000, seed=7, system="You are verbose.").expected_store(
        store, "registry.ollama.ai", "library/m", "1"
    )
    second = build_image(["m:1"], push=f"{docker_registry.host}/{repo}:v2", models_dir=store, insecure=True)
    uploads = _uploads(docker_registry, repo) - before
    old = {la.digest for la in first.layers}
    changed = [la for la in second.layers if la.digest not in old]
    # the system layer, the model's config blob (it names the layers) and the manifests layer are new;
    # the 8 MB weights, template, license and params layers are not sent again (HEAD finds them)
    assert len(changed) == 3
    assert len(second.existing) == len(second.layers) - 3 and len(second.uploaded) == 3
    assert second.bytes_written < 100_000
    assert uploads == 3 + 2  # the changed layers and the two platforms' image configs


def test_an_interrupted_extract_resumes_where_it_stopped(tmp_path: Path, docker_registry: DockerRegistry) -> None:
    """Killed half-way through a layer (SIGKILL, a slow link), extract keeps the bytes it had and fetches the rest."""
    import signal
    import sys
    import time

    from tests.support.proxy import ProxyThread

    store = tmp_path / "store"
    model = make_model(size_bytes=24_000_000, seed=9)
    model.expected_store(store, "registry.ollama.ai", "library/big", "1")
    ref = f"{docker_registry.host}/img/resume:v1"
    build_image(["big:1"], push=ref, models_dir=store, insecure=True)
    out = tmp_path / "out"
    # the weights layer holds one blob: its bytes go straight into the staging file a pull of that blob uses
    staging = out / ".ollama-seed" / "staging"
    with ProxyThread(docker_registry.url, total_bps=4_000_000) as slow:
        slow_ref = f"{slow.url.split('://', 1)[1]}/img/resume:v1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "ollama_seed", "image", "extract", slow_ref, "--insecure", "--models-dir", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and slow.stats.blob_bytes < 10_000_000:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = slow.stats.blob_bytes
    assert 5_000_000 < first < 24_000_000
    weights = max(model.blobs, key=lambda b: b.size)
    assert (staging / f"sha256-{weights.hex}.data").is_file()  # with its resume state beside it
    assert not (out / "manifests" / "registry.ollama.ai").exists()  # nothing installed yet
    with ProxyThread(docker_registry.url) as counting:
        ref2 = f"{counting.url.split('://', 1)[1]}/img/resume:v1"
        extract_image(ref2, insecure=True, models_dir=out)
        second = counting.stats.blob_bytes
    assert second < 24_000_000 - 4_000_000  # most of what the first run had was kept
    assert models_of(out) == models_of(store)
    assert not (out / ".ollama-seed" / "image-layers").exists()


@pytest.mark.parametrize("damage", ["traversal", "link", "diff_id"])
def test_a_hostile_image_in_a_registry_is_refused_before_anything_is_written(
    tmp_path: Path, docker_registry: DockerRegistry, damage: str
) -> None:
    import tarfile

    from ollama_seed.core.errors import BundleError
    from tests.support.craft import snapshot
    from tests.support.images import add_layer, skopeo_copy, tar_file, tar_of, wrong_diff_id

    store = tmp_path / "store"
    names = store_models(store, 1, 300_000)
    layout = tmp_path / "img"
    build_image(names, oci_layout=f"{layout}:t", models_dir=store)
    if damage == "traversal":
        add_layer(
            layout, "t-linux-amd64", tar_of([tar_file("models/blobs/../../etc/x")], {"models/blobs/../../etc/x": b"x"})
        )
    elif damage == "link":
        info = tarfile.TarInfo("models/blobs/sha256-" + "1" * 64)
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        add_layer(layout, "t-linux-amd64", tar_of([info], {}))
    else:
        wrong_diff_id(layout)
    ref = f"{docker_registry.host}/img/hostile-{damage}:t"
    skopeo_copy(f"oci:{layout}:t-linux-amd64", f"docker://{ref}", "--dest-tls-verify=false")
    out = tmp_path / "out"
    store_models(out, 1, 7777)
    before = {k: v for k, v in snapshot(out).items() if not k.startswith(".ollama-seed")}
    with pytest.raises(BundleError):
        extract_image(ref, insecure=True, models_dir=out)
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(".ollama-seed")} == before
