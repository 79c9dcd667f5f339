"""SIGKILL at random moments, then run again: the store is never corrupt, and resume wastes little.

The CLI pulls a 32 MiB model from a real docker-registry through the shaping proxy, whose
shared cap makes a pull take about two seconds, so kills land before, during and after the
transfer. Delays come from a seeded RNG (a failure names its iteration and delay); the loop runs
until 20 kills have landed (runs that finish before their kill count as iterations on top).
After every kill the store invariants are checked (every ``blobs/sha256-X`` hashes to X, no
manifest points at a missing blob, no stray file in ``blobs/`` or ``manifests/``, Ollama's
modes). When a run finishes before its kill, the store must equal a clean pull byte for byte;
the model is then removed so the next iteration starts over. The bytes through the proxy are
bounded: each completed round costs the model once, plus what was in flight at each kill.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ollama_seed import ModelName, ModelStore
from tests.support import MIB
from tests.support.cli import pull_then_kill, run_cli
from tests.support.invariants import assert_store_ok, store_problems, tree
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

pytestmark = [pytest.mark.registry, pytest.mark.slow]
REPO = "library/killme"
RATE = 48e6  # bytes/s through the proxy, shared by every connection: ~0.7 s of transfer for the model
KILLS = 20  # SIGKILLs that must land (runs that finish before their kill come on top)
MAX_ITERATIONS = 60
SEED = 20240607
# What one kill may waste, as the proxy counts it: the proxy counts each relayed chunk (up to 256 KiB)
# before shaping it out, so with the CLI's 16 connections up to 4 MiB are counted but never sent; add
# up to as much again in socket buffers and the client's last read. Measured: 3.0-4.5 MiB per kill.
LOSS_PER_KILL = 16 * 512 * 1024


@pytest.fixture(scope="module")
def kill_model(docker_registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    m = make_model(tmp_path_factory.mktemp("kill-model"), size_bytes=32 * MIB + 4097, seed=11, one_byte_layer=True)
    seed_registry(docker_registry.url, REPO, "latest", m)
    return m


def staged_data(models: Path) -> list[Path]:
    staging = models / ".ollama-seed" / "staging"
    return sorted(staging.glob("*.data")) if staging.is_dir() else []


def test_sigkill_at_random_moments_never_corrupts_and_resumes(
    docker_registry: DockerRegistry, kill_model: BuiltModel, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    models = tmp_path / "models"
    with ProxyThread(docker_registry.url, total_bps=RATE) as proxy:
        host = proxy.url.removeprefix("http://")
        name = f"{host}/{REPO}:latest"
        expected = tmp_path / "expected"
        kill_model.expected_store(expected, host, REPO, "latest")
        want = tree(expected)

        def pull_args(root: Path) -> tuple[str, ...]:
            return ("pull", "--insecure", "--progress", "none", "--models-dir", str(root), name)

        started = time.monotonic()
        clean = run_cli(*pull_args(tmp_path / "clean"))
        clean_seconds = time.monotonic() - started
        assert clean.returncode == 0, clean.stderr
        baseline = proxy.stats.snapshot()["bytes_down"]

        kills = mid_transfer = completed = iterations = 0
        while kills < KILLS and iterations < MAX_ITERATIONS:
            i, iterations = iterations, iterations + 1
            delay = rng.uniform(0.25 * clean_seconds, 1.0 * clean_seconds)
            out = pull_then_kill(*pull_args(models), delay=delay)
            where = f"iteration {i}, seed {SEED}, killed after {delay:.2f} s"
            problems = store_problems(models, modes=True)
            assert not problems, f"{where}: {problems}"
            if out.killed:
                kills += 1
                mid_transfer += bool(staged_data(models))
            else:
                assert out.returncode == 0, f"{where}: {out.output}"
                assert tree(models) == want, where
                completed += 1
                ModelStore(models).remove(ModelName.parse(name))  # the next iteration starts over
        final = run_cli(*pull_args(models))
        assert final.returncode == 0, final.stderr
        assert tree(models) == want
        assert_store_ok(models, modes=True)
        assert ModelStore(models).verify(ModelName.parse(name)) == []
        assert staged_data(models) == []  # every partial download was finished, none left to waste disk
        leftovers = sorted(p.name for p in (models / ".ollama-seed" / "staging").iterdir())
        moved = proxy.stats.snapshot()["bytes_down"] - baseline

    rounds = completed + 1
    manifests = (iterations + 1) * len(kill_model.manifest)
    overhead = moved - rounds * kill_model.total_size - manifests
    print(
        f"\nkill test: {iterations} iterations ({kills} killed, {mid_transfer} with a partial download on disk, "
        f"{completed} finished first), clean pull {clean_seconds:.2f} s, {moved} bytes through the proxy for "
        f"{rounds} complete pulls of {kill_model.total_size}: {overhead} bytes "
        f"({overhead / max(kills, 1) / MIB:.3f} MiB per kill) beyond the model and manifests; "
        f"left in staging: {leftovers}"
    )
    assert kills >= KILLS, f"only {kills} of {iterations} runs were killed before they finished"
    assert mid_transfer >= 5, "too few kills landed mid-transfer to mean anything; the calibration is off"
    assert moved <= rounds * kill_model.total_size + manifests + kills * LOSS_PER_KILL
