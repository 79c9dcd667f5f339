"""Model images checked by tools nobody here wrote: oci-image-tool, umoci, and the ollama-seed CLI on the result."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.images import models_of, store_models, wrong_diff_id

pytestmark = pytest.mark.interop


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/install-test-deps.sh installs it)")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ollama_seed", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_oci_image_tool_and_umoci_accept_the_image(tmp_path: Path, compression: str) -> None:
    oci_image_tool, umoci = _need("oci-image-tool"), _need("umoci")
    store = tmp_path / "store"
    names = store_models(store, 2, 300_000)
    layout = tmp_path / "img"
    done = _cli(
        "image",
        "build",
        *names,
        "--oci-layout",
        f"{layout}:v1",
        "--models-dir",
        str(store),
        "--compression",
        compression,
        "--progress",
        "none",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["refs"] == ["v1", "v1-linux-amd64", "v1-linux-arm64"]
    # oci-image-tool 1.0.0-rc1 finds only manifests of the machine's own platform in an index, so the
    # arm64 manifest is validated from a layout built for arm64 alone (the same layers)
    arm = tmp_path / "arm"
    assert (
        _cli(
            "image",
            "build",
            *names,
            "--oci-layout",
            f"{arm}:v1",
            "--models-dir",
            str(store),
            "--compression",
            compression,
            "--platform",
            "linux/arm64",
        ).returncode
        == 0
    )
    for where, ref in ((layout, "v1-linux-amd64"), (arm, "v1-linux-arm64")):
        check = subprocess.run(
            [oci_image_tool, "validate", "--type", "image", "--ref", f"name={ref}", str(where)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0 and "Validation succeeded" in check.stdout, check.stdout + check.stderr
    bundle = tmp_path / "bundle"
    unpack = subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:v1-linux-amd64", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert unpack.returncode == 0, unpack.stderr
    unpacked = bundle / "rootfs" / "models"
    assert models_of(unpacked) == models_of(store)  # byte-identical to the source store
    verified = _cli("verify", "--models-dir", str(unpacked))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    again = _cli("image", "verify", "--oci-layout", f"{layout}:v1", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["platforms"] == ["linux/amd64", "linux/arm64/v8"]


def test_umoci_and_image_verify_both_refuse_a_wrong_diff_id(tmp_path: Path) -> None:
    umoci = _need("umoci")
    store = tmp_path / "store"
    names = store_models(store, 1)
    layout = tmp_path / "img"
    assert _cli("image", "build", *names, "--oci-layout", f"{layout}:t", "--models-dir", str(store)).returncode == 0
    wrong_diff_id(layout)
    unpack = subprocess.run(
        [umoci, "unpack", "--rootless", "--image", f"{layout}:t-linux-amd64", str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert unpack.returncode != 0 and "diffid" in (unpack.stderr + unpack.stdout).lower()
    ours = _cli("image", "verify", "--oci-layout", f"{layout}:t-linux-amd64")
    assert ours.returncode == 12 and "diff_id" in ours.stderr
    out = tmp_path / "out"
    ours = _cli("image", "extract", "--oci-layout", f"{layout}:t-linux-amd64", "--models-dir", str(out))
    assert ours.returncode == 12 and not any((out / "manifests").rglob("*")) and not any((out / "blobs").rglob("*"))
