"""Issue 25, item 10: a retried manifest request is visible (``-v``), never silent. Before, a 503
storm on the manifest cost several seconds of backoff with nothing in the log even at ``-vv``.
"""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.model import BuiltModel, make_model
from tests.support.net import http_server

MODEL = make_model(size_bytes=2000, seed=4)


class _Flaky(http.server.BaseHTTPRequestHandler):
    """A registry whose manifest answers 503 twice, then the manifest; blobs at once."""

    model: BuiltModel = MODEL
    manifest_gets = 0

    def do_GET(self) -> None:
        if "/manifests/" in self.path:
            type(self).manifest_gets += 1
            if type(self).manifest_gets <= 2:
                self._send(503, b'{"errors":[{"code":"UNAVAILABLE","message":"warming up"}]}', {"Retry-After": "0"})
                return
            self._send(
                200, self.model.manifest, {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}
            )
            return
        digest = "sha256:" + self.path.rsplit("sha256:", 1)[-1]
        self._send(200, self.model.blob(digest).read_bytes(), {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def flaky() -> Iterator[str]:
    _Flaky.manifest_gets = 0
    with http_server(_Flaky) as server:
        yield f"127.0.0.1:{server.server_port}"


def test_manifest_retries_show_with_v(flaky: str, tmp_path: Path) -> None:
    name = f"{flaky}/library/demo:v1"
    done = run_cli("-v", "pull", "--insecure", "--progress", "none", "--models-dir", str(tmp_path / "m"), name)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "pulling manifest:" in line and "retrying" in line]
    assert len(lines) == 2, done.stderr
    assert "answered HTTP 503" in lines[0] and "(attempt 2 of 4)" in lines[0] and "(attempt 3 of 4)" in lines[1]
    assert _Flaky.manifest_gets == 3
