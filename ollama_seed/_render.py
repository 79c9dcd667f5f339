"""Progress renderers for the CLI: rich bars on a terminal, plain lines in logs, NDJSON for tools."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ._progress import LayerProgress, ProgressEvent, Status, human_size

__all__ = ["JsonRenderer", "LineRenderer", "RichRenderer", "make_renderer"]


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


class RichRenderer:
    """A bar per layer and a total, as ``ollama pull`` shows them."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console, transient=False, refresh_per_second=8)
        self.progress.start()
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._totals: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, Status):
            if event.status not in ("verifying sha256 digest", "writing manifest"):
                self.progress.console.print(f"{event.model}: {event.status}")
            return
        key = (event.model, event.digest)
        if key not in self._tasks:
            if event.model not in self._totals:
                self._totals[event.model] = self.progress.add_task(f"{event.model} total", total=0)
            label = f"pulling {event.digest[7:19]}" + (" (cached)" if event.cached else "")
            self._tasks[key] = self.progress.add_task(label, total=event.total)
            total_task = self._totals[event.model]
            self.progress.update(total_task, total=(self.progress.tasks[total_task].total or 0) + event.total)
        self.progress.update(self._tasks[key], completed=event.completed)
        model_done = sum(self.progress.tasks[t].completed for k, t in self._tasks.items() if k[0] == event.model)
        self.progress.update(self._totals[event.model], completed=model_done)

    def close(self) -> None:
        self.progress.stop()





def make_renderer(mode: str, stream: IO[str] | None = None) -> JsonRenderer | LineRenderer | RichRenderer | None:
    """``json``, ``plain``, ``rich``, ``none``, or ``auto`` (rich on a terminal, plain otherwise)."""
    out = stream or sys.stderr
    if mode == "auto":
        mode = "rich" if out.isatty() else "plain"
    if mode == "json":
        return JsonRenderer(stream or sys.stdout)
    if mode == "plain":
        return LineRenderer(out)
    if mode == "rich":
        return RichRenderer(Console(file=out))
    return None
