"""README.md's commands, run as written, offline, in order (issue 25): the docs cannot drift from the tool.

Every ``ollama-seed`` line of README.md's ``sh`` blocks is run against loopback servers standing in
for the hosts it names (``registry.ollama.ai``, ``10.0.0.5:5000``, ``mirror:8080``, ``ollama:11434``,
``registry.lan:5000``, ``registry.example.com``): a proxy (HTTPS_PROXY and HTTP_PROXY) sends each
name to a server on 127.0.0.1 (TLS with a test CA in SSL_CERT_FILE where the name means https).
The registry is ollama-seed's own mirror over a store of tiny models; pushes go to Docker
Distribution with TLS; the Ollama server is the fake one over the same models directory. Only what
must differ from a user's machine is changed, and each change is listed below (:data:`SUBSTITUTE`),
as are the files a command expects to exist (:data:`SETUP`) and the few lines that are not run
(:data:`NOT_RUN`, each with its reason). A new README line runs by default, so a command that stops
working as documented fails here.

Every ``ollama-seed`` line of docs/*.md is at least parsed by the real command-line parser.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ollama_seed.cli.main import build_parser, main
from tests.support.fake_ollama import FakeOllama, ServerThread
from tests.support.ggufmake import arch, gguf
from tests.support.hostproxy import HostProxy
from tests.support.mirror import serving
from tests.support.model import make_model
from tests.support.registry import DockerRegistry, registry_available
from tests.support.tls import make_certs

pytestmark = pytest.mark.interop  # drives docker-registry, tar and ollamazip; not the os-module emulation

REPO = Path(__file__).resolve().parents[2]
MODELS = ("gpt-oss:20b", "qwen3:8b", "llama3.2:1b", "gemma3:270m", "nomic-embed-text:latest")
PASSWORD = "correct horse"

NOT_RUN = {
    "bash scripts/demo.sh": "tests/examples/test_demo.py runs it",
    "bash scripts/test.sh": "it is the whole suite",
    "pip install .": "the suite runs from an installed checkout",
    "ollama-seed list | show NAME": "a synopsis of the store commands, each run elsewhere in this walk",
    "ollama-seed serve ": "it serves until stopped; the walk's own registry is this command's app",
    "--base ollama/ollama": "the base image comes from Docker Hub; tests/bundle/test_image_base.py builds on a local one",
    "ollama pull": "stock Ollama, not this tool",
}
SUBSTITUTE = [  # (what the README says, what the walk runs), applied in order
    ("ssh airgap ", ""),  # the other host of the pipe is this one
    ("/media/usb/", ""),  # the 'USB stick' is the working directory, where the next lines look for m.tar.000
    ("/mnt/usb/.ollama/models [NAME...]", "usb-models"),
    ("=/models/", "=./"),  # the Modelfile of 'create' is in the working directory
    ("--models-dir /models", "--models-dir extracted"),
]


def _write_modelfile(work: Path, ctx: Walk) -> None:
    (work / "model.gguf").write_bytes(gguf([arch("llama")]))
    (work / "Modelfile").write_text("FROM ./model.gguf\n")


def _ollamazip(work: Path, ctx: Walk) -> None:
    from ollamazip import core as ollamazip

    ollamazip.pack_model("gemma3:270m", output=work / "gemma3-270m.ollamazip", compress="zstd", home=ctx.registry_store)


def _tar_gz(work: Path, ctx: Walk) -> None:
    with tarfile.open(work / "models.tar.gz", "w:gz") as t:
        for part in ("manifests", "blobs"):
            t.add(ctx.models / part, arcname=part)


SETUP: dict[str, Callable[[Path, Walk], object]] = {
    "ollama-seed export gpt-oss:20b qwen3:8b": lambda w, c: c.run("ollama-seed pull qwen3:8b"),
    "ollama-seed create my-assistant": _write_modelfile,
    "ollama-seed import gemma3-270m.ollamazip": _ollamazip,
    "ollama-seed import models.tar.gz": _tar_gz,
    "ollama-seed import usb-models": lambda w, c: shutil.copytree(c.registry_store, w / "usb-models"),
    "ollama-seed import m.ollamazip": lambda w, c: shutil.copy(w / "gemma3-270m.ollamazip", w / "m.ollamazip"),
    "ollama-seed keygen": lambda w, c: (w / "pw.txt").write_text(PASSWORD + "\n"),
}


def _sh_lines(path: Path) -> Iterator[str]:
    """The command lines of a Markdown file's ``sh`` blocks (comments dropped, continuations joined)."""
    for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        pending = ""
        for raw in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", raw).strip()
            if not line or line.startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            yield pending + line
            pending = ""


