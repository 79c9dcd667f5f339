"""Starting the kernel's writeback of a file range early (Linux ``sync_file_range``).

An fsync at the end of a large write waits for every dirty page still in memory. Asking the
kernel to start writing ranges out as they are finished (``SYNC_FILE_RANGE_WRITE``: queue the
I/O, do not wait for it, no cache flush) spreads that work over the download or copy, so the
final fsync waits for the last few MiB. Only Linux has the call; elsewhere, and under
``OLLAMA_SEED_EMULATE``, :func:`start_writeback` does nothing and returns False (the caller's
final fsync still makes everything durable: this only changes when the disk does the work).
"""

from __future__ import annotations

from collections.abc import Callable

from . import oscalls

__all__ = ["start_writeback"]

_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    if oscalls.host.kind != "linux" or oscalls.host.emulated:
        return None
    try:
        import ctypes

        # the process's own symbols include libc's; ctypes.util.find_library would run ldconfig (~40 ms)
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
        func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        func.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return func


_SYNC_FILE_RANGE = _load()


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Queue bytes ``[offset, offset + length)`` of *fd* for writing to disk; False where unsupported."""
    if _SYNC_FILE_RANGE is None or length <= 0:
        return False
    return _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0
