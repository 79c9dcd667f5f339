"""The mirror recipes hold together: the systemd unit, the Kubernetes mirror and the compose service.

Each ``serve`` command line must parse with the real CLI parser; paths the command uses must be the
ones the recipe makes writable or mounts; probes and ports must point at what serve answers.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.cli.main import build_parser
from ollama_seed.cli.serve import cmd_serve

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the example YAML files")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _serve_args(argv: list[str]) -> Any:
    args = build_parser().parse_args(argv)
    assert args.func is cmd_serve
    return args


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(EXAMPLES / "systemd" / "ollama-seed-mirror.service")
    service = unit["Service"]
    assert service["User"] == "ollama-seed" and service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "true" and service["ProtectHome"] == "true"
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].endswith("/ollama-seed")
    args = _serve_args(exec_start[1:])
    models = "/srv/ollama-mirror/models"  # configparser keeps one of the Environment= lines: read them as text
    assert f"Environment=OLLAMA_MODELS={models}" in (EXAMPLES / "systemd" / "ollama-seed-mirror.service").read_text()
    assert service["ReadWritePaths"].split() == [models]  # the store, and nothing else, is writable
    assert args.htpasswd and args.tls_cert and args.tls_key and args.max_cache_size and args.upstream
    assert args.log_format == "json"
    assert int(service["TimeoutStopSec"]) > args.shutdown_timeout  # systemd waits for the graceful stop


def test_kubernetes_mirror() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((EXAMPLES / "kubernetes" / "mirror.yaml").read_text())}
    assert set(docs) == {"PersistentVolumeClaim", "Deployment", "Service"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    [mirror] = pod["containers"]
    args = _serve_args(mirror["args"])
    env = {e["name"]: e["value"] for e in mirror["env"]}
    mounts = {m["name"]: m["mountPath"] for m in mirror["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert env["OLLAMA_MODELS"].startswith(mounts["store"] + "/")
    assert args.htpasswd.startswith(mounts["auth"] + "/") and args.tls_cert.startswith(mounts["tls"] + "/")
    port = mirror["ports"][0]["containerPort"]
    assert args.port == port and args.host == "0.0.0.0"
    assert mirror["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert mirror["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert mirror["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert pod["terminationGracePeriodSeconds"] > args.shutdown_timeout
    assert docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"  # one writer of the volume
    service_port = docs["Service"]["spec"]["ports"][0]
    assert service_port["port"] == port and service_port["targetPort"] == mirror["ports"][0]["name"]


def test_compose_mirror_service() -> None:
    path = EXAMPLES / "compose" / "docker-compose.mirror.yml"
    mirror = yaml.safe_load(path.read_text())["services"]["mirror"]
    args = _serve_args(mirror["command"])
    mounted = {v.split(":")[1] for v in mirror["volumes"]}
    assert {args.htpasswd, args.tls_cert, args.tls_key} <= mounted
    store_mount = next(v.split(":")[1] for v in mirror["volumes"] if v.startswith("mirror-store:"))
    assert mirror["environment"]["OLLAMA_MODELS"].startswith(store_mount + "/")
    assert mirror["ports"] == [f"{args.port}:{args.port}"]
    assert "/readyz" in " ".join(mirror["healthcheck"]["test"])
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (scripts/install-test-deps.sh installs it)")
    proc = subprocess.run(
        [compose, "-f", str(path), "config", "--quiet"], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