@dataclass
class Walk:
    work: Path
    models: Path
    registry_store: Path
    env: dict[str, str]

    def run(self, line: str) -> None:
        """One README line: in this process when it is one command, else through bash (pipes, &&)."""
        if re.search(r"\||&&|;", line):
            done = subprocess.run(
                ["bash", "-c", f"set -eo pipefail; {line}"],
                cwd=self.work,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{line!r} failed ({done.returncode}):\n{done.stderr}"
            return
        argv = shlex.split(line)
        assert argv[0] == "ollama-seed", f"README runs {argv[0]!r}: classify it in NOT_RUN or SETUP"
        assert main(argv[1:]) == 0, f"{line!r} failed"


@pytest.fixture
def walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Walk]:
    if not registry_available():
        pytest.skip("docker-registry is not installed (scripts/install-test-deps.sh installs it)")
    hosts = ["registry.ollama.ai", "registry.lan", "registry.example.com"]
    certs = make_certs(tmp_path / "certs", hosts)
    store = tmp_path / "registry-store"
    for i, name in enumerate(MODELS):
        repo, _, tag = name.partition(":")
        make_model(size_bytes=2000 + i * 1000, seed=100 + i).expected_store(
            store, "registry.ollama.ai", f"library/{repo}", tag
        )
    models = tmp_path / "home" / ".ollama" / "models"  # HOME is tmp_path/home (tests/conftest.py)
    work = tmp_path / "work"
    work.mkdir()
    with (
        serving(store, tls_cert=str(certs.cert), tls_key=str(certs.key)) as tls,
        serving(store) as plain,
        ServerThread(FakeOllama(models)) as ollama,
        DockerRegistry.start(tmp_path / "distribution", tls=(certs.cert, certs.key)) as distribution,
    ):
        routes = {
            "registry.ollama.ai:443": tls.port,
            "10.0.0.5:5000": plain.port,
            "mirror:8080": plain.port,
            "ollama:11434": ollama.port,
            "registry.lan:5000": distribution.port,
            "registry.example.com:443": distribution.port,
        }
        with HostProxy(routes) as proxy:
            env = {
                "HTTPS_PROXY": proxy.url,
                "HTTP_PROXY": proxy.url,
                "SSL_CERT_FILE": str(certs.ca),
                "OLLAMA_SEED_KEY_PASSWORD": PASSWORD,  # an encrypted key without --key-password-file reads it
            }
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            monkeypatch.chdir(work)
            full = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
            yield Walk(work, models, store, full)


def test_every_readme_command_works_as_written(walk: Walk) -> None:
    ran = 0
    for original in _sh_lines(REPO / "README.md"):
        if any(key in original for key in NOT_RUN):
            continue
        line = original
        for old, new in SUBSTITUTE:
            line = line.replace(old, new)
        for key, setup in SETUP.items():
            if line.startswith(key):
                setup(walk.work, walk)
        walk.run(line)
        ran += 1
    assert ran >= 25
    names = sorted(p.relative_to(walk.models / "manifests").as_posix() for p in walk.models.glob("manifests/*/*/*/*"))
    assert "registry.ollama.ai/library/gpt-oss/20b" in names and "registry.ollama.ai/my/gemma/v1" in names


def test_the_not_run_lines_are_still_in_the_readme() -> None:
    text = "\n".join(_sh_lines(REPO / "README.md"))
    for key in NOT_RUN:
        assert key in text, f"NOT_RUN has {key!r}, which README.md no longer says: drop it"


def _without_placeholders(line: str) -> str:
    """``[--flag VALUE]`` kept as ``--flag VALUE``; other brackets (``[NAME...]``, ``[--a | --b]``) and ``...`` dropped."""
    text = re.sub(r"\[(--[^\]|]+)\]", r"\1", line)
    text = re.sub(r"\[[^\]]*\]", "", text)
    return text.replace(" ...", "")


def _documented_commands() -> Iterator[tuple[str, str]]:
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in _sh_lines(path):
            for segment in re.split(r"\s*(?:\|\||&&|\|)\s*", _without_placeholders(line)):
                if segment.startswith("ollama-seed "):
                    yield path.name, segment


@pytest.mark.parametrize(("doc", "segment"), list(_documented_commands()))
def test_every_documented_command_parses(doc: str, segment: str) -> None:
    try:
        _args, extra = build_parser().parse_known_args(shlex.split(segment)[1:])
    except SystemExit as exc:
        pytest.fail(f"{doc}: {segment!r} does not parse (exit {exc.code})")
    assert not extra, f"{doc}: {segment!r}: unknown {extra}"
