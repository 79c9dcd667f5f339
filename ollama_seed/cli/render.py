"""Progress renderers for the CLI: rich bars on a terminal, plain lines in logs, NDJSON for tools.

Plain lines are what ``docker logs -f`` and ``kubectl logs`` show of an init container, so each
says what Ollama's own output says and a bit more::

    gemma3:270m: pulling 8934d96d3f08  19% 49.0 MB / 253.1 MB, 12.3 MB/s, ETA 17 s
    gemma3:270m: pulling 8934d96d3f08: connection dropped, retrying in 2 s
    gemma3:270m: pulling 8934d96d3f08 100% 253.1 MB in 20 s (12.6 MB/s)

A progress line comes at most every *interval* seconds (``--progress-interval``), for each layer
that moved since the last one; a layer's end, a resume and a retry always get a line. The rate is
the one over the last interval, the ETA the rest at that rate. NDJSON lines keep the shape of
Ollama's ``/api/pull`` stream and add ``model``, ``percent``, ``rate`` (bytes/s) and ``eta`` (s);
a resume or retry line adds ``event`` and ``message``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..core.progress import (
    LayerNote,
    LayerProgress,
    ProgressEvent,
    Status,
    human_duration,
    human_size,
    layer_label,
)

if TYPE_CHECKING:
    from .render_rich import RichRenderer

__all__ = ["JsonRenderer", "LineRenderer", "add_interval", "add_progress", "layer_label", "make_renderer"]

Clock = Callable[[], float]
NOTE_REPEAT = 1.0  # the same note for the same layer (16 connections dropping at once) at most once a second


@dataclass
class _Layer:
    total: int
    started: float
    start_bytes: int
    mark_time: float
    mark_bytes: int
    completed: int = 0
    ended: bool = False
    timed: bool = True
    """False when the layer's first event was its end: how long it took is not known."""

    def rate(self, now: float) -> float:
        """Bytes/s since the last mark (the last line printed for this layer)."""
        span = now - self.mark_time
        return (self.completed - self.mark_bytes) / span if span > 0 else 0.0

    def mark(self, now: float) -> None:
        self.mark_time, self.mark_bytes = now, self.completed


class _Layers:
    """Per-layer bytes, times and rates, shared by the plain and NDJSON renderers."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.layers: dict[tuple[str, str], _Layer] = {}

    def update(self, event: LayerProgress) -> _Layer:
        now = self.clock()
        layer = self.layers.get((event.model, event.digest))
        if layer is None:
            if event.done and not event.cached:  # done in one step (a small blob, an export): all of it moved
                layer = _Layer(event.total, now, 0, now, 0, timed=False)
            else:
                layer = _Layer(event.total, now, event.completed, now, event.completed)
            self.layers[(event.model, event.digest)] = layer
        layer.completed, layer.total = event.completed, event.total
        return layer


def _eta(layer: _Layer, rate: float) -> float | None:
    left = layer.total - layer.completed
    return left / rate if rate > 0 else None


class JsonRenderer:
    """One JSON object per line, shaped like Ollama's ``/api/pull`` stream, plus ``model`` and rates."""

    def __init__(self, out: IO[str], *, clock: Clock = time.monotonic) -> None:
        self.out = out
        self.track = _Layers(clock)
        self._last: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        line: dict[str, Any] = event.to_ollama()
        if isinstance(event, LayerProgress):
            layer = self.track.update(event)
            now = self.track.clock()
            if not event.done:
                if now - self._last.get(event.digest, 0.0) < 0.5:
                    return
                self._last[event.digest] = now
                rate = layer.rate(now)
                layer.mark(now)
                eta = _eta(layer, rate)
                line.update(rate=round(rate), **({"eta": round(eta, 1)} if eta is not None else {}))
            if event.total:
                line["percent"] = round(100.0 * event.completed / event.total, 1)
        elif isinstance(event, LayerNote):
            line.update(event=event.kind, message=event.message)
            if event.kind == "retry":
                line["retry_in"] = round(event.delay, 3)
        line["model"] = event.model
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    def close(self) -> None:
        return None


