"""The limits no downloader on this machine passes: sha256 throughput and durable disk writes.

* sha256 in memory: ``hashlib.sha256`` over 1 MiB buffers (what a streaming hasher pays).
* sha256 from a file: reading a file back with ``readinto`` and hashing it (what verifying after the
  download pays). The file is the model blob in the registry's storage, so usually in the page cache.
* disk write with fsync: ``dd if=/dev/zero of=<work dir> bs=1M count=N conv=fsync``, the same disk the
  downloads write to.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

MIB = 1 << 20


def _hash_in_memory(nbytes: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process) of hashlib.sha256 over *nbytes* in 1 MiB updates."""
    buf = os.urandom(MIB)
    h = hashlib.sha256()
    left = nbytes
    t0, c0 = time.perf_counter(), time.process_time()
    while left > 0:
        n = min(left, MIB)
        h.update(buf if n == MIB else buf[:n])
        left -= n
    return time.perf_counter() - t0, time.process_time() - c0


def sha256_memory(nbytes: int) -> float:
    """MB/s (1e6 bytes/s) of hashlib.sha256 over *nbytes* in 1 MiB updates."""
    return nbytes / _hash_in_memory(nbytes)[0] / 1e6


def sha256_cpu_per_gib(nbytes: int) -> float:
    """CPU seconds (user + system) that hashlib.sha256 spends per GiB, over *nbytes* in 1 MiB
    updates: the hashing part of the "curl + hashlib" CPU reference."""
    return _hash_in_memory(nbytes)[1] / nbytes * (1 << 30)


def sha256_file(path: Path) -> tuple[float, str]:
    """MB/s reading *path* back (1 MiB readinto) and hashing it, and the hex digest."""
    h = hashlib.sha256()
    buf = bytearray(MIB)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            total += n
    return total / (time.perf_counter() - t0) / 1e6, h.hexdigest()


def sha256_prefix(path: Path, nbytes: int) -> str:
    """Hex sha256 of the first *nbytes* of *path*."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = nbytes
        while left > 0 and (chunk := f.read(min(4 * MIB, left))):
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def disk_fsync(directory: Path, nbytes: int) -> float:
    """MB/s of ``dd ... conv=fsync`` writing *nbytes* (rounded up to MiB) into *directory*."""
    target = directory / "pullbench-dd.bin"
    count = max(1, -(-nbytes // MIB))
    try:
        t0 = time.perf_counter()
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={count}", "conv=fsync"],
            check=True,
            capture_output=True,
        )
        return count * MIB / (time.perf_counter() - t0) / 1e6
    finally:
        target.unlink(missing_ok=True)
