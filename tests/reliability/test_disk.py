"""A full disk: refused before the download, ENOSPC part-way leaves no corruption, and the pull resumes.

Each test mounts a size-limited tmpfs under its tmp_path (root only; skipped otherwise, with the
reason) and pulls a 16 MiB model from a real docker-registry through the counting proxy.

- the free-space check fails before the first blob byte (exit 6, "not enough disk space");
- a writer fills the disk right after the check passed: preallocating the staging file fails
  with ENOSPC (exit 6, "no space left"), nothing is corrupt, and once space is freed the pull works;
- on a file system that cannot preallocate (simulated: ``posix_fallocate`` says EOPNOTSUPP) and with
  the check fooled, ENOSPC strikes mid-body: exit 6, no corruption, and after the file system grows
  the pull resumes from the bytes already on disk.
"""

from __future__ import annotations

import copy
import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.cli.main import main
from ollama_seed.core.plan import BlobPlan
from ollama_seed.store import oscalls
from tests.support import MIB
from tests.support.cli import run_cli
from tests.support.invariants import assert_store_ok, tree
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry
from tests.support.smallfs import fill, remount, small_fs

pytestmark = pytest.mark.registry
REPO = "library/roomy"


@pytest.fixture(scope="module")
def roomy(docker_registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    m = make_model(tmp_path_factory.mktemp("roomy"), size_bytes=16 * MIB + 99, seed=41)
    seed_registry(docker_registry.url, REPO, "latest", m)
    return m


@pytest.fixture
def proxy(docker_registry: DockerRegistry) -> Iterator[ProxyThread]:
    with ProxyThread(docker_registry.url) as p:
        yield p


def blob_bytes(p: ProxyThread) -> int:
    """Blob bytes the proxy relayed, once its count stops moving (connections cut by an error may
    still be relaying a chunk when the pull returns)."""
    last, deadline = -1, time.monotonic() + 5
    while time.monotonic() < deadline:
        now = sum(n for path, n in p.stats.snapshot()["per_path"].items() if "/blobs/" in path)
        if now == last:
            return int(now)
        last = now
        time.sleep(0.2)
    return last


def name_of(p: ProxyThread) -> str:
    return f"{p.url.removeprefix('http://')}/{REPO}:latest"


def args(models: Path, name: str) -> list[str]:
    return ["pull", "--insecure", "--progress", "none", "--models-dir", str(models), name]


def no_model_installed(models: Path, m: BuiltModel) -> None:
    assert_store_ok(models, modes=True)
    assert not (models / "blobs" / f"sha256-{m.model_layer.hex}").exists()
    assert not list((models / "manifests").rglob("latest")) if (models / "manifests").exists() else True


def test_free_space_check_fails_before_the_download(roomy: BuiltModel, proxy: ProxyThread, tmp_path: Path) -> None:
    with small_fs(tmp_path / "fs", 8 * MIB) as fs:
        models = fs / "models"
        proc = run_cli(*args(models, name_of(proxy)))
        assert proc.returncode == 6, proc.stderr
        assert "not enough disk space" in proc.stderr
        assert "free some space or set OLLAMA_MODELS to a larger disk" in proc.stderr
        assert blob_bytes(proxy) == 0
        assert not list((models / ".ollama-seed" / "staging").glob("*.data"))
        no_model_installed(models, roomy)


def test_disk_filled_after_the_check_fails_cleanly_then_works(
    roomy: BuiltModel,
    proxy: ProxyThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_usage = shutil.disk_usage
    with small_fs(tmp_path / "fs", 24 * MIB) as fs:
        models, filler = fs / "models", fs / "filler"

        def check_then_fill(path: Any) -> Any:
            usage = real_usage(path)  # the check passes ...
            fill(filler)  # ... and at that moment another writer takes every free byte
            return usage

        monkeypatch.setattr(shutil, "disk_usage", check_then_fill)
        assert main(args(models, name_of(proxy))) == 6
        err = capsys.readouterr().err
        assert "no space left on the device" in err and "free some space and run again" in err
        assert "Traceback" not in err
        no_model_installed(models, roomy)
        monkeypatch.setattr(shutil, "disk_usage", real_usage)
        filler.unlink()  # space freed
        assert main(args(models, name_of(proxy))) == 0
        expected = tmp_path / "expected"
        roomy.expected_store(expected, name_of(proxy).split("/")[0], REPO, "latest")
        assert tree(models) == tree(expected)
        assert_store_ok(models, modes=True)


def test_enospc_mid_body_leaves_no_corruption_and_resumes(
    roomy: BuiltModel,
    proxy: ProxyThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_fallocate(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    with small_fs(tmp_path / "fs", 10 * MIB) as fs:
        models = fs / "models"
        plat = copy.copy(oscalls.host)  # a file system without fallocate: only the size is set
        plat.os_fallocate = no_fallocate
        monkeypatch.setattr(oscalls, "host", plat)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(2**40, 0, 2**40))
        assert main(args(models, name_of(proxy))) == 6
        err = capsys.readouterr().err
        assert "no space left on the device" in err and "free some space and run again" in err
        no_model_installed(models, roomy)
        state = models / ".ollama-seed" / "staging" / f"sha256-{roomy.model_layer.hex}.state"
        plan = BlobPlan.from_state(state.read_bytes(), digest_hex=roomy.model_layer.hex, size=roomy.model_layer.size)
        assert plan is not None
        kept = plan.completed  # bytes of the model layer on disk, recorded in its resume state
        assert 0 < kept < 10 * MIB, "the ENOSPC should have struck after some bytes were on disk"
        first = blob_bytes(proxy)

        remount(fs, 64 * MIB)  # space freed
        assert main(args(models, name_of(proxy))) == 0
        second = blob_bytes(proxy) - first
        expected = tmp_path / "expected"
        roomy.expected_store(expected, name_of(proxy).split("/")[0], REPO, "latest")
        assert tree(models) == tree(expected)
        assert_store_ok(models, modes=True)
        print(
            f"\nENOSPC mid-body: {kept} bytes of the model layer kept on disk ({first} blob bytes through the "
            f"proxy before the disk filled), {second} fetched after it grew, for {roomy.total_size} bytes of blobs"
        )
        # resumed, not started over: what was kept is not fetched again (the slack is the proxy's per-connection
        # accounting chunk, 16 x 256 KiB, and the tail of runs cut short when a worker steals their end)
        assert second <= roomy.total_size - kept + 16 * 256 * 1024
        assert second < roomy.total_size - MIB
