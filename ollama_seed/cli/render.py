"""Progress renderers for the CLI: rich bars on a terminal, plain lines in logs, NDJSON for tools."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, TYPE_CHECKING, Any

from ..core.progress import LayerProgress, ProgressEvent, Status, human_size

if TYPE_CHECKING:
    from .render_rich import RichRenderer

__all__ = ["JsonRenderer", "LineRenderer", "make_renderer"]


class JsonRenderer:
    """One JSON object per line, shaped like Ollama's ``/api/pull`` stream (plus ``model``)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._last: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        line: dict[str, Any] = event.to_ollama()
        if isinstance(event, LayerProgress) and not event.done:
            now = time.monotonic()
            if now - self._last.get(event.digest, 0.0) < 0.5:
                return
            self._last[event.digest] = now
        line["model"] = event.model
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    def close(self) -> None:
        return None


class LineRenderer:
    """Plain lines for logs: phases as they happen, bytes at most every *interval* seconds."""

    def __init__(self, out: IO[str], interval: float = 5.0) -> None:
        self.out, self.interval = out, interval
        self._layers: dict[tuple[str, str], tuple[int, int]] = {}
        self._last = time.monotonic()
        self._printed: dict[str, int] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, Status):
            self.out.write(f"{event.model}: {event.status}\n")
        else:
            self._layers[(event.model, event.digest)] = (event.completed, event.total)
            done = sum(c for (m, _), (c, _) in self._layers.items() if m == event.model)
            total = sum(t for (m, _), (_, t) in self._layers.items() if m == event.model)
            now = time.monotonic()
            finished = done == total and self._printed.get(event.model) != done
            if now - self._last < self.interval and not finished:
                return
            self._last = now
            self._printed[event.model] = done
            pct = 100.0 * done / total if total else 100.0
            self.out.write(f"{event.model}: {human_size(done)} / {human_size(total)} ({pct:.0f}%)\n")
        self.out.flush()

    def close(self) -> None:
        return None


def make_renderer(mode: str, stream: IO[str] | None = None) -> JsonRenderer | LineRenderer | RichRenderer | None:
    """``json``, ``plain``, ``rich``, ``none``, or ``auto`` (rich on a terminal, plain otherwise)."""
    out = stream or sys.stderr
    if mode == "auto":
        mode = "rich" if out.isatty() else "plain"
    if mode == "json":
        return JsonRenderer(stream or sys.stdout)
    if mode == "plain":
        return LineRenderer(out)
    if mode == "rich":  # rich loads only here: --progress none/plain/json start faster
        from rich.console import Console

        from .render_rich import RichRenderer

        return RichRenderer(Console(file=out))
    return None
