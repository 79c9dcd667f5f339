"""The seam between what an import reads and the importer: a stream of validated members.

Every source (a tar stream, another models directory, an OCI layout directory) is a
:class:`MemberSource`: it yields :class:`Member` records in order, and the caller reads each
member's data (:meth:`~MemberSource.readinto`) or skips it before asking for the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..format.names import MemberRef

__all__ = ["Member", "MemberSource"]


@dataclass(frozen=True, slots=True)
class Member:
    """A validated member: what it is, and how many data bytes follow."""

    ref: MemberRef
    size: int
    mode: int = 0o644


class MemberSource(Protocol):
    """Anything that yields members and their data: a tar stream, a models directory, an OCI layout directory."""

    def next(self) -> Member | None:
        """The next member (the rest of the current one's data skipped first), None at the end."""
        ...

    def readinto(self, view: memoryview, /) -> int:
        """Data of the current member into *view*; 0 once it is all read."""
        ...

    def skip(self) -> None:
        """Discard the rest of the current member's data."""
        ...
