"""The downloaders under measurement: ollama-seed (as a subprocess), aria2c and curl.

Each writes to the same work directory (the same disk). Timing covers the process from start to
exit; checking the result (sizes, sha256) happens afterwards and is not timed.

* ``ollama-seed pull --insecure --models-dir DIR --progress none HOST/library/bench:latest``: the whole
  model (manifest and every blob), each blob verified (sha256) and fsynced before it is installed.
* ``aria2c -x16 -s16``: the model blob, 16 connections, neither verified nor fsynced.
* ``dd if=/dev/zero bs=1M conv=fsync``: as many bytes as the model blob, written and fsynced into
  the same directory: what the disk takes to make those bytes durable, with no network at all.
  Together with curl it gives the *durable-download limit* of the machine, max(curl, dd).
* ``curl``: the model blob (or its first ``nbytes`` when the link is capped, to keep a run short) on
  one connection, written to a file, neither verified nor fsynced. On a link that cuts connections it
  is started again for the missing range until the file is whole (curl has no such retry of its own).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .limits import sha256_file, sha256_prefix
from .procs import ProcResult, clean_env, run_measured

MAX_CURL_ATTEMPTS = 400


@dataclass
class Target:
    """What to fetch: the registry (or proxy) base URL and the model in it."""

    base_url: str
    repo: str
    tag: str
    blob_digest: str
    blob_size: int
    total_size: int
    blob_sizes: dict[str, int]

    @property
    def host(self) -> str:
        return self.base_url.split("://", 1)[1]

    @property
    def blob_url(self) -> str:
        return f"{self.base_url}/v2/{self.repo}/blobs/{self.blob_digest}"

    @property
    def model_name(self) -> str:
        return f"{self.host}/{self.repo}:{self.tag}"


@dataclass
class Outcome:
    """One tool run: the process numbers plus what it delivered."""

    tool: str
    proc: ProcResult
    nbytes: int
    verified: bool | None = None
    attempts: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.proc.ok and self.verified is not False

    def as_dict(self) -> dict[str, Any]:
        p = self.proc
        return {
            "tool": self.tool,
            "ok": self.ok,
            "returncode": p.returncode,
            "killed": p.killed,
            "seconds": round(p.seconds, 4),
            "bytes": self.nbytes,
            "MBps": round(self.nbytes / p.seconds / 1e6, 2) if p.seconds > 0 and p.ok else None,
            "peak_rss_mb": round(p.peak_rss_bytes / 1e6, 1),
            "cpu_s": round(p.cpu_seconds, 3),
            "user_s": round(p.user_seconds, 3),
            "sys_s": round(p.sys_seconds, 3),
            "cpu_s_per_GiB": round(p.cpu_seconds / self.nbytes * 2**30, 3) if self.nbytes and p.ok else None,
            "verified": self.verified,
            "attempts": self.attempts,
            "notes": self.notes,
            "stderr_tail": p.stderr_tail[-600:] if not p.ok else "",
        }


def ollama_seed(
    target: Target,
    models: Path,
    home: Path,
    *,
    verify: bool,
    source: Path | None,
    kill_when: Callable[[], bool] | None = None,
    timeout: float = 900.0,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    argv = [
        sys.executable,
        "-m",
        "ollama_seed",
        "pull",
        "--insecure",
        "--models-dir",
        str(models),
        "--progress",
        "none",
        target.model_name,
    ]
    proc = run_measured(argv, env=clean_env(home), kill_when=kill_when, timeout=timeout, preexec=preexec)
    out = Outcome("ollama-seed", proc, target.total_size)
    if proc.ok:
        out.verified = _check_store(target, models, verify=verify, source=source)
    return out


def _check_store(target: Target, models: Path, *, verify: bool, source: Path | None) -> bool:
    ns, name = target.repo.split("/", 1)
    if not (models / "manifests" / target.host / ns / name / target.tag).is_file():
        return False
    for digest, size in target.blob_sizes.items():
        path = models / "blobs" / digest.replace(":", "-")
        if not path.is_file() or path.stat().st_size != size:
            return False
    if verify:
        return sha256_file(models / "blobs" / target.blob_digest.replace(":", "-"))[1] == target.blob_digest[7:]
    return True


def aria2c(
    target: Target,
    out_dir: Path,
    home: Path,
    *,
    verify: bool,
    resume: bool = False,
    kill_when: Callable[[], bool] | None = None,
    timeout: float = 900.0,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "aria2c",
        "-x16",
        "-s16",
        "-k1M",
        "--dir",
        str(out_dir),
        "--out",
        "blob",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--max-tries=0",
        "--retry-wait=0",
        "--console-log-level=warn",
        "--summary-interval=0",
        "--download-result=hide",
        "--check-certificate=false",
    ]
    if resume:
        argv.append("--continue=true")
    proc = run_measured(
        [*argv, target.blob_url], env=clean_env(home), kill_when=kill_when, timeout=timeout, preexec=preexec
    )
    out = Outcome("aria2c", proc, target.blob_size)
    if proc.ok:
        path = out_dir / "blob"
        out.verified = path.is_file() and path.stat().st_size == target.blob_size
        if out.verified and verify:
            out.verified = sha256_file(path)[1] == target.blob_digest[7:]
    return out


def curl(
    target: Target,
    out_file: Path,
    home: Path,
    *,
    nbytes: int | None,
    verify: bool,
    source: Path | None,
    resume: bool = False,
    kill_when: Callable[[], bool] | None = None,
    timeout: float = 900.0,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    """curl to a file; ``nbytes`` fetches only that prefix (a Range request); ``resume`` appends."""
    want = target.blob_size if nbytes is None or nbytes >= target.blob_size else nbytes
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        out_file.unlink(missing_ok=True)
    env = clean_env(home)
    total: ProcResult | None = None
    attempts = 0
    while True:
        have = out_file.stat().st_size if out_file.exists() else 0
        argv = ["curl", "-sS", "--fail", "--no-progress-meter", target.blob_url]
        if have or want < target.blob_size:
            argv[4:4] = ["-r", f"{have}-{want - 1}"]
        with open(out_file, "ab") as sink:
            proc = run_measured(argv, env=env, stdout=sink, timeout=timeout, kill_when=kill_when, preexec=preexec)
        attempts += 1
        total = proc if total is None else _add(total, proc)
        grew = out_file.stat().st_size > have
        if proc.ok or proc.killed or not grew or proc.returncode not in (18, 56) or attempts >= MAX_CURL_ATTEMPTS:
            break
    final = out_file.stat().st_size if out_file.exists() else 0
    if total.returncode in (18, 56) and final == want and not total.killed:
        total.returncode = 0
    out = Outcome("curl", total, want, attempts=attempts)
    if want < target.blob_size:
        out.notes.append(f"first {want / 2**20:g} MiB of the blob")
    if attempts > 1:
        out.notes.append(f"{attempts} curl runs (resumed by range after each cut)")
    if total.ok:
        out.verified = final == want
        if out.verified and verify:
            expect = (
                target.blob_digest[7:] if want == target.blob_size or source is None else (sha256_prefix(source, want))
            )
            out.verified = sha256_file(out_file)[1] == expect
    return out


def dd_fsync(
    nbytes: int, out_file: Path, home: Path, *, preexec: Callable[[], None] | None = None, timeout: float = 900.0
) -> Outcome:
    """``dd if=/dev/zero of=FILE bs=1M count=N conv=fsync``: *nbytes* (rounded up to MiB) made durable."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    count = max(1, -(-nbytes // 2**20))
    argv = ["dd", "if=/dev/zero", f"of={out_file}", "bs=1M", f"count={count}", "conv=fsync", "status=none"]
    proc = run_measured(argv, env=clean_env(home), timeout=timeout, preexec=preexec)
    out = Outcome("dd", proc, count * 2**20)
    out.verified = proc.ok and out_file.stat().st_size == count * 2**20
    out_file.unlink(missing_ok=True)
    return out


def _add(a: ProcResult, b: ProcResult) -> ProcResult:
    return ProcResult(
        a.argv,
        b.returncode,
        a.seconds + b.seconds,
        max(a.peak_rss_bytes, b.peak_rss_bytes),
        a.cpu_seconds + b.cpu_seconds,
        a.killed or b.killed,
        b.stderr_tail,
        a.user_seconds + b.user_seconds,
        a.sys_seconds + b.sys_seconds,
    )


def wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
