"""Issue 25, item 10: ``wait --server`` waits for Ollama, not for anything that answers 200, and
refuses an address that is not one; ``ensure a b`` with ``a`` missing says that ``b`` is ready.
"""

from __future__ import annotations

import http.server
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_seed.cli.main import main
from tests.support.mirror import serving
from tests.support.model import make_model
from tests.support.net import http_server


class _Answers200(http.server.BaseHTTPRequestHandler):
    """What a Docker registry or a web server on the wrong port does: 404 on /api/version, 200 on /."""

    version_body = b""

    def do_GET(self) -> None:
        if self.path == "/api/version" and not self.version_body:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.version_body if self.path == "/api/version" else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def not_ollama() -> Iterator[http.server.ThreadingHTTPServer]:
    with http_server(_Answers200) as server:
        yield server


@pytest.mark.parametrize("version_body", [b"", b"<html>hello</html>"])
def test_wait_is_not_fooled_by_another_server(
    not_ollama: http.server.ThreadingHTTPServer,
    version_body: bytes,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_Answers200, "version_body", version_body)
    started = time.monotonic()
    assert main(["wait", "--server", f"127.0.0.1:{not_ollama.server_port}", "--timeout", "20"]) == 11
    assert time.monotonic() - started < 10  # at once: waiting cannot turn it into Ollama
    err = capsys.readouterr().err
    assert "not an Ollama server" in err and "--server/OLLAMA_HOST" in err  # before: "ready", exit 0


@pytest.mark.parametrize("address", ["not a url", "ollama:11434 --timeout 5", "http://a b:1"])
def test_wait_refuses_what_is_not_an_address(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert main(["wait", "--server", address, "--timeout", "20"]) == 2  # before: polled it for 20 s, exit 11
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert "is not host[:port] or an http(s) URL" in err and "ollama:11434" in err


def test_ensure_says_which_models_are_ready_when_one_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_model(size_bytes=1000).expected_store(tmp_path / "registry", "registry.ollama.ai", "library/b", "v1")
    with serving(tmp_path / "registry") as reg:
        host = f"127.0.0.1:{reg.port}"
        argv = ["ensure", "--insecure", "--progress", "none", "--models-dir", str(tmp_path / "m")]
        assert main([*argv, f"{host}/library/a:v1", f"{host}/library/b:v1"]) == 3
    err = capsys.readouterr().err
    assert f"{host}/library/a:v1" in err and "not found" in err
    assert f"the other model(s) are ready: {host}/library/b:v1 (pulled)" in err
