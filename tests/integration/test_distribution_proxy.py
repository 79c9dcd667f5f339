"""A registry the site already runs: Docker Distribution in proxy (pull-through) mode in front of an
upstream registry, read by ``ollama-seed pull --mirror`` and ``ensure --mirror``, byte for byte,
for models whose blobs the proxy has not cached yet. The models' own registry is an address where
nothing listens, so every byte must have come through the proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import MIB
from tests.support.cli import run_cli
from tests.support.invariants import assert_store_ok, tree
from tests.support.model import make_model
from tests.support.net import free_port
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry


def proxy_blob_files(proxy: DockerRegistry) -> set[str]:
    """The blobs Distribution's proxy keeps in its storage (``.../blobs/sha256/xx/<hex>/data``)."""
    base = proxy.workdir / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {p.parent.name for p in base.glob("*/*/data")} if base.is_dir() else set()


@pytest.mark.registry
def test_pull_and_ensure_through_a_distribution_proxy(docker_registry: DockerRegistry, tmp_path: Path) -> None:
    first = make_model(tmp_path / "m1", size_bytes=7 * MIB + 5, seed=71)
    second = make_model(tmp_path / "m2", size_bytes=3 * MIB + 9, seed=72)
    seed_registry(docker_registry.url, "library/viaproxy", "latest", first)
    seed_registry(docker_registry.url, "library/viaproxy2", "q4", second)
    nowhere = f"127.0.0.1:{free_port()}"  # the name's registry: nothing listens there
    with DockerRegistry.start(tmp_path / "proxy", proxy_remote=docker_registry.url) as proxy:
        assert not proxy_blob_files(proxy)  # nothing cached yet
        out = tmp_path / "pulled"
        done = run_cli(
            "pull",
            "--insecure",
            "--mirror",
            proxy.url,
            "--models-dir",
            str(out),
            "--progress",
            "none",
            f"{nowhere}/library/viaproxy:latest",
        )
        assert done.returncode == 0, done.stderr + proxy.log_tail()
        want = tmp_path / "want"
        first.expected_store(want, nowhere, "library/viaproxy", "latest")
        assert tree(out) == tree(want)
        assert_store_ok(out)
        assert {b.hex for b in first.blobs} <= proxy_blob_files(proxy)  # the proxy fetched and kept them
        ensured = tmp_path / "ensured"
        done = run_cli(
            "ensure",
            "--insecure",
            "--mirror",
            proxy.url,
            "--models-dir",
            str(ensured),
            "--progress",
            "none",
            f"{nowhere}/library/viaproxy2:q4",
        )
        assert done.returncode == 0, done.stderr + proxy.log_tail()
        want2 = tmp_path / "want2"
        second.expected_store(want2, nowhere, "library/viaproxy2", "q4")
        assert tree(ensured) == tree(want2)
        again = run_cli(
            "pull",
            "--insecure",
            "--mirror",
            proxy.url,
            "--models-dir",
            str(tmp_path / "again"),
            "--progress",
            "none",
            f"{nowhere}/library/viaproxy:latest",
        )  # now from the proxy's cache
        assert again.returncode == 0, again.stderr
        assert tree(tmp_path / "again") == tree(want)
