"""A small store to attack, and raw-socket helpers."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

import pytest

from tests.support.model import BuiltModel, make_model


@pytest.fixture
def small(tmp_path: Path) -> BuiltModel:
    return make_model(tmp_path / "m", size_bytes=8 * 1024 * 1024 + 5, seed=26)


@pytest.fixture
def store(tmp_path: Path, small: BuiltModel) -> Path:
    root = tmp_path / "store"
    small.expected_store(root, "registry.ollama.ai", "library/small", "latest")
    return root


def request(port: int, raw: bytes, *, timeout: float = 10.0) -> bytes:
    """Send *raw* on a new connection; everything the server answers until it closes (or *timeout*)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        got = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            got += chunk
        return bytes(got)


def get(port: int, path: str, *, headers: str = "") -> bytes:
    return request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic ``Authorization`` header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
