"""A bounded slow-client soak: hundreds of idle, slow-header and stalled connections against a small
limit for about 12 s, while /healthz is asked every 0.2 s and real pulls run. Loopback only; every
loop is bounded in count and time and stops by itself."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from pathlib import Path

import pytest

import ollama_seed
from tests.mirror.security.conftest import get, status
from tests.support.invariants import tree
from tests.support.mirror import serving
from tests.support.model import BuiltModel

pytestmark = pytest.mark.interop  # sockets and threads only: the os-module emulation adds nothing here
ATTACK_SECONDS = 12.0


class Attacker(threading.Thread):
    """Keeps *count* connections of one kind open against the port until *stop*, reopening closed ones."""

    def __init__(self, port: int, kind: str, count: int, blob: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.kind, self.count, self.blob, self.stop = port, kind, count, blob, stop
        self.opened = 0

    def connect(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return None
        self.opened += 1
        with contextlib.suppress(OSError):
            if self.kind == "slow-header":
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
            elif self.kind == "stalled":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(f"GET /v2/library/small/blobs/{self.blob} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return s

    def run(self) -> None:
        held: list[socket.socket] = []
        deadline = time.monotonic() + ATTACK_SECONDS + 10
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                alive = []
                for s in held:  # drop the ones the server closed
                    s.setblocking(False)
                    try:
                        closed = s.recv(1, socket.MSG_PEEK) == b""
                    except BlockingIOError:
                        closed = False
                    except OSError:
                        closed = True
                    if closed:
                        s.close()
                    else:
                        alive.append(s)
                held = alive
                while len(held) < self.count and not self.stop.is_set():
                    new = self.connect()
                    if new is None:
                        break
                    held.append(new)
                if self.kind == "slow-header":
                    for s in held:
                        with contextlib.suppress(OSError):
                            s.send(b"X")  # a byte at a time, never the end of the head
                self.stop.wait(0.3)
        finally:
            for s in held:
                s.close()


def test_the_server_stays_up_under_slow_clients(store: Path, small: BuiltModel, tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    stop = threading.Event()
    health: list[tuple[float, int]] = []
    pulls: list[str] = []
    try:
        with serving(store, limit_concurrency=16, header_timeout=2.0, write_timeout=3.0, keep_alive=2.0) as info:
            attackers = [
                Attacker(info.port, "idle", 200, small.model_layer.digest, stop),
                Attacker(info.port, "slow-header", 150, small.model_layer.digest, stop),
                Attacker(info.port, "stalled", 40, small.model_layer.digest, stop),
            ]
            for a in attackers:
                a.start()
            time.sleep(1.0)  # let them fill every slot
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < ATTACK_SECONDS:
                t0 = time.monotonic()
                health.append((time.monotonic() - t0, status(get(info.port, "/healthz"))))
                health[-1] = (time.monotonic() - t0, health[-1][1])
                if n < 3 and time.monotonic() - started > 2 + 3 * n:
                    dest = tmp_path / f"client-{n}"
                    ollama_seed.pull(f"127.0.0.1:{info.port}/library/small:latest", models_dir=dest, insecure=True)
                    pulls.append(str(dest))
                    n += 1
                time.sleep(0.2)
            opened = {a.kind: a.opened for a in attackers}
    finally:
        stop.set()
    assert all(code == 200 for _, code in health), [c for _, c in health if c != 200][:5]
    assert max(seconds for seconds, _ in health) < 3.0, max(health)
    assert len(pulls) == 3
    want = tree(store)
    for pulled in pulls:
        got = tree(Path(pulled))
        assert {k: v for k, v in got.items() if k.startswith(("blobs/", "manifests/"))} == {
            k.replace("registry.ollama.ai", f"127.0.0.1:{info.port}"): v
            for k, v in want.items()
            if k.startswith(("blobs/", "manifests/"))
        }
    assert opened["idle"] >= 200 and opened["slow-header"] >= 150 and opened["stalled"] >= 40, opened
