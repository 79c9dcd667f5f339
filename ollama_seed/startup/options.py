"""What one ``aensure`` call works with: its options, checked before any work (also by ``ensure()``'s
fast path, so cheap), and the progress tracker that can say what a timeout interrupted. Shared by
the pull path (``api``) and the server path (``via_server``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.bounds import check
from ..core.progress import LayerProgress, ProgressCallback, ProgressEvent
from ..core.reference import ModelName
from ..pulling.options import PULL_KEYS, PullSettings
from ..store.store import ModelStore

if TYPE_CHECKING:
    import httpx

    from ..pulling.options import PullOptions
    from ..wire.verify import TrustLike

__all__ = ["ENSURE_KEYS", "EnsureOptions", "EnsureProgress", "check_ensure_options", "trust_applies"]

ENSURE_KEYS = frozenset(
    {
        "verify",
        "update",
        "offline",
        "timeout",
        "server",
        "via_server",
        "wait_timeout",
        "warm",
        "keep_alive",
        "server_transport",
        "modelfiles",
    }
)
"""``aensure``'s own keywords besides *models_dir*; the rest are :class:`~..pulling.options.PullOptions`."""


def check_ensure_options(options: Mapping[str, Any]) -> PullSettings:
    """Check the keywords of an ``ensure``/``aensure`` call before any work; the pull options, settled.

    Raises:
        TypeError: an unknown keyword, as a misspelt keyword argument would.
        ConfigError: a value out of range (exit 2), naming the option and its range.
    """
    unknown = sorted(set(options) - ENSURE_KEYS - PULL_KEYS)
    if unknown:
        raise TypeError(f"ensure() got an unexpected keyword argument {unknown[0]!r}")
    for key in ("timeout", "wait_timeout"):
        if options.get(key) is not None:
            check(key, options[key])
    return PullSettings.of({k: v for k, v in options.items() if k in PULL_KEYS}, caller="ensure")


class EnsureProgress:
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
    pull: PullOptions
    """Every pull option set, ``progress`` being the tracker."""
    server_transport: httpx.AsyncBaseTransport | None
    tracker: EnsureProgress
    trust: TrustLike = None


def trust_applies(trust: object, names: list[ModelName] | None = None) -> bool:
    """Whether *trust* (a ``Trust``, a ``TrustPolicy`` or None) may ask a signature of any of *names*
    (of any model when None). Cheap: no key is loaded, nothing but the core is imported."""
    if trust is None:
        return False
    from ..core.trustpolicy import TrustPolicy  # loaded already when *trust* is one

    if not isinstance(trust, TrustPolicy):
        return True  # a Trust: every model
    if names is None:
        return bool(trust)
    for name in names:
        rule = trust.rule_for(name)
        if rule is not None and rule.mode != "off" and rule.has_trust:
            return True
    return False
