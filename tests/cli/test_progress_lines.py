"""Plain progress lines as ``docker logs`` shows them, from a real pull over a throttled link (a CLI subprocess).

The link is a shaping proxy at about 1 MB/s in front of a real registry; one blob body is cut
once, so the log must show a retry line; a pull killed part-way and run again must show a
resume line. Timing is checked only as bounds that a busy machine cannot break: no more lines
than the interval allows, and each line's ETA consistent with its own bytes and rate.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.cli import REPO_ROOT, cli_env
from tests.support.fake_ollama import FakeOllama
from tests.support.invariants import assert_store_ok
from tests.support.model import BuiltModel, make_model
from tests.support.proxy import ProxyThread
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

MB = 1_000_000
REPO = "library/lines"
LINE = re.compile(
    r"^(?P<model>\S+): pulling (?P<short>[0-9a-f]{12}) +(?P<pct>\d+)% (?P<done>[\d.]+ [KMG]?B) / "
    r"(?P<total>[\d.]+ [KMG]?B), (?P<rate>[\d.]+ [KMG]?B)/s, (?:ETA (?P<eta>.+)|no data, waiting)$"
)
UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def size(text: str) -> float:
    number, unit = text.split()
    return float(number) * UNITS[unit]


def seconds(text: str) -> float:
    total = 0.0
    for value, unit in re.findall(r"([\d.]+) (h|min|s)", text):
        total += float(value) * {"h": 3600, "min": 60, "s": 1}[unit]
    return total


@pytest.fixture(scope="module")
def model(docker_registry: DockerRegistry, tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    m = make_model(tmp_path_factory.mktemp("lines-model"), size_bytes=4 * MB + 333, seed=77)
    seed_registry(docker_registry.url, REPO, "latest", m)
    return m


class Run:
    """The CLI as a subprocess, its stderr lines collected with the time each arrived."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ollama_seed", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=REPO_ROOT,
        )
        self.lines: list[str] = []
        self.got_line = threading.Event()
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self.got_line.set()

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            self.got_line.wait(0.2)
            self.got_line.clear()
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 120) -> tuple[int, float]:
        code = self.proc.wait(timeout)
        elapsed = time.monotonic() - self.started
        self._reader.join(10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, elapsed


@pytest.mark.registry
def test_throttled_pull_logs_interval_eta_retry_and_summary(
    docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path
) -> None:
    interval = 1.0
    with ProxyThread(docker_registry.url, total_bps=1 * MB, drop_after_bytes=400_000, max_faults=1) as proxy:
        host = proxy.url.removeprefix("http://")
        run = Run(
            "pull",
            "--insecure",
            f"{host}/{REPO}",
            "--models-dir",
            str(tmp_path / "m"),
            "--progress",
            "plain",
            "--progress-interval",
            str(interval),
            "--connections",
            "2",
        )
        code, elapsed = run.finish()
    text = "\n".join(run.lines)
    assert code == 0, text
    big = model.model_layer.hex[:12]
    progress = [m for m in (LINE.match(line) for line in run.lines) if m and m["short"] == big]
    assert len(progress) >= 2, text  # about 4 s at 1 MB/s: a line a second
    assert len(progress) <= elapsed / interval + 1, text  # never more often than the interval
    for m in progress:
        assert 0 < int(m["pct"]) < 100 and m["total"] == "4.0 MB"
        if m["eta"] is not None:  # the ETA is the rest at the line's own rate (sizes are rounded to 0.1 MB)
            left, rate = size(m["total"]) - size(m["done"]), size(m["rate"])
            assert rate > 0 and abs(seconds(m["eta"]) - left / rate) <= 0.06 * MB / rate + 1, m.string
            assert rate < 2.5 * MB, m.string  # a rate over the last interval, not since some odd origin
    assert re.search(rf"pulling {big}: connection dropped, retrying in [\d.]+ (s|min)", text), text
    assert re.search(rf"pulling {big} 100% 4\.0 MB in [\d.]+ s \([\d.]+ [KM]B/s\)", text), text
    assert re.search(
        rf"^{re.escape(host)}/{REPO}:latest: [0-9a-f]{{12}}, 5 blobs, 4\.0 MB downloaded, 0 B reused, "
        rf"from http://{re.escape(host)}, ",
        text,
        re.M,
    ), text  # the scheme actually used
    assert re.search(
        r"^pulled 1 model\(s\): 4\.0 MB downloaded, 0 B reused, in [\d.]+ s \([\d.]+ [KM]B/s\)$", text, re.M
    ), text
    assert FakeOllama(tmp_path / "m").find(f"{host}/{REPO}") is not None
    assert_store_ok(tmp_path / "m")


@pytest.mark.registry
def test_a_resumed_pull_says_where_it_resumes(
    docker_registry: DockerRegistry, model: BuiltModel, tmp_path: Path
) -> None:
    models = tmp_path / "m"
    big = model.model_layer.hex[:12]
    with ProxyThread(docker_registry.url, total_bps=0.5 * MB) as proxy:
        name = f"{proxy.url.removeprefix('http://')}/{REPO}"
        args = (
            "pull",
            "--insecure",
            name,
            "--models-dir",
            str(models),
            "--progress",
            "plain",
            "--progress-interval",
            "0.5",
            "--connections",
            "1",
        )
        first = Run(*args)
        first.wait_for(rf"pulling {big} +\d+% [1-9]")  # some bytes are on disk
        first.proc.send_signal(signal.SIGKILL)
        first.finish()
        second = Run(*args)
        code, _ = second.finish()
    text = "\n".join(second.lines)
    assert code == 0, text
    m = re.search(rf"pulling {big}: resuming at ([\d.]+ [KM]?B) of 4\.0 MB", text)
    assert m is not None and size(m[1]) > 0, text
    assert re.search(r"pulled 1 model\(s\): [\d.]+ [KM]?B downloaded", text), text
    assert FakeOllama(models).find(name) is not None
