"""What one ``aensure`` call works with: its options and the progress tracker that can say what a
timeout interrupted. Shared by the pull path (``run``) and the server path (``via_server``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.progress import LayerProgress, ProgressCallback, ProgressEvent
from ..store.store import ModelStore

if TYPE_CHECKING:
    import httpx

__all__ = ["EnsureOptions", "Tracker"]


class Tracker:
    """Forwards progress events and remembers enough to say what a timeout interrupted."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.forward = progress
        self.layers: dict[str, dict[str, tuple[int, int]]] = {}
        self.phase = "checking the models directory"
        self.pending: set[str] = set()

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, LayerProgress):
            self.layers.setdefault(event.model, {})[event.digest] = (event.completed, event.total)
        if self.forward is not None:
            self.forward(event)

    def describe(self) -> str:
        parts = []
        for model in sorted(self.pending):
            layers = self.layers.get(model, {})
            done = sum(c for c, _ in layers.values())
            total = sum(t for _, t in layers.values())
            parts.append(f"{model} ({done} of {total} bytes)" if total else model)
        where = f"while {self.phase}"
        return f"{where}; unfinished: {', '.join(parts)}" if parts else where


@dataclass
class EnsureOptions:
    store: ModelStore
    verify: bool
    update: bool
    offline: bool
    server: str | None
    wait_timeout: float | None
    warm: bool
    keep_alive: str | float | None
    pull: dict[str, Any]
    mirrors: tuple[str, ...]
    transport: httpx.AsyncBaseTransport | None
    server_transport: httpx.AsyncBaseTransport | None
    tracker: Tracker
