"""Against a real Docker Distribution registry (Debian docker-registry) on 127.0.0.1.

Filled through its upload API: a 64 MiB+ blob whose size is no multiple of the part size, a
layer digest listed twice, a 1-byte blob. Pulled through the project's own shaping proxy so
the tests can count requests and bytes on the wire. The CLI is driven as a subprocess, as
users run it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import ollama_seed
from ollama_seed import ModelName, ModelStore
from tests.support import MIB
from tests.support.cli import run_cli
from tests.support.invariants import tree
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

pytestmark = pytest.mark.registry
REPO = "library/big"


@pytest.fixture(scope="module")
def big_model(docker_registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    m = make_model(
        tmp_path_factory.mktemp("model"), size_bytes=64 * MIB + 12_345, seed=7, one_byte_layer=True, duplicate_layer=2
    )
    seed_registry(docker_registry.url, REPO, "latest", m, chunked=True, chunk_size=16 * MIB)
    return m


@pytest.fixture
def proxy(docker_registry: DockerRegistry) -> Iterator[ProxyThread]:
    with ProxyThread(docker_registry.url) as p:
        yield p


def name_via(proxy: ProxyThread, tag: str = "latest") -> str:
    return f"{proxy.url.removeprefix('http://')}/{REPO}:{tag}"


def blob_requests(proxy: ProxyThread) -> int:
    per_path = proxy.stats.snapshot()["per_path"]
    return sum(1 for path in per_path if "/blobs/" in path)


def test_pull_is_byte_identical_to_ollamas_layout(
    big_model: BuiltModel, proxy: ProxyThread, models_dir: Path, tmp_path: Path
) -> None:
    name = name_via(proxy)
    result = ollama_seed.pull(name, models_dir=models_dir, insecure=True)
    host = proxy.url.removeprefix("http://")
    expected = tmp_path / "expected"
    big_model.expected_store(expected, host, REPO, "latest")
    assert tree(models_dir) == tree(expected)
    assert result.bytes_downloaded == big_model.total_size
    snap = proxy.stats.snapshot()
    assert snap["bytes_down"] >= big_model.total_size
    # the manifest on disk hashes to the registry's digest: the model ID Ollama shows
    assert str(ModelStore(models_dir).get(ModelName.parse(name)).manifest.digest) == big_model.manifest_digest


def test_second_pull_sends_no_blob_request(
    big_model: BuiltModel, docker_registry: DockerRegistry, models_dir: Path
) -> None:
    with ProxyThread(docker_registry.url) as p:
        ollama_seed.pull(name_via(p), models_dir=models_dir, insecure=True)
        before = p.stats.snapshot()
    with ProxyThread(docker_registry.url, port=int(p.url.rsplit(":", 1)[1])) as p2:
        result = ollama_seed.pull(name_via(p2), models_dir=models_dir, insecure=True)
        after = p2.stats.snapshot()
    assert before["bytes_down"] >= big_model.total_size
    assert result.bytes_downloaded == 0
    assert not [path for path in after["per_path"] if "/blobs/" in path]
    assert after["requests"] == 1  # the manifest only


def cli(*args: str, models_dir: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = run_cli(*args, env={"OLLAMA_MODELS": str(models_dir)}, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_pull_list_show_verify_rm(big_model: BuiltModel, docker_registry: DockerRegistry, models_dir: Path) -> None:
    name = f"{docker_registry.host}/{REPO}"
    proc = cli("pull", "--insecure", "--json", name, models_dir=models_dir, check=True)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[0]["status"] == "pulling manifest"
    assert lines[-1]["status"] == "success"
    summary = lines[-1]
    assert summary["summary"] is True and summary["models"] == [f"{name}:latest"]
    assert summary["bytes_downloaded"] == big_model.total_size and summary["bytes_reused"] == 0
    assert summary["sources"] == [f"http://{docker_registry.host}"] and summary["rate"] > 0
    layer_lines = [x for x in lines if x["status"].startswith("pulling ") and "digest" in x]
    assert {x["digest"] for x in layer_lines} == {b.digest for b in big_model.blobs}
    ours = {"percent", "rate", "eta", "event", "message", "retry_in"}  # Ollama's keys plus these
    assert all(set(x) <= {"status", "digest", "total", "completed", "model", *ours} for x in lines[:-1])

    listed = json.loads(cli("list", "--json", models_dir=models_dir, check=True).stdout)
    assert [m["name"] for m in listed] == [f"{name}:latest"]
    assert listed[0]["digest"] == big_model.manifest_digest.removeprefix("sha256:")

    shown = json.loads(cli("show", "--json", name, models_dir=models_dir, check=True).stdout)
    assert [layer["digest"] for layer in shown["layers"]][-1] == big_model.config.digest

    assert cli("verify", name, models_dir=models_dir).returncode == 0
    blob = models_dir / "blobs" / f"sha256-{big_model.model_layer.hex}"
    with open(blob, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    bad = cli("verify", name, models_dir=models_dir)
    assert bad.returncode == 5
    assert big_model.model_layer.digest in bad.stdout and "sha256 is" in bad.stdout

    removed = cli("rm", name, models_dir=models_dir, check=True)
    assert "blobs removed" in removed.stdout
    assert list((models_dir / "blobs").iterdir()) == []
    assert list((models_dir / "manifests").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pull", "bad name!"], 2, "invalid model name"),
        (["pull", "--insecure", "{host}/library/missing:x"], 3, "not found"),
        (["pull", "--insecure", "127.0.0.1:9/library/m:t"], 4, "cannot connect"),
        (["show", "library/absent"], 3, "is not in"),
        (["pull", "--max-rate", "fast", "x"], 2, "not a rate"),
    ],
)
def test_cli_exit_codes(
    docker_registry: DockerRegistry, models_dir: Path, args: list[str], code: int, message: str
) -> None:
    models_dir.mkdir()  # a models directory that was named must exist for show (exit 8 otherwise)
    proc = cli(*[a.format(host=docker_registry.host) for a in args], models_dir=models_dir)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_proxy_environment_is_honoured(
    docker_registry: DockerRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY sends requests through the proxy; NO_PROXY exempts hosts, as for Ollama."""
    m = make_model(size_bytes=3_000_000, seed=11)
    seed_registry(docker_registry.url, "library/proxied", "latest", m)
    name = f"{docker_registry.host}/library/proxied"
    with ProxyThread(docker_registry.url) as p:
        monkeypatch.setenv("HTTP_PROXY", p.url)
        first = ollama_seed.pull(name, models_dir=tmp_path / "a", insecure=True)
        through = p.stats.snapshot()
        assert first.bytes_downloaded == m.total_size
        assert through["requests"] >= len(m.blobs) + 1
        assert through["bytes_down"] >= m.total_size
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        ollama_seed.pull(name, models_dir=tmp_path / "b", insecure=True)
        assert p.stats.snapshot()["requests"] == through["requests"]


def test_cli_pulls_several_models_at_once_sharing_blobs(
    docker_registry: DockerRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pull a b`: one session, so the layer both models share crosses the wire once."""
    from ollama_seed.cli.main import main

    a = make_model(size_bytes=4_000_000, seed=21)
    b = make_model(size_bytes=4_000_000, seed=21, template="another template")
    seed_registry(docker_registry.url, "library/twin-a", "latest", a)
    seed_registry(docker_registry.url, "library/twin-b", "latest", b)
    with ProxyThread(docker_registry.url) as p:
        host = p.url.removeprefix("http://")
        code = main(
            [
                "pull",
                "--insecure",
                "--progress",
                "none",
                "--models-dir",
                str(tmp_path / "m"),
                f"{host}/library/twin-a",
                f"{host}/library/twin-b",
            ]
        )
        sent = p.stats.snapshot()["blob_bytes"]
    assert code == 0
    union = {x.digest: x.size for x in (*a.blobs, *b.blobs)}
    assert a.model_layer.digest == b.model_layer.digest
    assert sent == sum(union.values())
    err = capsys.readouterr().err
    assert "twin-a:latest" in err and "twin-b:latest" in err
