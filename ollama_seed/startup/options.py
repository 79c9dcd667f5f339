"""What one ``aensure`` call works with: its options and the progress tracker that can say what a
timeout interrupted. Shared by the pull path (``run``) and the server path (``via_server``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.progress import LayerProgress, ProgressCallback, ProgressEvent
from ..core.reference import ModelName
from ..core.trustpolicy import TrustPolicy
from ..store.store import ModelStore

if TYPE_CHECKING:
    import httpx

    from ..wire.verify import TrustLike

__all__ = ["EnsureOptions", "Tracker", "trust_applies"]


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
    trust: TrustLike = None


def trust_applies(trust: object, names: list[ModelName] | None = None) -> bool:
    """Whether *trust* (a ``Trust``, a ``TrustPolicy`` or None) may ask a signature of any of *names*
    (of any model when None). Cheap: no key is loaded, nothing but the core is imported."""
    if trust is None:
        return False
    if not isinstance(trust, TrustPolicy):
        return True  # a Trust: every model
    if names is None:
        return bool(trust)
    for name in names:
        rule = trust.rule_for(name)
        if rule is not None and rule.mode != "off" and rule.has_trust:
            return True
    return False
