"""Members read from files on disk (a models directory, an OCI layout directory), in plan order.

Each file is opened without following a symbolic link and must be a regular file (a FIFO or a
device is refused without being opened); its size when opened is the member's size, and a file that
shrinks while it is read is an error. Subclasses build ``plan`` and may word the two refusals for
their source. :func:`read_small` reads one small file (a layout's ``index.json``, a manifest) the
same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...core.errors import BundleError
from ...store import oscalls
from ...store.fsutil import open_regular
from ..format.names import MemberRef
from .base import Member

__all__ = ["FileMembers", "read_small"]


def read_small(path: Path, limit: int) -> bytes:
    """A small regular file (``oci-layout``, ``index.json``, a manifest), not through a link.

    Raises:
        BundleError: unreadable, not a regular file, or larger than *limit*.
    """
    try:
        fd = open_regular(path)
        if fd is None:
            raise BundleError(f"{path} is not a regular file (a FIFO, a device or a directory); refusing it")
        try:
            data = os.read(fd, limit + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise BundleError(f"{path} is larger than {limit} bytes")
    return data


class FileMembers:
    """The member-stream half of a directory source: ``next``, ``readinto``, ``skip``, ``close``."""

    plan: list[tuple[MemberRef, Path]]
    fd = -1
    left = 0

    def _not_regular(self, path: Path) -> BundleError:
        return BundleError(f"{path} is not a regular file")

    def _shrank(self) -> BundleError:
        return BundleError("a file shrank while it was read")

    def _open(self, path: Path) -> int:
        try:
            fd = open_regular(path)
        except OSError as exc:
            raise BundleError(f"cannot open {path} ({exc.strerror or exc}); symbolic links are refused") from None
        if fd is None:
            raise self._not_regular(path)
        return fd

    def next(self) -> Member | None:
        self.close()
        if not self.plan:
            return None
        ref, path = self.plan.pop(0)
        self.fd = self._open(path)
        self.left = os.fstat(self.fd).st_size
        return Member(ref, self.left)

    def readinto(self, view: memoryview) -> int:
        if self.left <= 0 or self.fd < 0:
            return 0
        n = oscalls.host.readinto(self.fd, view[: self.left] if len(view) > self.left else view)
        if not n:
            raise self._shrank()
        self.left -= n
        return n

    def skip(self) -> None:
        self.close()
        self.left = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
