"""Eight processes pull into one store at once: all succeed, and each blob crosses the wire once.

The CLI runs as eight subprocesses against a real docker-registry behind the shaping proxy. The
proxy holds every blob GET until another process has said it waits for a download, so the
processes overlap however slowly they start (on a busy machine eight Python start-ups can take
longer than the whole download: the test once failed that way). The per-blob lock lets one
process download a blob while the others wait and then find it installed; correctness never
depends on the lock.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support import MIB
from tests.support.cli import start_cli
from tests.support.invariants import assert_store_ok, tree
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

pytestmark = [pytest.mark.registry, pytest.mark.slow]
PROCESSES = 8
RATE = 16e6  # bytes/s shared: about two seconds for the model


@pytest.fixture(scope="module")
def crowd(docker_registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> tuple[BuiltModel, BuiltModel]:
    d = tmp_path_factory.mktemp("crowd")
    a = make_model(d, size_bytes=32 * MIB + 17, seed=21)
    b = make_model(d, size_bytes=32 * MIB + 17, seed=21, template="another template", system="be brief")
    seed_registry(docker_registry.url, "library/crowd-a", "latest", a)
    seed_registry(docker_registry.url, "library/crowd-b", "latest", b)
    return a, b


WAITING = "another process is downloading it"


def run_all(names: list[str], models: Path, logs: Path, gate: threading.Event) -> list[tuple[int, str]]:
    """Start every pull; open *gate* (the proxy's hold on blob GETs) once one process waits for
    another's download (or after 60 s, when the assertions below say what went wrong)."""
    logs.mkdir()
    procs = [
        start_cli("pull", "--insecure", "--progress", "plain", "--models-dir", str(models), name, log=logs / f"{i}.log")
        for i, name in enumerate(names)
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        WAITING in (logs / f"{i}.log").read_text(errors="replace") for i in range(len(procs))
    ):
        if all(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    gate.set()
    results = []
    for i, proc in enumerate(procs):
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        results.append((rc, (logs / f"{i}.log").read_text(errors="replace")))
    return results


def test_eight_processes_pull_one_model_once(
    docker_registry: DockerRegistry, crowd: tuple[BuiltModel, BuiltModel], tmp_path: Path
) -> None:
    model = crowd[0]
    models = tmp_path / "models"
    gate = threading.Event()
    with ProxyThread(docker_registry.url, total_bps=RATE, hold_blobs=gate) as proxy:
        host = proxy.url.removeprefix("http://")
        results = run_all([f"{host}/library/crowd-a:latest"] * PROCESSES, models, tmp_path / "logs", gate)
        moved = proxy.stats.snapshot()["bytes_down"]
    for rc, log in results:
        assert rc == 0, log
    waited = sum(WAITING in log for _, log in results)
    expected = tmp_path / "expected"
    model.expected_store(expected, host, "library/crowd-a", "latest")
    assert tree(models) == tree(expected)
    assert_store_ok(models, modes=True)
    assert list((models / ".ollama-seed" / "staging").iterdir()) == []
    print(
        f"\n{PROCESSES} processes, one model of {model.total_size} bytes: {moved} bytes through the proxy "
        f"({moved / model.total_size:.4f} x), {waited} processes waited on another's download"
    )
    assert waited >= 1, "the processes did not overlap; the test proves nothing"
    assert moved <= 1.05 * model.total_size


def test_two_models_sharing_a_layer_four_processes_each(
    docker_registry: DockerRegistry, crowd: tuple[BuiltModel, BuiltModel], tmp_path: Path
) -> None:
    a, b = crowd
    assert a.model_layer.digest == b.model_layer.digest
    union = sum({x.digest: x.size for x in (*a.blobs, *b.blobs)}.values())
    models = tmp_path / "models"
    gate = threading.Event()
    with ProxyThread(docker_registry.url, total_bps=RATE, hold_blobs=gate) as proxy:
        host = proxy.url.removeprefix("http://")
        names = [f"{host}/library/crowd-{'ab'[i % 2]}:latest" for i in range(PROCESSES)]
        results = run_all(names, models, tmp_path / "logs", gate)
        moved = proxy.stats.snapshot()["bytes_down"]
    for rc, log in results:
        assert rc == 0, log
    expected = tmp_path / "expected"
    a.expected_store(expected, host, "library/crowd-a", "latest")
    b.expected_store(expected, host, "library/crowd-b", "latest")
    assert tree(models) == tree(expected)
    assert_store_ok(models, modes=True)
    print(
        f"\n{PROCESSES} processes, two models sharing {a.model_layer.size} bytes, {union} bytes in all: "
        f"{moved} bytes through the proxy ({moved / union:.4f} x)"
    )
    assert moved <= 1.05 * union
