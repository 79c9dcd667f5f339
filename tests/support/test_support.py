"""Tests of the project's own test servers: the docker-registry wrapper, seeder, model builder, proxy."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TypeVar

import anyio
import httpx
import pytest

from tests.support.model import MANIFEST_V2, MT_MODEL, BuiltModel, make_model
from tests.support.net import http_server
from tests.support.proxy import ProxyThread, ShapingProxy, mbit
from tests.support.registry import DockerRegistry, push_blob, registry_available, seed_registry

F = TypeVar("F", bound=Callable[..., object])


def needs_registry(f: F) -> F:
    skip = pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry")
    marked: F = pytest.mark.registry(skip(f))
    return marked


REPO, TAG = "library/tiny", "latest"
MODEL_SIZE = 3 * 1024 * 1024 + 12345  # not a multiple of the 1 MiB upload chunk
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the proxy is asyncio code


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    if not registry_available():
        pytest.skip("needs /usr/bin/docker-registry")
    with DockerRegistry.start(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def model(registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    m = make_model(
        tmp_path_factory.mktemp("model"), size_bytes=MODEL_SIZE, seed=7, one_byte_layer=True, duplicate_layer=1
    )
    seed_registry(registry.url, REPO, TAG, m, chunked=True, chunk_size=1 << 20)
    return m


def blob_url(base: str, digest: str, repo: str = REPO) -> str:
    return f"{base}/v2/{repo}/blobs/{digest}"


def raw_get(url: str, headers: str = "", timeout: float = 10.0) -> tuple[bytes, bytes, str]:
    """One GET on a fresh socket, read to EOF: (head, body, how it ended: eof/reset/timeout)."""
    u = urllib.parse.urlsplit(url)
    data, end = b"", "eof"
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=timeout) as s:
        s.sendall(f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n{headers}\r\n".encode())
        try:
            while chunk := s.recv(1 << 16):
                data += chunk
        except ConnectionResetError:
            end = "reset"
        except TimeoutError:
            end = "timeout"
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, end


# --------------------------------------------------------------------------- model builder


def test_synthetic_layer_is_deterministic(tmp_path: Path) -> None:
    in_memory = make_model(size_bytes=8 << 20, seed=0)
    on_disk = make_model(tmp_path, size_bytes=8 << 20, seed=0)
    known = "sha256:2c00584ace8b52fe89703ae0d3432abe5129c3c0e97c953df8fef7a6ccdc1e8d"
    assert in_memory.model_layer.digest == on_disk.model_layer.digest == known
    assert isinstance(on_disk.model_layer.source, Path)
    assert in_memory.manifest == on_disk.manifest


def test_manifest_shape_and_expected_store(tmp_path: Path) -> None:
    real = tmp_path / "real.gguf"
    real.write_bytes(b"GGUF" + bytes(range(256)) * 10)
    m = make_model(
        model_file=real, extra_layers=[("application/x-extra", b"xx")], one_byte_layer=True, duplicate_layer=0
    )
    doc = json.loads(m.manifest)
    assert m.manifest == json.dumps(doc, separators=(",", ":")).encode()
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == MANIFEST_V2
    assert doc["layers"][0] == doc["layers"][-1]
    assert doc["layers"][0]["mediaType"] == MT_MODEL
    assert doc["layers"][0]["size"] == real.stat().st_size
    assert any(layer["size"] == 1 for layer in doc["layers"])
    config = json.loads(m.config.read_bytes())
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in doc["layers"]]
    assert {"model_format", "model_family", "model_families", "model_type", "file_type"} <= set(config)
    path = m.expected_store(tmp_path / "store", "127.0.0.1:5000", "library/real", "v1")
    assert path == tmp_path / "store/manifests/127.0.0.1:5000/library/real/v1"
    assert path.read_bytes() == m.manifest
    blobs = sorted(p.name for p in (tmp_path / "store/blobs").iterdir())
    assert blobs == sorted(f"sha256-{b.hex}" for b in m.blobs)
    assert len(blobs) == len(doc["layers"])  # duplicate descriptor, one blob file (+ config)
    for b in m.blobs:
        data = (tmp_path / "store/blobs" / f"sha256-{b.hex}").read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == b.digest


# --------------------------------------------------------------------------- registry


@needs_registry
def test_registry_answers_v2(registry: DockerRegistry) -> None:
    r = httpx.get(f"{registry.url}/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert registry.host == registry.url.removeprefix("http://")


@needs_registry
def test_manifest_and_blobs_round_trip(registry: DockerRegistry, model: BuiltModel) -> None:
    with httpx.Client() as c:
        r = c.get(f"{registry.url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": MANIFEST_V2})
        assert r.status_code == 200
        assert r.content == model.manifest
        assert r.headers["Docker-Content-Digest"] == model.manifest_digest
        sizes = set()
        for b in model.blobs:
            got = c.get(blob_url(registry.url, b.digest))
            assert got.status_code == 200
            assert got.content == b.read_bytes()
            sizes.add(b.size)
        assert {1, MODEL_SIZE} <= sizes


@needs_registry
def test_blob_range_gives_206(registry: DockerRegistry, model: BuiltModel) -> None:
    layer = model.model_layer
    r = httpx.get(blob_url(registry.url, layer.digest), headers={"Range": "bytes=1048570-1048589"})
    assert r.status_code == 206
    assert r.content == layer.read_bytes()[1048570:1048590]
    assert r.headers["Content-Range"] == f"bytes 1048570-1048589/{MODEL_SIZE}"


@needs_registry
def test_push_blob_monolithic_then_skip(registry: DockerRegistry, tmp_path: Path) -> None:
    f = tmp_path / "blob.bin"
    f.write_bytes(b"abc" * 100_001)
    d = push_blob(registry.url, "library/mono", f)
    assert push_blob(registry.url, "library/mono", f.read_bytes()) == d  # already there: HEAD, skip
    assert httpx.get(blob_url(registry.url, d, "library/mono")).content == f.read_bytes()


@needs_registry
def test_registry_cli_seed(registry: DockerRegistry, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.registry",
            "seed",
            registry.url,
            "library/cli",
            "v1",
            "--size-bytes",
            "5000",
            "--seed",
            "3",
            "--expect-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    doc = json.loads(out.stdout)
    assert doc["manifest_digest"] == make_model(size_bytes=5000, seed=3).manifest_digest
    assert (tmp_path / "manifests" / registry.host / "library/cli/v1").is_file()


# --------------------------------------------------------------------------- proxy over the registry


@needs_registry
def test_proxy_relays_identical_bodies_and_counts(registry: DockerRegistry, model: BuiltModel) -> None:
    layer = model.model_layer
    with ProxyThread(registry.url) as p, httpx.Client() as c:
        m = c.get(f"{p.url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": MANIFEST_V2})
        assert m.content == model.manifest
        assert c.get(blob_url(p.url, layer.digest)).content == layer.read_bytes()
        part = c.get(blob_url(p.url, layer.digest), headers={"Range": "bytes=10-19"})
        assert part.status_code == 206
        assert part.content == layer.read_bytes()[10:20]
        assert c.head(blob_url(p.url, layer.digest)).headers["Content-Length"] == str(MODEL_SIZE)
        s = p.stats.snapshot()
    assert s["connections"] == 1  # keep-alive held across all four requests
    assert s["requests"] == 4
    assert s["bytes_down"] == len(model.manifest) + MODEL_SIZE + 10
    assert s["per_path"][f"/v2/{REPO}/blobs/{layer.digest}"] == MODEL_SIZE + 10
    # the link phase counts blob GET bodies only (not the manifest, not the HEAD)
    assert s["blob_bytes"] == MODEL_SIZE + 10
    assert s["blob_phase_s"] is not None and 0 < s["blob_phase_s"] <= s["seconds"]


@needs_registry
def test_proxy_relays_pushes(registry: DockerRegistry) -> None:
    data = bytes(range(256)) * 5000
    with ProxyThread(registry.url) as p:
        d1 = push_blob(p.url, "library/via-proxy", data, chunked=True, chunk_size=300_000)
        d2 = push_blob(p.url, "library/via-proxy", data[:77_777])
    for d, body in ((d1, data), (d2, data[:77_777])):
        assert httpx.get(blob_url(registry.url, d, "library/via-proxy")).content == body


@needs_registry
@pytest.mark.anyio
async def test_proxy_caps_and_latency(registry: DockerRegistry, model: BuiltModel) -> None:
    url_path = f"/v2/{REPO}/blobs/{model.model_layer.digest}"
    rng = {"Range": "bytes=0-524287"}  # 512 KiB
    async with ShapingProxy(registry.url, per_conn_bps=mbit(8), latency_ms=150) as p, httpx.AsyncClient() as c:
        t0 = time.monotonic()
        r = await c.get(p.url + url_path, headers=rng)
        elapsed = time.monotonic() - t0
    assert len(r.content) == 512 * 1024
    assert elapsed >= 0.15 + 0.5 * 524288 / mbit(8)  # ~0.67 s in theory; loose lower bound

    async with ShapingProxy(registry.url, total_bps=mbit(8)) as p, httpx.AsyncClient() as c:
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(functools.partial(c.get, p.url + url_path, headers=rng))
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.7 * 2 * 524288 / mbit(8)  # two bodies share one 1 MB/s budget


@needs_registry
@pytest.mark.parametrize("style", ["fin", "rst", "stall"])
def test_proxy_drop_after_n(registry: DockerRegistry, model: BuiltModel, style: str) -> None:
    url = blob_url("", model.model_layer.digest)
    with ProxyThread(registry.url, drop_after_bytes=10_000, drop_style=style, stall_s=0.3, max_faults=1) as p:
        t0 = time.monotonic()
        head, body, end = raw_get(p.url + url)
        elapsed = time.monotonic() - t0
        assert head.startswith(b"HTTP/1.1 200")
        assert body == model.model_layer.read_bytes()[: len(body)]
        if style == "rst":
            assert len(body) <= 10_000
        else:
            assert len(body) == 10_000
            assert end == "eof"
        if style == "stall":
            assert elapsed >= 0.25
        _, again, _ = raw_get(p.url + url)  # max_faults=1: the retry gets everything
        assert len(again) == MODEL_SIZE
        assert p.stats.snapshot()["faults"] == {"drop": 1}


@needs_registry
def test_proxy_stops_cleanly_under_connects_and_stalls(registry: DockerRegistry, model: BuiltModel) -> None:
    """Stopping mid-stall, with clients still connecting, leaves no socket for the GC to find open."""
    import gc
    import warnings

    url = blob_url("", model.model_layer.digest)
    host, port = "", 0
    done = threading.Event()

    def hammer() -> None:  # what a cancelled pull's worker threads do: connect late, then go
        while not done.is_set():
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2) as s:
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            p = ProxyThread(registry.url, drop_after_bytes=1000, drop_style="stall", stall_s=30).start()
            host, port = "127.0.0.1", p.proxy.port
            hammers = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
            with socket.create_connection((host, port)) as stalled:
                stalled.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert stalled.recv(1)  # the head is out: the handler now sits in its stall
                done.clear()
                for h in hammers:
                    h.start()
                try:
                    time.sleep(0.05)
                    t0 = time.monotonic()
                    p.stop()
                    assert time.monotonic() - t0 < 5
                finally:
                    done.set()
                    for h in hammers:
                        h.join()
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


@needs_registry
def test_proxy_injects_5xx_only_on_blobs(registry: DockerRegistry, model: BuiltModel) -> None:
    with ProxyThread(registry.url, fail_rate=1.0, fail_statuses=(500, 503), max_faults=2, seed=1) as p:
        with httpx.Client() as c:
            m = c.get(f"{p.url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": MANIFEST_V2})
            assert m.status_code == 200
            codes = [c.get(blob_url(p.url, model.config.digest)).status_code for _ in range(3)]
        assert codes[:2] in ([500, 500], [500, 503], [503, 500], [503, 503])
        assert codes[2] == 200
        assert sum(p.stats.snapshot()["faults"].values()) == 2


@needs_registry
def test_proxy_ignore_range(registry: DockerRegistry, model: BuiltModel) -> None:
    with ProxyThread(registry.url, ignore_range=True) as p:
        r = httpx.get(blob_url(p.url, model.model_layer.digest), headers={"Range": "bytes=0-99"})
    assert r.status_code == 200
    assert len(r.content) == MODEL_SIZE


@needs_registry
def test_proxy_corrupts_exactly_one_byte(registry: DockerRegistry, model: BuiltModel) -> None:
    good = model.model_layer.read_bytes()
    with ProxyThread(registry.url, corrupt_byte_at=300_000, max_faults=1) as p, httpx.Client() as c:
        bad = c.get(blob_url(p.url, model.model_layer.digest)).content
        clean = c.get(blob_url(p.url, model.model_layer.digest)).content
    assert len(bad) == len(good)
    assert [i for i in range(len(good)) if bad[i] != good[i]] == [300_000]
    assert clean == good


@needs_registry
def test_proxy_cdn_redirect(registry: DockerRegistry, model: BuiltModel) -> None:
    layer = model.model_layer
    with ProxyThread(registry.url, redirect_blobs_to="http://localhost:{port}", cdn_expire_after=2) as p:
        with httpx.Client() as c:
            r = c.get(blob_url(p.url, layer.digest))
            assert r.status_code == 307
            loc = urllib.parse.urlsplit(r.headers["Location"])
            assert loc.hostname == "localhost"
            assert loc.port == int(p.url.rsplit(":", 1)[1])
            assert loc.path == f"/v2/{REPO}/blobs/{layer.digest}"
            assert "seed_cdn=1" in loc.query
            marked = r.headers["Location"]
            assert c.get(marked).content == layer.read_bytes()
            assert c.get(marked, headers={"Range": "bytes=0-9"}).status_code == 206
            assert c.get(marked).status_code == 403  # token used twice: expired
            fresh = c.get(blob_url(p.url, layer.digest), follow_redirects=True)
            assert fresh.content == layer.read_bytes()
            assert fresh.url.host == "localhost"
            manifest = c.get(f"{p.url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": MANIFEST_V2})
            assert manifest.status_code == 200  # only blobs are redirected
        s = p.stats.snapshot()
    assert s["redirects"] == 2
    assert s["faults"] == {"cdn_expired": 1}


@needs_registry
def test_proxy_cli(registry: DockerRegistry, model: BuiltModel) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.proxy", "--listen", "127.0.0.1:0", "--upstream", registry.url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(blob_url(url, model.config.digest)).content == model.config.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1])["bytes_down"] == model.config.size


# --------------------------------------------------------------------------- proxy: framings the registry never uses

CHUNKS = [b"a" * 1000, b"b" * 70_000, b"c"]


class _Framings(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:  # close-delimited
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"".join(CHUNKS))
            self.close_connection = True

    def do_PUT(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = hashlib.sha256(body).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture(scope="module")
def framings() -> Iterator[str]:
    with http_server(_Framings) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.mark.parametrize("cap", [0.0, mbit(100)])
def test_proxy_chunked_and_close_delimited(framings: str, cap: float) -> None:
    body = b"".join(CHUNKS)
    with ProxyThread(framings, per_conn_bps=cap) as p, httpx.Client() as c:
        assert c.get(p.url + "/chunked").content == body
        assert c.get(p.url + "/close").content == body
        assert p.stats.snapshot()["bytes_down"] == 2 * len(body)

        def gen() -> Iterator[bytes]:
            yield from CHUNKS

        sent_chunked = c.put(p.url + "/echo", content=gen())
        sent_plain = c.put(p.url + "/echo", content=body)
    assert sent_chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert sent_chunked.text == sent_plain.text == hashlib.sha256(body).hexdigest()
