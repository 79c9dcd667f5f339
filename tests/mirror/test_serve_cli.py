"""``ollama-seed serve`` as a newcomer meets it (issue 25 item 10, item 3 for its options): the banner
only once it listens, on the real port; no stock-Ollama advice under a login; a failed start says
why, exits 2 and leaves nothing on disk."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.cli import run_cli, start_cli
from tests.support.mirror import write_htpasswd
from tests.support.model import make_model


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    make_model(size_bytes=1000, seed=25).expected_store(root, "registry.ollama.ai", "library/small", "latest")
    return root


def _banner(log: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "ollama-seed pull --mirror" in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"no banner:\n{log.read_text(errors='replace')}")


def test_the_banner_names_the_port_it_really_listens_on(tmp_path: Path, store: Path) -> None:
    log = tmp_path / "serve.log"
    proc = start_cli("serve", "--models-dir", str(store), "--port", "0", log=log)
    try:
        text = _banner(log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    url = text.split(" on ", 1)[1].split()[0].rstrip(",")
    port = int(url.rsplit(":", 1)[1])
    assert port != 0 and f"ollama pull --insecure 127.0.0.1:{port}/library/MODEL:TAG" in text


def test_a_login_protected_mirror_does_not_suggest_stock_ollama(tmp_path: Path, store: Path) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "pw"})
    log = tmp_path / "serve.log"
    proc = start_cli("serve", "--models-dir", str(store), "--port", "0", "--htpasswd", str(htpasswd), log=log)
    try:
        text = _banner(log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "logins required" in text and "ollama pull " not in text  # stock Ollama cannot log in


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "99999"], "argument --port: must be a whole number from 0 to 65535"),
        (["--port", "0", "--limit-concurrency", "-1"], "argument --limit-concurrency: must be"),
        (["--port", "0", "--write-timeout", "0"], "argument --write-timeout: must be"),
        (["--port", "BUSY"], "Address already in use"),
        (["--port", "0", "--upstream", "http://127.0.0.1:9", "--tls-cert", "x"], "both --tls-cert"),
    ],
)
def test_a_failed_start_says_why_and_writes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    target = tmp_path / "never-made"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.replace("BUSY", str(busy.getsockname()[1])) for a in args]
        done = run_cli("serve", "--models-dir", str(target), *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr, done.stderr
    assert "serving" not in done.stderr  # before: announced before binding
    assert not target.exists()  # before: an empty store skeleton
