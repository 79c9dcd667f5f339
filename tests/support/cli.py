"""Run the ``ollama-seed`` CLI as users do: a subprocess, optionally SIGKILLed part-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Outcome", "cli_env", "pull_then_kill", "run_cli", "start_cli"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment (already cleaned by conftest) plus *extra*; the repo importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONWARNINGS", None)
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python -m ollama_seed ARGS`` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "ollama_seed", *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def start_cli(*args: str, env: Mapping[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m ollama_seed ARGS``; stdout and stderr go to *log* (or nowhere)."""
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "ollama_seed", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cli_env(env),
            cwd=REPO_ROOT,
        )
    finally:
        if not isinstance(out, int):
            out.close()


@dataclass(frozen=True)
class Outcome:
    killed: bool  # True if SIGKILL landed before the process ended by itself
    returncode: int
    output: str


def pull_then_kill(*args: str, delay: float, env: Mapping[str, str] | None = None, timeout: float = 120.0) -> Outcome:
    """Start the CLI, SIGKILL it after *delay* seconds unless it ended first."""
    with tempfile.NamedTemporaryFile(prefix="seed-cli-", suffix=".log", delete=False) as tmp:
        log = Path(tmp.name)
    try:
        proc = start_cli(*args, env=env, log=log)
        try:
            rc = proc.wait(delay)
            killed = False
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout)
            killed = True
        return Outcome(killed, rc, log.read_text(errors="replace"))
    finally:
        log.unlink(missing_ok=True)
