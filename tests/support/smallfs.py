"""A size-limited file system for full-disk tests: a tmpfs mounted under the test's tmp_path.

Only root can mount; :func:`small_fs` skips the test with the reason when it cannot.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "remount", "small_fs"]


@contextlib.contextmanager
def small_fs(where: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of *size_bytes* at *where* (created); unmount afterwards."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("full-disk tests mount a size-limited tmpfs, which needs root")
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (mount said: {proc.stderr.strip() or proc.returncode})")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount(where: Path, size_bytes: int) -> None:
    """Grow (or shrink) the tmpfs at *where* in place; its files stay."""
    subprocess.run(["mount", "-o", f"remount,size={size_bytes}", str(where)], check=True, capture_output=True)


def fill(path: Path, *, leave: int = 0) -> int:
    """Write zeros to *path* until the file system is full (less *leave* bytes); the bytes written."""
    written = 0
    block = b"\0" * (64 * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
            want = min(len(block), free - leave)
            if want <= 0:
                break
            try:
                written += os.write(fd, block[:want])
            except OSError:
                break
    finally:
        os.close(fd)
    return written
