"""The container examples hold together: compose files, Kubernetes manifests, the Dockerfile.

There is no Docker engine on the test machines. ``docker compose config`` checks the compose files
when the docker client has the compose plugin; otherwise (and always) their structure is checked
here, and every ollama-seed command line in them must parse with the real CLI parser.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.cli.ensure import cmd_ensure
from ollama_seed.cli.main import build_parser
from ollama_seed.startup.config import parse_config

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the example YAML files")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "examples" / "compose"
KUBE = ROOT / "examples" / "kubernetes"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _parses_as_ensure(argv: list[str]) -> Any:
    args = build_parser().parse_args(argv)
    assert args.func is cmd_ensure
    return args


def _compose_command() -> list[str] | None:
    """``docker compose`` if the client has the plugin, else a standalone ``docker-compose``, else None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


@pytest.mark.parametrize(
    "name", ["docker-compose.yml", "docker-compose.via-server.yml", "docker-compose.modelfile.yml"]
)
def test_compose_config_validates(name: str) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose plugin and no docker-compose here; the structure tests below still run")
    proc = subprocess.run(
        [*command, "-f", str(COMPOSE / name), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_shared_volume_recipe() -> None:
    doc = _load(COMPOSE / "docker-compose.yml")
    services = doc["services"]
    assert set(services) == {"ollama", "ollama-seed", "app"}
    ollama, seed, app = services["ollama"], services["ollama-seed"], services["app"]
    assert "ollama list" in " ".join(ollama["healthcheck"]["test"])  # no curl in the ollama image
    assert [v for v in seed["volumes"] if v.split(":")[1] == "/root/.ollama"] == [
        v for v in ollama["volumes"] if v.split(":")[1] == "/root/.ollama"
    ]
    assert seed["volumes"][0].split(":")[0] in doc["volumes"]
    assert seed["restart"] == "no"
    assert app["depends_on"]["ollama-seed"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["ollama"]["condition"] == "service_healthy"
    args = _parses_as_ensure(seed["command"])
    assert args.names == ["llama3.2:1b", "nomic-embed-text"]
    assert args.server == "http://ollama:11434"
    assert not args.via_server
    assert (COMPOSE / seed["build"]["context"] / "Dockerfile").resolve().exists()


def test_compose_via_server_recipe() -> None:
    doc = _load(COMPOSE / "docker-compose.via-server.yml")
    seed, app = doc["services"]["ollama-seed"], doc["services"]["app"]
    assert "volumes" not in seed  # the point of this variant
    args = _parses_as_ensure(seed["command"])
    assert args.via_server and args.warm
    assert args.server == "http://ollama:11434"
    assert app["depends_on"]["ollama-seed"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in doc["services"]["ollama"]


def test_compose_modelfile_recipe() -> None:
    doc = _load(COMPOSE / "docker-compose.modelfile.yml")
    seed, ollama = doc["services"]["ollama-seed"], doc["services"]["ollama"]
    args = _parses_as_ensure(seed["command"])
    assert args.names == [] and args.modelfile == [("custom-model", "/models/Modelfile")] and args.offline
    assert "./models:/models:ro" in seed["volumes"]
    shared = [v for v in seed["volumes"] if v.endswith(":/root/.ollama")]
    assert shared and shared[0] in ollama["volumes"]
    assert ollama["depends_on"]["ollama-seed"]["condition"] == "service_completed_successfully"


def test_compose_config_file_example() -> None:
    config = parse_config(tomllib.loads((COMPOSE / "ollama-seed.toml").read_text()))
    assert config.models == ("llama3.2:1b", "nomic-embed-text")


def test_kubernetes_init_container_shares_the_models_volume() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((KUBE / "ollama.yaml").read_text())}
    assert set(docs) == {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    [ollama] = pod["containers"]
    assert "ollama-seed" in init["image"]
    models_mount = next(m for m in ollama["volumeMounts"] if m["mountPath"] == "/root/.ollama")
    assert any(m["name"] == models_mount["name"] and m["mountPath"] == "/root/.ollama" for m in init["volumeMounts"])
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["OLLAMA_MODELS"] == "/root/.ollama/models"
    config_mount = next(m for m in init["volumeMounts"] if m["name"] == "seed-config")
    assert env["OLLAMA_SEED_CONFIG"] == f"{config_mount['mountPath']}/config.toml"
    config = parse_config(tomllib.loads(docs["ConfigMap"]["data"]["config.toml"]))
    assert config.models
    args = _parses_as_ensure(init["args"])
    assert args.names == []  # the ConfigMap's models
    assert ollama["readinessProbe"]["httpGet"]["path"] == "/"
    assert docs["Service"]["spec"]["ports"][0]["port"] == 11434


def test_kubernetes_app_waits_through_the_server() -> None:
    [deployment] = list(yaml.safe_load_all((KUBE / "app.yaml").read_text()))
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    args = _parses_as_ensure(init["args"])
    assert args.via_server and args.warm
    assert args.server == "http://ollama:11434"
    assert "volumeMounts" not in init


def test_dockerfile_matches_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["ollama-seed"] == "ollama_seed.cli.main:entry"
    assert 'ENTRYPOINT ["ollama-seed"]' in text
    assert "OLLAMA_MODELS=/root/.ollama/models" in text
    copied = [
        word
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for word in line.split()[1:-1]
    ]
    assert copied == ["pyproject.toml", "README.md", "ollama_seed/"]
    for item in copied:
        assert (ROOT / item).exists(), item
    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert set(copied) <= allowed
