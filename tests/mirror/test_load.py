"""32 clients at once against a mirror with logins, some of them slow readers and some hanging up
mid-body: every complete body is right, /metrics counts exactly what was sent, and neither file
descriptors nor memory grow from one round to the next."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import MIB
from tests.support.mirror import serving, write_htpasswd
from tests.support.model import BuiltModel, make_model

CLIENTS = 32
AUTH = "Basic " + base64.b64encode(b"load:load-test-password").decode()


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Client(threading.Thread):
    """One client: two requests on one keep-alive connection (manifest, then the blob)."""

    def __init__(self, port: int, model: BuiltModel, kind: str) -> None:
        super().__init__(daemon=True)
        self.port, self.model, self.kind = port, model, kind
        self.received = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("GET", "/v2/library/load/manifests/latest", headers={"Authorization": AUTH})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200 and body == self.model.manifest
            self.received += len(body)
            blob = self.model.model_layer
            conn.request("GET", f"/v2/library/load/blobs/{blob.digest}", headers={"Authorization": AUTH})
            resp = conn.getresponse()
            assert resp.status == 200
            h = hashlib.sha256()
            while chunk := resp.read(256 * 1024):
                h.update(chunk)
                self.received += len(chunk)
                if self.kind == "slow":
                    time.sleep(0.005)  # a slow reader: the server must wait for it, not buffer for it
                elif self.kind == "hangup" and self.received > MIB:
                    return  # closes the socket mid-body
            assert "sha256:" + h.hexdigest() == blob.digest
        finally:
            conn.close()


def counters(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def one_round(port: int, model: BuiltModel, *, hangups: bool) -> list[Client]:
    kinds = ["slow"] * 6 + (["hangup"] * 4 if hangups else [])
    clients = [Client(port, model, kinds[i] if i < len(kinds) else "fast") for i in range(CLIENTS)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(300)
        assert not c.is_alive(), "a client did not finish"
        assert c.error is None, repr(c.error)
    return clients


def settle(baseline: int, deadline: float) -> int:
    """Wait for the server to close the sockets of the clients that left (it does so as it reads their EOF)."""
    while True:
        now = fds()
        if now <= baseline or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


@pytest.mark.slow
def test_32_clients_no_leaks(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", size_bytes=6 * MIB + 3, seed=61)
    root = tmp_path / "served"
    model.expected_store(root, "registry.ollama.ai", "library/load", "latest")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"load": "load-test-password"})
    with serving(root, htpasswd=htpasswd) as info:
        one_round(info.port, model, hangups=True)  # warm up: threads, buffers, the verified-login cache
        baseline_fds = settle(0, time.monotonic() + 5)
        baseline_rss = rss()
        before = counters(info.port)
        for _ in range(2):
            one_round(info.port, model, hangups=True)
        middle = counters(info.port)
        exact = one_round(info.port, model, hangups=False)
        after = counters(info.port)
        left = settle(baseline_fds, time.monotonic() + 60)
        grown = rss() - baseline_rss
    assert left <= baseline_fds, f"{left - baseline_fds} file descriptors more than after the first round"
    assert grown < 64 * MIB, f"memory grew by {grown / MIB:.0f} MiB over three rounds of {CLIENTS} clients"
    blob_ok = ("ollama_seed_mirror_requests_total", (("method", "GET"), ("route", "blob"), ("status", "200")))
    assert after[blob_ok] - before[blob_ok] == 3 * CLIENTS
    manifest_ok = ("ollama_seed_mirror_requests_total", (("method", "GET"), ("route", "manifest"), ("status", "200")))
    assert after[manifest_ok] - before[manifest_ok] == 3 * CLIENTS
    sent = ("ollama_seed_mirror_response_bytes_total", (("route", "blob"),))
    assert (
        after[sent] - middle[sent]
        == sum(c.received - len(model.manifest) for c in exact)
        == CLIENTS * model.model_layer.size
    )  # the round without hang-ups: exactly what the clients read
    manifest_bytes = ("ollama_seed_mirror_response_bytes_total", (("route", "manifest"),))
    assert after[manifest_bytes] - middle[manifest_bytes] == CLIENTS * len(model.manifest)
    assert after[("ollama_seed_mirror_requests_in_flight", ())] == 1  # the /metrics request itself