class LineRenderer:
    """Plain lines for logs: phases as they happen, bytes at most every *interval* seconds."""

    def __init__(
        self, out: IO[str], interval: float = 5.0, *, verb: str = "pulling", clock: Clock = time.monotonic
    ) -> None:
        self.out, self.interval, self.verb = out, interval, verb
        self.track = _Layers(clock)
        self._last_round = clock()
        self._notes: dict[tuple[str, str, str], float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        now = self.track.clock()
        if isinstance(event, Status):
            self._write(f"{event.model}: {event.status}")
        elif isinstance(event, LayerNote):
            key = (event.model, event.digest, event.kind)
            if now - self._notes.get(key, -NOTE_REPEAT) >= NOTE_REPEAT:
                self._notes[key] = now
                self._write(f"{event.model}: {layer_label(event, self.verb)}: {event.message}")
        else:
            layer = self.track.update(event)
            if event.done:
                if not layer.ended:
                    layer.ended = True
                    self._write(self._end_line(event, layer, now))
            elif now - self._last_round >= self.interval:
                self._last_round = now
                for (model, digest), other in self.track.layers.items():
                    if not other.ended and other.completed > 0:  # a layer waiting for its first byte: no line
                        self._write(self._line(model, digest, other, now))

    def _line(self, model: str, digest: str, layer: _Layer, now: float) -> str:
        rate = layer.rate(now)
        layer.mark(now)
        pct = 100.0 * layer.completed / layer.total if layer.total else 100.0
        eta = _eta(layer, rate)
        when = f"ETA {human_duration(eta)}" if eta is not None else "no data, waiting"
        label = layer_label(LayerProgress(model, digest, "", layer.total, layer.completed), self.verb)
        return (
            f"{model}: {label} {pct:3.0f}% {human_size(layer.completed)} / {human_size(layer.total)}, "
            f"{human_size(rate)}/s, {when}"
        )

    def _end_line(self, event: LayerProgress, layer: _Layer, now: float) -> str:
        label = layer_label(event, self.verb)
        moved = layer.completed - layer.start_bytes
        if event.cached:  # only what the producer says was there: never assumed from missing progress
            return f"{event.model}: {label} 100% {human_size(event.total)}, already in the store"
        if moved <= 0 or not layer.timed:
            return f"{event.model}: {label} 100% {human_size(event.total)}"
        took = now - layer.started
        speed = f" ({human_size(moved / took)}/s)" if took > 0 else ""
        return f"{event.model}: {label} 100% {human_size(event.total)} in {human_duration(took)}{speed}"

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        return None


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the interval must be more than 0 seconds, not {text!r}")
    return value


def add_interval(p: argparse.ArgumentParser) -> None:
    """``--progress-interval S``: how often plain progress lines come (a layer's end, retries and resumes always)."""
    p.add_argument(
        "--progress-interval",
        type=_interval,
        default=5.0,
        metavar="S",
        help="plain progress lines at most every S seconds (default 5); ends of layers, "
        "resumes and retries always get one",
    )


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--progress auto|rich|plain|none`` and ``--progress-interval S``, for every command that shows progress."""
    p.add_argument(
        "--progress",
        choices=["auto", "rich", "plain", "none"],
        default="auto",
        help="progress display on stderr (default: bars on a terminal, lines otherwise)",
    )
    add_interval(p)


def make_renderer(
    mode: str, stream: IO[str] | None = None, *, interval: float = 5.0, verb: str = "pulling"
) -> JsonRenderer | LineRenderer | RichRenderer | None:
    """``json``, ``plain``, ``rich``, ``none``, or ``auto`` (rich on a terminal, plain otherwise)."""
    out = stream or sys.stderr
    if mode == "auto":
        mode = "rich" if out.isatty() else "plain"
    if mode == "json":
        return JsonRenderer(stream or sys.stdout)
    if mode == "plain":
        return LineRenderer(out, interval, verb=verb)
    if mode == "rich":  # rich loads only here: --progress none/plain/json start faster
        from rich.console import Console

        from .render_rich import RichRenderer

        return RichRenderer(Console(file=out), verb=verb)
    return None


@contextlib.contextmanager
def rendering(
    mode: str, stream: IO[str] | None = None, *, interval: float = 5.0, verb: str = "pulling"
) -> Iterator[JsonRenderer | LineRenderer | RichRenderer | None]:
    """One command's progress renderer (see :func:`make_renderer`), closed at the end. An error
    inside leaves as the one exception the command reports (:func:`~ollama_seed.core.groups.collapse`)."""
    from ..core.groups import collapse

    renderer = make_renderer(mode, stream, interval=interval, verb=verb)
    try:
        yield renderer
    except BaseException as exc:
        raise collapse(exc) from None
    finally:
        if renderer is not None:
            renderer.close()
