"""Processes under measurement: wall time, peak RSS and CPU seconds of one child, and the shaping proxy.

CPU seconds come from ``os.wait4`` on that one child (its own ``rusage``), so one measurement never
sees another's numbers, as it could with ``RUSAGE_CHILDREN``. Peak RSS is the child's ``VmHWM``,
polled every ``poll`` seconds (see :func:`peak_rss_of` for why not ``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcResult:
    """How one child process ran."""

    argv: list[str]
    returncode: int
    seconds: float
    peak_rss_bytes: int
    cpu_seconds: float
    killed: bool = False
    stderr_tail: str = ""
    user_seconds: float = 0.0
    sys_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.killed


def clean_env(home: Path) -> dict[str, str]:
    """The environment for tools under test: no proxies, no Ollama settings, HOME in the work dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith(("OLLAMA_", "SSL_CERT_", "CURL_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(HOME=str(home), NO_PROXY="127.0.0.1,localhost", PYTHONPATH=str(REPO))
    return env


def compile_package() -> None:
    """Byte-compile ollama_seed once, as ``pip install`` does, so no timed run pays for compiling it."""
    import compileall

    if not compileall.compile_dir(str(REPO / "ollama_seed"), quiet=1):
        raise RuntimeError("byte-compiling ollama_seed failed")


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path = REPO,
    timeout: float = 600.0,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    kill_when: Callable[[], bool] | None = None,
    poll: float = 0.01,
    preexec: Callable[[], None] | None = None,
) -> ProcResult:
    """Run *argv* to completion (or SIGKILL it once *kill_when* says so) and measure it.

    *preexec* runs in the child before it execs (e.g. :meth:`cgroup.CpuQuota.enter`), so the
    whole process, from its first instruction, is what gets measured under it.
    """
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=err, preexec_fn=preexec
        )
        killed, reaped, lock = threading.Event(), threading.Event(), threading.Lock()
        hwm = [0]

        def kill() -> None:
            with lock:  # never signal a PID that was already reaped (and maybe reused)
                if not reaped.is_set() and not killed.is_set():
                    killed.set()
                    os.kill(proc.pid, signal.SIGKILL)

        def watch() -> None:
            deadline = t0 + timeout
            while not reaped.wait(poll):
                hwm[0] = max(hwm[0], peak_rss_of(proc.pid))
                if time.monotonic() > deadline or (kill_when is not None and kill_when()):
                    kill()

        watcher = threading.Thread(target=watch, name="pullbench-watch", daemon=True)
        watcher.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            with lock:
                reaped.set()
            watcher.join()
        seconds = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    # A process that ended before the first poll: ru_maxrss, an upper bound (see peak_rss_of).
    peak = hwm[0] or usage.ru_maxrss * 1024
    return ProcResult(
        list(argv),
        proc.returncode,
        seconds,
        peak,
        usage.ru_utime + usage.ru_stime,
        killed.is_set(),
        tail,
        usage.ru_utime,
        usage.ru_stime,
    )


def peak_rss_of(pid: int) -> int:
    """VmHWM (peak resident set) of a running process in bytes; 0 if it is gone.

    Polled, not taken from ``wait4``: Linux carries the parent's high-water mark into a child's
    ``ru_maxrss`` across fork and exec, so the harness's own size would show up there.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc); 0.0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class ShapingOptions:
    """Link shaping for :class:`ProxyProcess` (Mbit/s = 1e6 bit/s; 0 = no cap)."""

    per_conn_mbps: float = 0.0
    total_mbps: float = 0.0
    latency_ms: float = 0.0
    drop_after_bytes: int | None = None

    def argv(self) -> list[str]:
        out = [
            "--per-conn-mbps",
            str(self.per_conn_mbps),
            "--total-mbps",
            str(self.total_mbps),
            "--latency-ms",
            str(self.latency_ms),
        ]
        if self.drop_after_bytes is not None:
            out += ["--drop-after-bytes", str(self.drop_after_bytes), "--drop-prob", "1.0", "--drop-style", "fin"]
        return out

    def describe(self) -> str:
        parts = []
        if self.per_conn_mbps:
            parts.append(f"{self.per_conn_mbps:g} Mbit/s per connection")
        if self.total_mbps:
            parts.append(f"{self.total_mbps:g} Mbit/s total")
        if self.latency_ms:
            parts.append(f"+{self.latency_ms:g} ms per request")
        if self.drop_after_bytes:
            parts.append(f"every response cut after {self.drop_after_bytes / 2**20:g} MiB")
        return ", ".join(parts) or "no shaping"


@dataclass
class ProxyProcess:
    """``python -m tests.support.proxy`` in its own process (so it does not share the client's GIL)."""

    upstream: str
    shaping: ShapingOptions
    listen: str = "127.0.0.1:0"
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    cpu_at_mark: float = 0.0

    def start(self) -> ProxyProcess:
        argv = [
            sys.executable,
            "-m",
            "tests.support.proxy",
            "--listen",
            self.listen,
            "--upstream",
            self.upstream,
            *self.shaping.argv(),
        ]
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the shaping proxy did not start (printed {line!r})")
        self.url = line
        return self

    def snapshot(self) -> dict[str, Any]:
        """The proxy's counters now (SIGUSR1: it prints them as one JSON line), without stopping it."""
        if self.proc is None or self.proc.stdout is None:
            return {}
        self.proc.send_signal(signal.SIGUSR1)
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        return json.loads(line) if line.startswith("{") else {}

    def mark(self) -> None:
        """Remember the proxy's CPU time now (the start of a measurement)."""
        self.cpu_at_mark = cpu_seconds_of(self.proc.pid) if self.proc else 0.0

    def cpu_since_mark(self) -> float:
        return (cpu_seconds_of(self.proc.pid) - self.cpu_at_mark) if self.proc else 0.0

    def stop(self) -> dict[str, Any]:
        """SIGTERM it (this PID only) and return its final stats."""
        if self.proc is None:
            return self.stats
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for line in reversed(out.decode(errors="replace").splitlines()):
            if line.startswith("{"):
                self.stats = json.loads(line)
                break
        return self.stats

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
