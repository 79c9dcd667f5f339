"""The mirror over real sockets on 127.0.0.1 (uvicorn in a background thread): pulls back byte for
byte, eight clients at once, Range/HEAD on the wire, the 307 flow stock Ollama uses, escapes."""

from __future__ import annotations

import hashlib
import logging
import socket
from functools import partial
from pathlib import Path

import anyio
import httpx
import pytest

import ollama_seed
from ollama_seed.cli.main import main
from tests.support import MIB, SECRET
from tests.support.invariants import tree
from tests.support.mirror import serving
from tests.support.model import MT_SYSTEM, BuiltModel, make_model
from tests.support.net import free_port

OLLAMA_UA = "ollama/0.12.3 (amd64 linux) Go/go1.24.1"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return make_model(
        tmp_path_factory.mktemp("model"),
        size_bytes=9 * MIB + 77,
        seed=5,
        one_byte_layer=True,
        extra_layers=[(MT_SYSTEM, b"")],
    )


@pytest.fixture
def store_dir(tmp_path: Path, big: BuiltModel) -> Path:
    root = tmp_path / "served"
    big.expected_store(root, "registry.ollama.ai", "library/big", "latest")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return root


def expected(tmp_path: Path, model: BuiltModel, host: str) -> dict[str, bytes]:
    root = tmp_path / f"expected-{host.replace(':', '_')}"
    model.expected_store(root, host, "library/big", "latest")
    return tree(root)


def test_pull_back_from_the_mirror_byte_for_byte(store_dir: Path, tmp_path: Path, big: BuiltModel) -> None:
    with serving(store_dir) as info:
        host = f"127.0.0.1:{info.port}"
        result = ollama_seed.pull(f"{host}/library/big:latest", models_dir=tmp_path / "out", insecure=True)
        assert result.bytes_downloaded == big.total_size
        again = ollama_seed.pull(f"{host}/library/big:latest", models_dir=tmp_path / "out", insecure=True)
        assert again.bytes_downloaded == 0
    assert tree(tmp_path / "out") == expected(tmp_path, big, host)


@pytest.mark.anyio
async def test_eight_clients_at_once(store_dir: Path, tmp_path: Path, big: BuiltModel) -> None:
    with serving(store_dir) as info:
        host = f"127.0.0.1:{info.port}"
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(
                    partial(
                        ollama_seed.apull,
                        f"{host}/library/big",
                        models_dir=tmp_path / f"c{i}",
                        insecure=True,
                        connections=4,
                        use_locks=False,
                    )
                )
    want = expected(tmp_path, big, host)
    for i in range(8):
        assert tree(tmp_path / f"c{i}") == want, f"client {i}"


@pytest.mark.anyio
async def test_range_and_head_on_the_wire(store_dir: Path, big: BuiltModel) -> None:
    blob = big.model_layer
    with blob.source.open("rb") as f:  # type: ignore[union-attr]
        f.seek(MIB)
        middle = f.read(4096)
    with serving(store_dir) as info:
        async with httpx.AsyncClient(base_url=info.url, limits=httpx.Limits(max_connections=1)) as c:
            url = f"/v2/library/big/blobs/{blob.digest}"
            h = await c.head(url)
            assert h.status_code == 200 and int(h.headers["content-length"]) == blob.size and h.content == b""
            r = await c.get(url, headers={"Range": f"bytes={MIB}-{MIB + 4095}"})
            assert r.status_code == 206 and r.content == middle
            assert r.headers["content-range"] == f"bytes {MIB}-{MIB + 4095}/{blob.size}"
            r = await c.get(url, headers={"Range": f"bytes={blob.size}-"})
            assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{blob.size}"
            m = await c.head("/v2/library/big/manifests/latest")
            assert int(m.headers["content-length"]) == len(big.manifest)
            assert m.headers["docker-content-digest"] == big.manifest_digest
            r = await c.get("/v2/library/big/manifests/latest")  # the same connection still works after 416/HEAD
            assert r.content == big.manifest
            r = await c.put("/v2/library/big/manifests/latest", content=b"{}")
            assert r.status_code == 405


