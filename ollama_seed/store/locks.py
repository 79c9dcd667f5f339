"""Which staging files belong to a live download (their blob's lock is held by a process, or its process runs)."""

from __future__ import annotations

import os

import filelock

from ..core.digest import Digest
from . import oscalls
from .native import windows_pid_alive
from .oscalls import Platform
from .store import ModelStore

__all__ = ["pid_alive", "staging_in_use"]


def pid_alive(pid: int, host: Platform | None = None) -> bool:
    """Whether process *pid* runs (``os.kill(pid, 0)`` would kill it on Windows)."""
    plat = host or oscalls.host
    if plat.kind == "windows" and not plat.emulated:
        return windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _owner_alive(name: str) -> bool:
    """True for ``<stem>.<pid>-<tag>`` (unique staging: ``sha256-<hex>.data.<pid>-<tag>``, or
    ``ingest-file.<pid>-<tag>`` of a local file being copied in) whose process still runs."""
    suffix = name.rsplit(".", 1)[-1]
    pid_text, sep, _tag = suffix.partition("-")
    if not sep or not pid_text.isascii() or not pid_text.isdigit():
        return False
    return pid_alive(int(pid_text))


def staging_in_use(store: ModelStore) -> set[str]:
    """Stems (``sha256-<hex>``) of staging files whose lock another process holds right now, and the
    names of other staging files (local files being copied in) whose process still runs."""
    busy: set[str] = set()
    staging = store.layout.staging_dir
    if not staging.is_dir():
        return busy
    for path in staging.iterdir():
        stem = path.name.split(".", 1)[0]
        digest = Digest.from_filename(stem)
        if _owner_alive(path.name):  # a process-unique staging file (no locks) of a live process
            busy.add(stem if digest is not None else path.name)  # a blob's stem covers its .state too
            continue
        if digest is None or stem in busy:
            continue
        lock = filelock.FileLock(str(store.layout.lock(digest)), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            busy.add(stem)
        except OSError:
            busy.add(stem)
        else:
            lock.release()
    return busy
