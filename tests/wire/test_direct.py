"""The direct path (wire.direct): blocking range requests in worker threads, and how wire.transfer uses it."""

from __future__ import annotations

import itertools
import logging
import re
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from ollama_seed.core.reference import ModelName
from ollama_seed.pulling.session import PullSession
from ollama_seed.store.store import ModelStore
from ollama_seed.wire.direct import (
    DirectPool,
    proxied,
    run_in_thread,
)
from ollama_seed.wire.tls import LazyTrustContext
from ollama_seed.wire.transfer import BlobDownloader
from tests.support import MIB
from tests.support.invariants import tree
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

BLOB = bytes(range(256)) * 4096  # 1 MiB
REPO = "library/direct"


# --------------------------------------------------------------------------- which requests go direct


@pytest.mark.parametrize(
    ("env", "scheme", "expected"),
    [
        ({}, "http", False),
        ({}, "https", False),
        ({"HTTP_PROXY": "http://p:3128"}, "http", True),
        ({"HTTP_PROXY": "http://p:3128"}, "https", False),
        ({"https_proxy": "http://p:3128"}, "https", True),
        ({"ALL_PROXY": "socks5://p:1080"}, "http", True),
        ({"all_proxy": "socks5://p:1080"}, "https", True),
        ({"HTTP_PROXY": ""}, "http", False),  # empty means unset, as for httpx
        ({"NO_PROXY": "*"}, "http", False),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, "https", True),  # coarse on purpose: httpx decides
    ],
)
def test_a_proxy_in_the_environment_keeps_requests_on_httpx(env: dict[str, str], scheme: str, expected: bool) -> None:
    assert proxied(scheme, env) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:5000/v2/x/blobs/sha256:ab", True),
        ("https://cdn.example/blob?X-Amz-Signature=abc&x=1%20y", True),
        ("ftp://host/blob", False),
        ("http://host:99999/blob", False),
        ("http:///blob", False),
        ("https://cdn.example/a b", False),  # a hostile Location: httpx quotes it, http.client would refuse
        ("https://cdn.example/a\r\nX-Injected: 1", False),
        ("https://cdn.example/\x7f", False),
        ("https://cdn.example/bl\u00f6b", False),
    ],
)
def test_only_urls_http_client_sends_verbatim_go_direct(
    url: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert DirectPool.usable(url) is expected


# --------------------------------------------------------------------------- pulls through it


@pytest.fixture(scope="module")
def model(docker_registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    m = make_model(tmp_path_factory.mktemp("direct-model"), size_bytes=24 * MIB + 777, seed=11)
    seed_registry(docker_registry.url, REPO, "latest", m)
    return m


def _pull(models: Path, proxy: ProxyThread, **kw: object) -> None:
    async def go() -> None:
        async with PullSession(ModelStore(models), insecure=True, **kw) as session:  # type: ignore[arg-type]
            await session.pull(ModelName.parse(f"{proxy.url.removeprefix('http://')}/{REPO}"))

    anyio.run(go)


@pytest.mark.registry
def test_direct_and_httpx_paths_write_the_same_store(
    docker_registry: DockerRegistry,
    model: BuiltModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ollama_seed.direct")
    with ProxyThread(docker_registry.url) as proxy:
        _pull(tmp_path / "direct", proxy)
        direct_lines = [r for r in caplog.records if r.name == "ollama_seed.direct"]
        caplog.clear()
        monkeypatch.setenv("OLLAMA_SEED_DIRECT", "0")
        _pull(tmp_path / "httpx", proxy)
        assert not [r for r in caplog.records if r.name == "ollama_seed.direct"]
    assert len(direct_lines) >= 5  # every blob's range requests went direct
    assert all("206" in r.getMessage() or "200" in r.getMessage() for r in direct_lines)
    assert tree(tmp_path / "direct") == tree(tmp_path / "httpx")
    expected = tmp_path / "expected"
    model.expected_store(expected, proxy.url.removeprefix("http://"), REPO, "latest")
    assert tree(tmp_path / "direct") == tree(expected)


@pytest.mark.registry
def test_cancelling_a_pull_stops_every_reader_thread_before_it_returns(
    docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker thread may outlive the pull: it would write into a closed (or reused) descriptor."""
    models = tmp_path / "models"
    active: list[int] = [0, 0]  # readers running now, readers ever started
    still_reading: list[int] = []
    lock = threading.Lock()
    real = BlobDownloader._read_run

    def counted(self: BlobDownloader, *args: Any) -> None:
        with lock:
            active[0] += 1
            active[1] += 1
        try:
            real(self, *args)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(BlobDownloader, "_read_run", counted)
    # every body goes silent after 300 kB: at the cancel, readers are blocked in recv with nothing coming
    with ProxyThread(docker_registry.url, drop_after_bytes=300_000, drop_style="stall", stall_s=20) as proxy:

        async def go() -> float:
            async with PullSession(ModelStore(models), insecure=True) as session:
                with anyio.move_on_after(0.8):
                    await session.pull(ModelName.parse(f"{proxy.url.removeprefix('http://')}/{REPO}"))
                still_reading.append(active[0])
                return time.monotonic()

        started = time.monotonic()
        returned = anyio.run(go)
        assert active[1] >= 2 and still_reading == [0]  # readers ran, and none outlived the cancelled pull
        assert returned - started < 3  # prompt, though readers were blocked in recv
        state = next((models / ".ollama-seed" / "staging").glob(f"sha256-{model.model_layer.hex}.state"))
        data = state.with_suffix(".data")
        before = (state.read_bytes(), data.stat().st_mtime_ns)
        assert proxy.stats.snapshot()["blob_bytes"] > 0
        time.sleep(0.5)
        assert (state.read_bytes(), data.stat().st_mtime_ns) == before  # nothing writes any more


# --------------------------------------------------------------------------- the lazily loaded trust


def test_lazy_trust_has_the_default_context_settings_and_loads_nothing_until_a_handshake() -> None:
    lazy, default = LazyTrustContext(), ssl.create_default_context()
    for attr in ("protocol", "verify_mode", "check_hostname", "options", "verify_flags", "minimum_version"):
        assert getattr(lazy, attr) == getattr(default, attr), attr
    assert lazy.cert_store_stats()["x509_ca"] == 0


def test_lazy_trust_reads_ssl_cert_file_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import certifi

    bundle = Path(certifi.where()).read_text()
    one = bundle[: bundle.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    (tmp_path / "one.pem").write_text(one[one.index("-----BEGIN") :])
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "one.pem"))
    ctx = LazyTrustContext()
    ctx.load_trust()
    ctx.load_trust()  # idempotent
    assert ctx.cert_store_stats()["x509_ca"] == 1
    monkeypatch.delenv("SSL_CERT_FILE")
    ctx = LazyTrustContext()
    ctx.load_trust()
    assert ctx.cert_store_stats()["x509_ca"] > 50  # certifi's bundle


@pytest.mark.registry
def test_a_plain_http_pull_never_loads_the_ca_certificates(
    docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path
) -> None:
    seen: list[dict[str, int]] = []

    async def go(proxy: ProxyThread) -> None:
        async with PullSession(ModelStore(tmp_path / "m"), insecure=True) as session:
            await session.pull(ModelName.parse(f"{proxy.url.removeprefix('http://')}/{REPO}"))
            seen.append(session.client.tls.cert_store_stats())

    with ProxyThread(docker_registry.url) as proxy:
        anyio.run(go, proxy)
    assert seen == [{"x509": 0, "crl": 0, "x509_ca": 0}]


def test_a_cancellation_before_the_worker_thread_starts_neither_runs_nor_waits() -> None:
    """Regression: a worker cancelled at anyio's entry checkpoint waited forever for a thread that never ran."""
    ran: list[str] = []

    async def go() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await run_in_thread(lambda: ran.append("ran"), lambda: ran.append("aborted"), anyio.CapacityLimiter(4))

    t = threading.Thread(target=anyio.run, args=(go,), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the cancelled _in_thread never returned"
    time.sleep(0.1)
    assert ran == []


@pytest.mark.registry
@pytest.mark.parametrize("direct", ["1", "0"])
def test_progress_is_reported_during_the_download_on_both_paths(
    docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: str
) -> None:
    """The hash follower reports progress for both body paths, at most once per progress_interval."""
    from ollama_seed.core.progress import LayerProgress

    monkeypatch.setenv("OLLAMA_SEED_DIRECT", direct)
    events: list[tuple[float, int]] = []

    def progress(e: object) -> None:
        if isinstance(e, LayerProgress) and e.digest == model.model_layer.digest and not e.done:
            events.append((time.monotonic(), e.completed))

    with ProxyThread(docker_registry.url, per_conn_bps=1e6) as proxy:  # 16 MB/s in all: 24 MiB in ~1.6 s
        _pull(tmp_path / "models", proxy, progress=progress)
    middle = [c for _, c in events if 0 < c < model.model_layer.size]
    assert len(middle) >= 5  # every ~0.1 s of a ~1.6 s download
    assert middle == sorted(middle)
    gaps = [b - a for (a, ca), (b, cb) in itertools.pairwise(events) if ca > 0 and cb < model.model_layer.size]
    assert min(gaps) >= 0.09  # progress_interval 0.1 s, not once per chunk or per connection


def _cert_failure() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError("timed out"), r"^stalled: no data for 30 s from https://cdn\.example/blob$"),
        (
            ConnectionRefusedError(111, "Connection refused"),
            r"^cannot connect to https://cdn\.example/blob: .*Connection refused; check the address, network and HTTPS_PROXY$",
        ),
        (socket.gaierror(-2, "Name or service not known"), r"^cannot connect to https://cdn\.example/blob: "),
        (
            _cert_failure(),
            (
                r"^TLS certificate of https://cdn\.example/blob could not be verified \(self-signed certificate\); "
                r"set SSL_CERT_FILE"
            ),
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            r"^network error from https://cdn\.example/blob: ConnectionResetError: ",
        ),
    ],
)
def test_direct_failures_read_as_on_the_httpx_path_without_the_query(exc: BaseException, expected: str) -> None:
    from ollama_seed.wire.direct import describe

    text = describe(exc, "https://cdn.example/blob?X-Amz-Signature=secret", 30.0)
    assert re.search(expected, text), text
    assert "secret" not in text


@pytest.mark.registry
def test_a_direct_pull_never_imports_httpx_and_one_on_httpx_does(
    docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path
) -> None:
    """httpx and httpcore cost ~0.15 CPU-s to import: a pull over direct links runs without them
    (manifest and blobs over http.client) and writes the same store as a pull through httpx."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, ollama_seed; ollama_seed.pull(sys.argv[1], models_dir=sys.argv[2], insecure=True); "
        "print(sorted(m for m in ('httpx', 'httpcore', 'h11') if m in sys.modules))"
    )
    name = f"{docker_registry.host}/{REPO}"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "OLLAMA_SEED_DIRECT"}
    runs = {}
    for label, extra in (("direct", {}), ("httpx", {"OLLAMA_SEED_DIRECT": "0"})):
        runs[label] = subprocess.run(
            [sys.executable, "-c", code, name, str(tmp_path / label)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert runs[label].returncode == 0, runs[label].stderr[-2000:]
    assert runs["direct"].stdout.strip() == "[]"
    assert runs["httpx"].stdout.strip() == "['h11', 'httpcore', 'httpx']"
    assert tree(tmp_path / "direct") == tree(tmp_path / "httpx")


@pytest.mark.registry
def test_a_capped_link_keeps_every_connection_and_an_uncapped_one_lets_the_probes_go(
    docker_registry: DockerRegistry,
    model: BuiltModel,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """wire.ramp: beyond the first 4, a connection fetches one piece and leaves if it came fast
    (loopback) or stays if the link caps each connection (here 4 MB/s, as a CDN might).

    "Fast" is 1 MB/s here, not the product's 32 MB/s: through this in-process proxy, on a CI
    machine running two suites at once, an uncapped connection is not always 32 MB/s fast."""
    from ollama_seed.wire import ramp

    caplog.set_level(logging.DEBUG, logger="ollama_seed.transfer")
    monkeypatch.setattr(ramp, "FAST_CONNECTION", 1e6)
    with ProxyThread(docker_registry.url) as fast:
        _pull(tmp_path / "fast", fast, connections=8)
    left = [r for r in caplog.records if "left after its first piece" in r.getMessage()]
    assert left and all("MB/s" in r.getMessage() or "CPU" in r.getMessage() for r in left)
    caplog.clear()
    monkeypatch.setattr(ramp, "FAST_CONNECTION", 16e6)  # 4x the cap: a capped connection is never this fast
    with ProxyThread(docker_registry.url, per_conn_bps=4e6) as capped:
        _pull(tmp_path / "capped", capped, connections=8)
    assert not [r for r in caplog.records if "left after its first piece" in r.getMessage()]
    assert tree(tmp_path / "fast" / "blobs") == tree(tmp_path / "capped" / "blobs")  # (manifests: per proxy host)