@pytest.mark.anyio
async def test_the_307_flow_of_stock_ollama(store_dir: Path, big: BuiltModel) -> None:
    blob = big.model_layer
    with serving(store_dir) as info:
        async with httpx.AsyncClient(follow_redirects=False) as c:
            url = f"http://127.0.0.1:{info.port}/v2/library/big/blobs/{blob.digest}"
            head = await c.head(url, headers={"User-Agent": OLLAMA_UA})
            assert int(head.headers["content-length"]) == blob.size
            r = await c.get(url, headers={"User-Agent": OLLAMA_UA})
            assert r.status_code == 307
            direct = httpx.URL(r.headers["location"])
            assert direct.host == "localhost" != httpx.URL(url).host  # another host name: Ollama stops there
            half = blob.size // 2
            h = hashlib.sha256()
            for rng in (f"bytes=0-{half - 1}", f"bytes={half}-{blob.size - 1}"):  # Ollama's parts, no auth, Go UA
                part = await c.get(direct, headers={"Range": rng, "User-Agent": "Go-http-client/1.1"})
                assert part.status_code == 206
                h.update(part.content)
            assert "sha256:" + h.hexdigest() == blob.digest


def test_our_client_follows_a_configured_redirect(
    store_dir: Path, tmp_path: Path, big: BuiltModel, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    with (
        caplog.at_level(logging.INFO, logger="ollama_seed.mirror.access"),
        serving(store_dir, port=port, redirect_blobs_to=f"http://localhost:{port}"),
    ):
        ollama_seed.pull(f"127.0.0.1:{port}/library/big", models_dir=tmp_path / "out", insecure=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "ollama_seed.mirror.access"]
    assert any('" 307 ' in line for line in lines)
    assert any("?direct=1" in line and '" 206 ' in line for line in lines)
    assert tree(tmp_path / "out") == expected(tmp_path, big, f"127.0.0.1:{port}")


def raw_http(port: int, target: bytes, method: bytes = b"GET", read: int | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        chunks = []
        got = 0
        while read is None or got < read:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)


def test_escapes_over_the_wire(store_dir: Path) -> None:
    targets = [
        b"/v2/../secret.txt",
        b"/v2/library/%2e%2e/manifests/latest",
        b"/v2/%2e%2e/%2e%2e/manifests/x",
        b"/v2/library/big/manifests/..%2f..%2f..%2fsecret.txt",
        b"/v2/library//big/manifests/latest",
        b"/v2/library/big/manifests/latest%00",
        b"/v2/library\\..\\big/manifests/latest",
        b"/v2/library/big/manifests/%252e%252e%252f",
        b"/v2/library/big/manifests/" + b"x" * 3000,
        b"/../../secret.txt",
        b"/v2/library/big/blobs/sha256:..%2f..%2fsecret.txt",
    ]
    with serving(store_dir) as info:
        for target in targets:
            reply = raw_http(info.port, target)
            status = int(reply.split(b" ", 2)[1])
            assert status in (400, 404, 414), (target, reply[:200])
            assert SECRET not in reply
        ok = raw_http(info.port, b"/v2/library/big/manifests/latest")
        assert ok.startswith(b"HTTP/1.1 200")


def test_a_client_that_hangs_up_stops_the_stream(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = make_model(tmp_path / "m", size_bytes=48 * MIB, seed=8)
    root = tmp_path / "served"
    model.expected_store(root, "registry.ollama.ai", "library/huge", "latest")
    with caplog.at_level(logging.INFO, logger="ollama_seed.mirror.access"), serving(root) as info:
        raw_http(info.port, f"/v2/library/huge/blobs/{model.model_layer.digest}".encode(), read=65536)
        ok = raw_http(info.port, b"/v2/library/huge/manifests/latest")
        assert ok.startswith(b"HTTP/1.1 200")
    line = next(r.getMessage() for r in caplog.records if "/blobs/" in r.getMessage())
    sent = int(line.split('" 200 ', 1)[1].split()[0])
    assert sent < model.model_layer.size


@pytest.mark.parametrize("args", [["--redirect-blobs-to", "ftp://x"], ["--upstream", "https://host/with/path"]])
def test_serve_refuses_bad_options(tmp_path: Path, args: list[str]) -> None:
    assert main(["serve", "--models-dir", str(tmp_path), "--port", "0", *args]) == 2


def test_serve_reports_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--models-dir", str(tmp_path), "--port", str(port)]) == 2
    assert "cannot listen" in capsys.readouterr().err
