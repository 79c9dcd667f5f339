"""The site features over real sockets on 127.0.0.1: TLS with a CA the test makes, logins with
``ollama-seed pull`` (environment and Docker config credentials) and curl, what the logs hold at
``-vv``, the open-server warning, and a graceful stop that lets a slow response finish."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import MIB
from tests.support.cli import run_cli, start_cli
from tests.support.invariants import assert_store_ok, tree
from tests.support.mirror import serving, write_htpasswd
from tests.support.model import BuiltModel, make_model
from tests.support.net import free_port
from tests.support.tls import CertFiles, make_certs

PASSWORD = "s3cret-Passw0rd-for-tests"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return make_model(tmp_path_factory.mktemp("model"), size_bytes=5 * MIB + 11, seed=21)


@pytest.fixture
def store_dir(tmp_path: Path, model: BuiltModel) -> Path:
    root = tmp_path / "served"
    model.expected_store(root, "registry.ollama.ai", "library/big", "latest")
    return root


def manifests_in(root: Path) -> list[Path]:
    return [p for p in (root / "manifests").rglob("*") if p.is_file()]


def expected(tmp_path: Path, model: BuiltModel, host: str) -> dict[str, bytes]:
    root = tmp_path / f"expected-{host.replace(':', '_')}"
    model.expected_store(root, host, "library/big", "latest")
    return tree(root)


def test_pull_over_tls_with_a_private_ca(store_dir: Path, tmp_path: Path, model: BuiltModel, certs: CertFiles) -> None:
    with serving(store_dir, tls_cert=certs.cert, tls_key=certs.key) as info:
        assert info.url.startswith("https://")
        host = f"127.0.0.1:{info.port}"
        out = tmp_path / "out"
        done = run_cli(
            "pull",
            "--models-dir",
            str(out),
            "--progress",
            "none",
            f"{host}/library/big:latest",
            env={"SSL_CERT_FILE": str(certs.ca)},
        )
        assert done.returncode == 0, done.stderr
        assert tree(out) == expected(tmp_path, model, host)
        assert_store_ok(out)
        blob = model.model_layer
        got = tmp_path / "curl.bin"
        curl = subprocess.run(
            [
                "curl",
                "-sS",
                "--fail",
                "--cacert",
                str(certs.ca),
                "-o",
                str(got),
                f"https://localhost:{info.port}/v2/library/big/blobs/{blob.digest}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert curl.returncode == 0, curl.stderr
        assert got.read_bytes() == blob.read_bytes()
        refused = run_cli(
            "pull", "--models-dir", str(tmp_path / "no-ca"), "--progress", "none", f"{host}/library/big:latest"
        )
        assert refused.returncode == 4
        assert "TLS certificate of https://127.0.0.1" in refused.stderr and "SSL_CERT_FILE" in refused.stderr
        assert not manifests_in(tmp_path / "no-ca")
        plain = subprocess.run(
            ["curl", "-sS", "--fail", "-o", "/dev/null", f"https://localhost:{info.port}/v2/"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert plain.returncode == 60 and "certificate" in plain.stderr  # curl: peer certificate not verified
        with socket.create_connection(("127.0.0.1", info.port), timeout=10) as s:  # no plain http on the TLS port
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert not s.recv(4096).startswith(b"HTTP/1.1 200")


@pytest.fixture
def server_files(tmp_path: Path) -> dict[str, Path]:
    return {"htpasswd": write_htpasswd(tmp_path / "htpasswd", {"puller": PASSWORD, "other": "other-pass-123"})}


@pytest.fixture
def cli_server(
    tmp_path: Path, store_dir: Path, certs: CertFiles, server_files: dict[str, Path]
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """``ollama-seed -vv serve`` with TLS and --htpasswd, as its own process; (host, log, process)."""
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_cli(
        "-vv",
        "serve",
        "--models-dir",
        str(store_dir),
        "--port",
        str(port),
        "--tls-cert",
        str(certs.cert),
        "--tls-key",
        str(certs.key),
        "--htpasswd",
        str(server_files["htpasswd"]),
        "--shutdown-timeout",
        "60",
        log=log,
    )
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}", log, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_logins_with_ollama_seed_pull_and_nothing_secret_in_the_logs(
    cli_server: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path, model: BuiltModel, certs: CertFiles
) -> None:
    host, log, proc = cli_server
    ca = {"SSL_CERT_FILE": str(certs.ca)}
    name = f"{host}/library/big:latest"
    anonymous = run_cli("-vv", "pull", "--models-dir", str(tmp_path / "anon"), "--progress", "none", name, env=ca)
    assert anonymous.returncode == 7 and "user name and password" in anonymous.stderr
    wrong = run_cli(
        "-vv",
        "pull",
        "--models-dir",
        str(tmp_path / "wrong"),
        "--progress",
        "none",
        name,
        env={**ca, "OLLAMA_SEED_REGISTRY_USER": "puller", "OLLAMA_SEED_REGISTRY_PASSWORD": "not-it-at-all"},
    )
    assert wrong.returncode == 7, wrong.stderr
    assert not manifests_in(tmp_path / "wrong")
    by_env = run_cli(
        "-vv",
        "pull",
        "--models-dir",
        str(tmp_path / "env"),
        "--progress",
        "none",
        name,
        env={**ca, "OLLAMA_SEED_REGISTRY_USER": "puller", "OLLAMA_SEED_REGISTRY_PASSWORD": PASSWORD},
    )
    assert by_env.returncode == 0, by_env.stderr
    assert tree(tmp_path / "env") == expected(tmp_path, model, host)
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps({"auths": {host: {"auth": base64.b64encode(f"puller:{PASSWORD}".encode()).decode()}}})
    )
    by_config = run_cli(
        "-vv",
        "pull",
        "--models-dir",
        str(tmp_path / "cfg"),
        "--progress",
        "none",
        name,
        env={**ca, "DOCKER_CONFIG": str(docker)},
    )
    assert by_config.returncode == 0, by_config.stderr
    assert tree(tmp_path / "cfg") == expected(tmp_path, model, host)
    nowhere = f"127.0.0.1:{free_port()}"  # --mirror: the mirror's own login, the registry never asked
    by_mirror = run_cli(
        "-vv",
        "pull",
        "--mirror",
        f"https://{host}",
        "--models-dir",
        str(tmp_path / "mirror"),
        "--progress",
        "none",
        f"{nowhere}/library/big:latest",
        env={
            **ca,
            "OLLAMA_SEED_REGISTRY_USER_" + host.replace(".", "_").replace(":", "_"): "puller",
            "OLLAMA_SEED_REGISTRY_PASSWORD_" + host.replace(".", "_").replace(":", "_"): PASSWORD,
        },
    )
    assert by_mirror.returncode == 0, by_mirror.stderr
    assert tree(tmp_path / "mirror") == expected(tmp_path, model, nowhere)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    server_log = log.read_text()
    assert "failed login from 127.0.0.1: bad password (user 'puller')" in server_log
    assert " 401 " in server_log and " 200 " in server_log  # the access log ran at -vv
    secrets = [
        PASSWORD,
        "not-it-at-all",
        base64.b64encode(f"puller:{PASSWORD}".encode()).decode(),
        base64.b64encode(b"puller:not-it-at-all").decode(),
    ]
    for text in (server_log, anonymous.stderr, wrong.stderr, by_env.stderr, by_config.stderr, by_mirror.stderr):
        for secret in secrets:
            assert secret not in text


def test_a_graceful_stop_lets_a_slow_response_finish(
    cli_server: tuple[str, Path, subprocess.Popen[bytes]], store_dir: Path, tmp_path: Path, certs: CertFiles
) -> None:
    host, log, proc = cli_server
    huge = make_model(tmp_path / "huge", size_bytes=64 * MIB, seed=22)  # more than the socket buffers hold
    huge.expected_store(store_dir, "registry.ollama.ai", "library/huge", "latest")
    blob = huge.model_layer
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    auth = base64.b64encode(f"puller:{PASSWORD}".encode()).decode()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # a slow reader: little buffered on our side
    raw.settimeout(60)
    raw.connect(("127.0.0.1", int(host.rsplit(":", 1)[1])))
    with raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(
            f"GET /v2/library/huge/blobs/{blob.digest} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Basic {auth}\r\n\r\n".encode()
        )
        data = bytearray(s.recv(65536))
        assert data.startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGTERM)  # mid-response: the server stops accepting, this response goes on
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until it no longer accepts connections
            try:
                socket.create_connection(("127.0.0.1", int(host.rsplit(":", 1)[1])), timeout=1).close()
            except OSError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the server still accepts connections after SIGTERM")
        while chunk := s.recv(1 << 20):
            data.extend(chunk)
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert body == blob.read_bytes()
    assert head.startswith(b"HTTP/1.1 200") and proc.wait(60) == 0  # then the server closed it and exited
    text = log.read_text()
    stopping = text.index("stopping: no new connections")  # the response ended after it, with every byte
    assert text.index(f'"GET /v2/library/huge/blobs/{blob.digest}" 200 {blob.size} ') > stopping


def test_an_open_server_on_the_network_says_so_once(store_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "open.log"
    proc = start_cli("serve", "--models-dir", str(store_dir), "--host", "0.0.0.0", "--port", str(port), log=log)
    try:
        deadline = time.monotonic() + 60
        while "no login is required" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert log.read_text().count("no login is required") == 1
    with serving(store_dir) as _info:  # on loopback: no warning (checked through the logger in-process)
        pass


def test_a_port_in_use_is_a_clear_error(store_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        done = run_cli("serve", "--models-dir", str(store_dir), "--port", str(port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "choose another --host/--port" in done.stderr


def test_tls_files_that_do_not_fit_are_a_clear_error(store_dir: Path, certs: CertFiles, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    done = run_cli(
        "serve",
        "--models-dir",
        str(store_dir),
        "--port",
        "0",
        "--tls-cert",
        str(certs.cert),
        "--tls-key",
        str(other.key),
    )
    assert done.returncode == 2 and "cannot use --tls-cert" in done.stderr
    done = run_cli("serve", "--models-dir", str(store_dir), "--port", "0", "--tls-cert", str(certs.cert))
    assert done.returncode == 2 and "both --tls-cert FILE and --tls-key FILE" in done.stderr
    assert shutil.which("curl")


def test_request_head_and_concurrency_limits(store_dir: Path) -> None:
    with serving(store_dir, max_header_size=4096, limit_concurrency=3) as info:
        with socket.create_connection(("127.0.0.1", info.port), timeout=30) as s:
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 8192)  # no end of head yet
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400"), reply[:100]  # refused before the head ends: not buffered on
        with (
            socket.create_connection(("127.0.0.1", info.port), timeout=30) as one,
            socket.create_connection(("127.0.0.1", info.port), timeout=30) as two,
            socket.create_connection(("127.0.0.1", info.port), timeout=30) as three,
        ):
            for held in (one, two, three):  # three idle keep-alive connections: the limit of 3 is reached
                held.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
                assert held.recv(4096).startswith(b"HTTP/1.1 200")
            with socket.create_connection(("127.0.0.1", info.port), timeout=30) as fourth:
                fourth.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert fourth.recv(4096).startswith(b"HTTP/1.1 200")  # the longest idle made room
            assert one.recv(4096) == b""  # closed for it
        with socket.create_connection(("127.0.0.1", info.port), timeout=30) as after:
            after.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            deadline = time.monotonic() + 30
            reply = after.recv(4096)
            while not reply.startswith(b"HTTP/1.1 200") and time.monotonic() < deadline:  # the two closed
                after.close()
                time.sleep(0.05)
                with socket.create_connection(("127.0.0.1", info.port), timeout=30) as retry:
                    retry.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    reply = retry.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200")


def test_ollama_seed_follows_a_signed_redirect_under_a_login(
    store_dir: Path,
    tmp_path: Path,
    model: BuiltModel,
    server_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import ollama_seed

    port = free_port()
    monkeypatch.setenv("OLLAMA_SEED_REGISTRY_USER", "puller")
    monkeypatch.setenv("OLLAMA_SEED_REGISTRY_PASSWORD", PASSWORD)
    with (
        caplog.at_level(logging.INFO, logger="ollama_seed.mirror.access"),
        serving(store_dir, port=port, htpasswd=server_files["htpasswd"], redirect_blobs_to=f"http://localhost:{port}"),
    ):
        ollama_seed.pull(f"127.0.0.1:{port}/library/big", models_dir=tmp_path / "out", insecure=True)
    assert tree(tmp_path / "out") == expected(tmp_path, model, f"127.0.0.1:{port}")
    lines = [r.getMessage() for r in caplog.records if r.name == "ollama_seed.mirror.access"]
    assert any('" 307 ' in line and "user=puller" in line for line in lines)
    signed = [line for line in lines if "?direct=1" in line and '" 206 ' in line]
    assert signed and not any(
        "signature" in line or "user=" in line for line in signed
    )  # no login, no signature logged
