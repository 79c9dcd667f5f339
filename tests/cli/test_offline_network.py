"""``OLLAMA_SEED_OFFLINE=1`` reaches every command that could use the network (issue 25, item 6).

Before: ``serve --upstream``, ``image verify REF``, ``image extract REF``, ``image build --push``
and ``image build --base REF`` went to the network regardless. Offline they now refuse at once, with
exit 10, a message naming what would need the network and what to do instead, and nothing written;
what needs no network (``image extract --oci-layout``, ``serve`` without ``--upstream``) still works.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.cli import run_cli, start_cli
from tests.support.model import make_model
from tests.support.net import unasked

REPO, TAG = "library/demo", "v1"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_SEED_OFFLINE", "1")


@pytest.fixture
def registry_never_asked() -> Iterator[str]:
    """``127.0.0.1:PORT`` where something listens; the test fails if anybody connects."""
    with unasked() as where:
        yield where


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    make_model(size_bytes=1000, seed=26).expected_store(root, "registry.ollama.ai", REPO, TAG)
    return root


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _refused(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    assert "OLLAMA_SEED_OFFLINE is set" in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.usefixtures("offline")
def test_image_verify_and_extract_of_a_registry_image_refuse(
    registry_never_asked: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"{registry_never_asked}/ai/models:v1"
    assert main(["image", "verify", "--insecure", ref]) == 10
    _refused(capsys, f"image verify {ref}", "--oci-layout")
    models = tmp_path / "fresh"
    assert main(["image", "extract", "--insecure", "--models-dir", str(models), ref]) == 10
    _refused(capsys, f"image extract {ref}", "--oci-layout")
    assert not models.exists()  # nothing written


@pytest.mark.usefixtures("offline")
def test_image_build_with_push_or_a_registry_base_refuses(
    registry_never_asked: str, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(store)
    target = f"{registry_never_asked}/ai/models:v1"
    assert main(["image", "build", "--insecure", "--models-dir", str(store), "demo:v1", "--push", target]) == 10
    _refused(capsys, f"--push {target}", "--oci-layout", "--oci-archive")
    layout = tmp_path / "img"
    base = f"{registry_never_asked}/base/busybox:1"
    args = ["image", "build", "--models-dir", str(store), "demo:v1", "--oci-layout", str(layout), "--base", base]
    assert main([*args, "--insecure"]) == 10
    _refused(capsys, f"--base {base}", "oci:DIR")
    assert _tree(store) == before and not layout.exists()


@pytest.mark.usefixtures("offline")
def test_image_extract_from_a_layout_works_offline(store: Path, tmp_path: Path) -> None:
    layout = tmp_path / "img"
    assert main(["image", "build", "--models-dir", str(store), "demo:v1", "--oci-layout", str(layout)]) == 0
    target = tmp_path / "target"
    assert (
        main(["image", "extract", "--oci-layout", str(layout), "--models-dir", str(target), "--progress", "none"]) == 0
    )
    assert (target / "manifests" / "registry.ollama.ai" / "library" / "demo" / "v1").is_file()
    assert main(["image", "verify", "--oci-layout", str(layout), "--progress", "none"]) == 0


def test_serve_with_an_upstream_refuses_and_without_one_serves(
    registry_never_asked: str, store: Path, tmp_path: Path
) -> None:
    env = {"OLLAMA_SEED_OFFLINE": "1"}
    fresh = tmp_path / "fresh"
    upstream = f"http://{registry_never_asked}"
    done = run_cli("serve", "--models-dir", str(fresh), "--port", "0", "--upstream", upstream, env=env, timeout=60)
    assert done.returncode == 10, done.stderr
    assert "OLLAMA_SEED_OFFLINE is set" in done.stderr and f"--upstream {upstream}" in done.stderr
    assert "leave out --upstream" in done.stderr and "serving" not in done.stderr
    assert not fresh.exists()
    # without --upstream nothing needs the network: it serves the store
    log = tmp_path / "serve.log"
    proc = start_cli("serve", "--models-dir", str(store), "--port", "0", env=env, log=log)
    try:
        deadline = time.monotonic() + 30
        while "ollama-seed pull --mirror" not in (text := log.read_text(errors="replace")):
            assert proc.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.05)
        url = text.split(" on ", 1)[1].split()[0].rstrip(",")
        with urllib.request.urlopen(f"{url}/v2/{REPO}/tags/list", timeout=10) as resp:
            assert json.loads(resp.read()) == {"name": REPO, "tags": [TAG]}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
