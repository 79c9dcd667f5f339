"""Issue 25, item 2: forgetting ``--insecure`` for a plain-http registry says so, in every way in.

Before: ``SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number``, exit 4, retried with
backoff, for pull, ensure, push and the Python API alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import ollama_seed
from ollama_seed.cli.main import main
from tests.support.mirror import serving
from tests.support.model import make_model

REPO, TAG = "library/demo", "v1"


@pytest.fixture
def plain_http(tmp_path: Path) -> Iterator[str]:
    """``127.0.0.1:PORT``: a registry on plain http (ollama-seed's mirror over a small store)."""
    make_model(size_bytes=1000).expected_store(tmp_path / "registry", "registry.ollama.ai", REPO, TAG)
    with serving(tmp_path / "registry") as info:
        yield f"127.0.0.1:{info.port}"


def _says_insecure(text: str) -> None:
    assert "plain http" in text and "--insecure" in text, text
    assert "WRONG_VERSION_NUMBER" not in text


@pytest.mark.parametrize("command", ["pull", "ensure"])
def test_pull_and_ensure_name_the_flag(
    command: str, plain_http: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([command, "--progress", "none", "--models-dir", str(tmp_path / "m"), f"{plain_http}/{REPO}:{TAG}"])
    assert code == 4
    _says_insecure(capsys.readouterr().err)
    assert not (tmp_path / "m" / "manifests").exists() or not any((tmp_path / "m" / "manifests").iterdir())


def test_push_names_the_flag(plain_http: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "m"
    make_model(size_bytes=1000).expected_store(models, "registry.ollama.ai", REPO, TAG)
    assert main(["push", "--models-dir", str(models), f"demo:{TAG}", f"{plain_http}/ns/demo:{TAG}"]) == 4
    _says_insecure(capsys.readouterr().err)


def test_the_python_api_names_it_and_does_not_retry(plain_http: str, tmp_path: Path) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(ollama_seed.TransferError) as info:
        ollama_seed.pull(f"{plain_http}/{REPO}:{TAG}", models_dir=tmp_path / "m")
    assert "insecure=True" in str(info.value)
    _says_insecure(str(info.value))
    assert time.monotonic() - started < 2.0  # no backoff: TLS to a plain-http server fails the same way every time


@pytest.fixture
def counting_plain_http() -> Iterator[tuple[str, list[int]]]:
    """``127.0.0.1:PORT`` of a plain-http server that answers 400 to anything, and the TLS hellos it got
    (one entry per connection that opened with one)."""
    import socket
    import threading

    hellos: list[int] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    if conn.recv(4096)[:1] == b"\x16":  # a TLS handshake record
                        hellos.append(1)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}", hellos
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_push_to_plain_http_is_not_retried(counting_plain_http: tuple[str, list[int]], tmp_path: Path) -> None:
    """Plain http answering a TLS hello stays plain http: push fails on its first request (before: three
    tries per blob with backoff, then the same message)."""
    address, hellos = counting_plain_http
    models = tmp_path / "m"
    make_model(size_bytes=1000).expected_store(models, "registry.ollama.ai", REPO, TAG)
    with pytest.raises(ollama_seed.TransferError) as info:
        ollama_seed.push(f"demo:{TAG}", f"{address}/ns/demo:{TAG}", models_dir=models, concurrency=1)
    _says_insecure(str(info.value))
    assert "insecure=True" in str(info.value)
    # before: three TLS hellos for the first blob (and more for the next); now one, and at most one more
    # from the next blob, started as the first failed and cancelled
    assert len(hellos) < 3, f"{len(hellos)} TLS hellos: a TLS failure against plain http was retried"
