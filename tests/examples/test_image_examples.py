"""The model-image recipes in examples/images hold together: kubernetes-validate --strict, docker-compose config,
and every ollama-seed command in them parses with the real CLI parser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ollama_seed.cli.image import cmd_extract
from ollama_seed.cli.main import build_parser

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the example YAML files")

IMAGES = Path(__file__).resolve().parent.parent.parent / "examples" / "images"
KUBE = sorted(IMAGES.glob("*.yaml"))


def _validator() -> str:
    path = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip("kubernetes-validate is not installed (it is in the dev lock)")
    return path


@pytest.mark.parametrize("path", KUBE, ids=lambda p: p.name)
def test_kubernetes_manifests_pass_kubernetes_validate_strict(path: Path) -> None:
    done = subprocess.run([_validator(), "--strict", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "passed" in done.stdout, done.stdout + done.stderr


def test_kubernetes_validate_catches_a_wrong_field(tmp_path: Path) -> None:
    """The check can fail: a misspelt field of the image volume is refused (offline: the schemas ship in the wheel)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text((IMAGES / "image-volume.yaml").read_text().replace("pullPolicy:", "pullPolicyy:"))
    done = subprocess.run([_validator(), "--strict", str(bad)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


def _commands(doc: Any) -> list[list[str]]:
    """Every container argv in *doc* that runs ollama-seed (its image is ollama-seed)."""
    found: list[list[str]] = []
    if isinstance(doc, dict):
        image = doc.get("image")
        argv = doc.get("args") or doc.get("command")
        if isinstance(image, str) and image.startswith("ollama-seed") and isinstance(argv, list):
            found.append([str(a) for a in argv])
        for value in doc.values():
            found.extend(_commands(value))
    elif isinstance(doc, list):
        for value in doc:
            found.extend(_commands(value))
    return found


def test_every_ollama_seed_command_parses() -> None:
    commands = [c for p in IMAGES.glob("*.y*ml") for d in yaml.safe_load_all(p.read_text()) for c in _commands(d)]
    assert len(commands) == 2  # the init container and the compose service
    for argv in commands:
        args = build_parser().parse_args(argv)
        assert args.func is cmd_extract and args.models_dir == "/models"


def test_the_compose_file_passes_docker_compose_config() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (scripts/install-test-deps.sh installs it)")
    done = subprocess.run(
        [compose, "-f", str(IMAGES / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
