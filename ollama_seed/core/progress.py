"""Progress events. The library emits them through a callback; only the CLI renders them.

Each event converts to the line Ollama's ``/api/pull`` stream would carry
(:meth:`to_ollama`), so ``--json`` output can be read by tools written for Ollama.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["LayerProgress", "ProgressCallback", "ProgressEvent", "Status", "human_size"]


def human_size(n: float) -> str:
    """``532 B``, ``1.5 KB``, ``4.1 GB``: decimal units, as Ollama shows sizes."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


@dataclass(frozen=True, slots=True)
class Status:
    """A phase of a model's pull: ``pulling manifest``, ``verifying sha256 digest``,
    ``writing manifest``, ``success``, or a wait (``waiting for <digest> (another process)``)."""

    model: str
    status: str

    def to_ollama(self) -> dict[str, Any]:
        return {"status": self.status}


@dataclass(frozen=True, slots=True)
class LayerProgress:
    """Bytes of one layer on disk. *cached* is true when the blob was already in the store."""

    model: str
    digest: str
    media_type: str
    total: int
    completed: int
    cached: bool = False
    done: bool = False

    def to_ollama(self) -> dict[str, Any]:
        if not self.digest.startswith("sha256:"):  # a local file being copied in (create): ``file:<name>``
            line: dict[str, Any] = {"status": f"copying {self.digest}"}
        else:
            line = {"status": f"pulling {self.digest[7:19]}", "digest": self.digest}
        if self.total:
            line["total"] = self.total
        if self.completed:
            line["completed"] = self.completed
        return line


ProgressEvent = Status | LayerProgress
ProgressCallback = Callable[[ProgressEvent], None]
