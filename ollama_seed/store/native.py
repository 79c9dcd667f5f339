"""Calls Python's ``os`` module does not offer: macOS and Windows system calls made through
``fcntl`` and ``ctypes``, and the Windows emulation's look at what this process holds open.

Only :mod:`.oscalls` (and :func:`.locks.pid_alive`) use these, imported by the call that needs one (the
cheap ``ensure()`` path needs none); each returns a plain answer and never raises for a system that
cannot do it (the platform layer then takes its fallback).
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

_F_PREALLOCATE = 42  # <sys/fcntl.h> on macOS; Python's fcntl module does not export it
_F_ALLOCATEALL = 0x4
_F_PEOFPOSMODE = 3


def mac_preallocate(fd: int, size: int) -> bool:
    """``F_PREALLOCATE`` (fstore_t: flags, posmode, offset, length, bytesalloc); False if refused."""
    try:
        import fcntl
        import struct

        st = os.fstat(fd)
        fstore = struct.pack("IiqqQ", _F_ALLOCATEALL, _F_PEOFPOSMODE, 0, max(0, size - st.st_blocks * 512), 0)
        fcntl.fcntl(fd, _F_PREALLOCATE, fstore)
    except (OSError, ImportError, ValueError):
        return False
    return True


def open_here(path: Path | str) -> bool:
    """Whether this process has *path* open or mapped (Linux /proc; the Windows emulation's check)."""
    try:
        target = os.path.realpath(path)
    except OSError:
        return False
    try:
        for name in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{name}") == target:
                    return True
            except OSError:
                continue
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any(line.rstrip("\n").endswith(" " + target) for line in maps)
    except OSError:
        return False


def windows_pid_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    if sys.platform != "win32":
        raise OSError(errno.ENOSYS, "the Windows process check runs on Windows only")
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return bool(ctypes.get_last_error() == 5)  # ERROR_ACCESS_DENIED: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return bool(code.value == 259)  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


NO_BOOT = bytes(16)


def boot_id(kind: str) -> bytes:
    """16 bytes naming this boot of the machine; all zeros when *kind*'s cannot be read."""
    try:
        if kind == "linux":
            with open("/proc/sys/kernel/random/boot_id", "rb") as f:
                return bytes.fromhex(f.read().decode("ascii").strip().replace("-", ""))[:16].ljust(16, b"\0")
        if kind == "macos":  # pragma: no cover - macOS only
            return _mac_boottime()
        if kind == "windows":  # pragma: no cover - Windows only
            return _windows_boottime()
    except (OSError, ValueError, AttributeError):
        pass
    return NO_BOOT


def _mac_boottime() -> bytes:  # pragma: no cover - macOS only
    """``sysctl kern.boottime`` (a ``struct timeval``): the same for the whole of one boot."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.dylib", use_errno=True)
    buf = ctypes.create_string_buffer(16)
    size = ctypes.c_size_t(16)
    if libc.sysctlbyname(b"kern.boottime", buf, ctypes.byref(size), None, ctypes.c_size_t(0)) != 0:
        return NO_BOOT
    return buf.raw[: size.value].ljust(16, b"\0")


def _windows_boottime() -> bytes:  # pragma: no cover - Windows only
    """When this boot began, from ``GetTickCount64`` (milliseconds since boot), to 10 seconds: a
    clock change can shift it, which only makes a resume keep less (never more)."""
    import ctypes
    import time

    ticks = ctypes.windll.kernel32.GetTickCount64  # type: ignore[attr-defined]
    ticks.restype = ctypes.c_ulonglong
    booted = int((time.time() - ticks() / 1000) // 10)
    return booted.to_bytes(16, "little", signed=True)
