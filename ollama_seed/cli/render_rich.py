"""The rich progress display (bars per layer and a total); loaded only when bars are shown."""

from __future__ import annotations

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

from ..core.progress import LayerNote, ProgressEvent, Status, layer_label

__all__ = ["RichRenderer"]


class RichRenderer:
    """A bar per layer and a total, as ``ollama pull`` shows them."""

    def __init__(self, console: Console, verb: str = "pulling") -> None:
        self.verb = verb
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            refresh_per_second=8,
        )
        self.progress.start()
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._totals: dict[str, TaskID] = {}

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, Status):
            if event.status not in ("verifying sha256 digest", "writing manifest"):
                self.progress.console.print(f"{event.model}: {event.status}")
            return
        if isinstance(event, LayerNote):
            self.progress.console.print(
                f"{event.model}: {layer_label(event, self.verb)}: {event.message}", highlight=False
            )
            return
        key = (event.model, event.digest)
        if key not in self._tasks:
            if event.model not in self._totals:
                self._totals[event.model] = self.progress.add_task(f"{event.model} total", total=0)
            label = layer_label(event, self.verb) + (" (already in the store)" if event.cached else "")
            self._tasks[key] = self.progress.add_task(label, total=event.total)
            total_task = self._totals[event.model]
            self.progress.update(total_task, total=(self.progress.tasks[total_task].total or 0) + event.total)
        self.progress.update(self._tasks[key], completed=event.completed)
        model_done = sum(self.progress.tasks[t].completed for k, t in self._tasks.items() if k[0] == event.model)
        self.progress.update(self._totals[event.model], completed=model_done)

    def close(self) -> None:
        self.progress.stop()
