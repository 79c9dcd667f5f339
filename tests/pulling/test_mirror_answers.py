"""Issue 25, item 5 (the client's side): what a mirror answered reaches the user.

Before: when the mirror lacked the model or was down, the only error named the registry (the
mirror's 404 showed only with ``-v``); a dead mirror was never named and cost ~2 s of manifest
retries on every pull; a mirror's 507 with a clear body became "unexpected HTTP 507" with the port
dropped. Now: the error lists which mirrors were tried and what each answered, then the registry's
answer; a mirror that does not answer is named in a warning and asked once.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.mirror import serving
from tests.support.model import BuiltModel, make_model
from tests.support.net import http_server

REPO, TAG = "library/demo", "v1"


class _Hangup:
    """A port that accepts connections and closes them at once (a mirror that is down), counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, BuiltModel]]:
    """``127.0.0.1:PORT`` of a loopback registry holding ``library/demo:v1``."""
    model = make_model(size_bytes=100_000, seed=5)
    model.expected_store(tmp_path / "registry", "registry.ollama.ai", REPO, TAG)
    with serving(tmp_path / "registry") as info:
        yield f"127.0.0.1:{info.port}", model


def _pull(models: Path, name: str, *mirrors: str) -> int:
    argv = ["pull", "--insecure", "--progress", "none", "--models-dir", str(models), name]
    for m in mirrors:
        argv += ["--mirror", m]
    return main(argv)


def test_a_miss_everywhere_says_what_each_mirror_answered(
    registry: tuple[str, BuiltModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, _ = registry
    (tmp_path / "empty").mkdir()
    with serving(tmp_path / "empty") as mirror:
        assert _pull(tmp_path / "m", f"{host}/library/nothere:v1", mirror.url) == 3
    err = capsys.readouterr().err
    assert f"not found at {host}" in err  # the registry's answer
    assert f"the mirrors were tried: {mirror.url}: 404" in err  # and the mirror's, which came first


def test_a_dead_mirror_is_named_and_asked_once(
    registry: tuple[str, BuiltModel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host, model = registry
    dead = _Hangup()
    assert _pull(tmp_path / "m", f"{host}/{REPO}:{TAG}", f"http://127.0.0.1:{dead.port}") == 0
    err = caplog.text  # a WARNING log line: on stderr for a user, whatever --progress says
    assert f"mirror http://127.0.0.1:{dead.port} failed" in err and "skipped for the rest of this run" in err
    assert dead.accepted == 1  # before: 4 manifest attempts with backoff (~2 s) on every pull, never mentioned
    assert (tmp_path / "m" / "blobs" / f"sha256-{model.model_layer.hex}").exists()


class _Full(http.server.BaseHTTPRequestHandler):
    """A mirror that has the manifest but answers every blob GET 507, as a full cache does."""

    manifest = b""
    body = json.dumps(
        {
            "errors": [
                {
                    "code": "INSUFFICIENT_STORAGE",
                    "message": "253113024 more bytes would take it over --max-cache-size 1G; raise --max-cache-size",
                }
            ]
        }
    ).encode()

    def do_GET(self) -> None:
        if "/manifests/" in self.path:
            status, body, kind = 200, self.manifest, "application/vnd.docker.distribution.manifest.v2+json"
        else:
            status, body, kind = 507, self.body, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def test_a_full_mirror_s_507_is_shown_with_its_body_and_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(size_bytes=100_000, seed=6)
    _Full.manifest = model.manifest
    (tmp_path / "empty").mkdir()
    with http_server(_Full) as server, serving(tmp_path / "empty") as empty:  # the registry lacks the model
        registry = f"127.0.0.1:{empty.port}"
        assert _pull(tmp_path / "m", f"{registry}/{REPO}:{TAG}", f"http://127.0.0.1:{server.server_port}") == 4
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{server.server_port}/v2/{REPO}/blobs/sha256:" in err  # the port is kept
    assert "unexpected HTTP 507: 253113024 more bytes would take it over --max-cache-size 1G" in err
    assert f"from http://{registry}/v2/{REPO}/blobs/sha256:" in err  # and then what the registry said
