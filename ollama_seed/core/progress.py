"""Progress events. The library emits them through a callback; only the CLI renders them.

Each event converts to the line Ollama's ``/api/pull`` stream would carry
(:meth:`to_ollama`), so ``--json`` output can be read by tools written for Ollama.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LayerNote",
    "LayerProgress",
    "ProgressCallback",
    "ProgressEvent",
    "Status",
    "human_bytes",
    "human_duration",
    "human_size",
    "layer_label",
    "no_progress",
    "retry_reason",
]


def human_size(n: float) -> str:
    """``532 B``, ``1.5 KB``, ``4.1 GB``: decimal units, as Ollama shows sizes."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def human_bytes(n: int) -> str:
    """A size as ``ollama list`` shows it (Ollama's ``format.HumanBytes``): ``253 MB``, ``1.5 GB``,
    ``2 KB``: whole numbers from 10 up, else one decimal unless the value is whole."""
    for unit, scale in _DECIMAL_UNITS:
        if n >= scale:
            value = float(n) / scale  # as Go's float64(b) / unit
            return f"{int(value)} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


_DECIMAL_UNITS = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3))


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


@dataclass(frozen=True, slots=True)
class LayerNote:
    """A resume or a retry of one layer's download: worth a line of its own in a log.

    *kind* is ``resume`` (bytes from an earlier run were kept: *completed* of *total*) or
    ``retry`` (*reason* in a few words, tried again after *delay* seconds).
    """

    model: str
    digest: str
    kind: str
    total: int
    completed: int
    reason: str = ""
    delay: float = 0.0

    @property
    def message(self) -> str:
        if self.kind == "resume":
            return f"resuming at {human_size(self.completed)} of {human_size(self.total)}"
        return f"{self.reason}, retrying in {human_duration(self.delay)}"

    def to_ollama(self) -> dict[str, Any]:
        return {
            "status": f"pulling {self.digest[7:19]}",
            "digest": self.digest,
            "total": self.total,
            "completed": self.completed,
        }


def human_duration(seconds: float) -> str:
    """``0.5 s``, ``2 s``, ``4 min 10 s``, ``2 h 05 min``: short enough for a log line."""
    if seconds < 10:
        return f"{round(seconds, 1):g} s"
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def retry_reason(error: str) -> str:
    """A failure described in a few words for a retry line (the full text goes to the debug log)."""
    if error.startswith("stalled"):
        return "stalled"
    if error.startswith(("the body ended early", "network error")):
        return "connection dropped"
    if error.startswith("cannot connect"):
        return "cannot connect"
    if error.startswith("timed out"):
        return "timed out"
    return error if len(error) <= 60 else error[:57] + "..."


ProgressEvent = Status | LayerProgress | LayerNote
ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The progress callback of a caller that gave none: every event is dropped."""


def layer_label(event: LayerProgress | LayerNote, verb: str = "pulling") -> str:
    """``pulling 8934d96d3f08`` as Ollama prints it (``copying file:NAME`` for create's local files)."""
    if not event.digest.startswith("sha256:"):
        return f"copying {event.digest}"
    return f"{verb} {event.digest[7:19]}"
