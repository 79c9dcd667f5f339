"""Progress renderers: NDJSON shaped like Ollama's, plain log lines, rich bars."""

from __future__ import annotations

import io
import json

from rich.console import Console

from ollama_seed import LayerProgress, Status
from ollama_seed.cli.render import JsonRenderer, LineRenderer, make_renderer
from ollama_seed.cli.render_rich import RichRenderer

D = "sha256:" + "ab" * 32


def events() -> list[Status | LayerProgress]:
    return [
        Status("m:latest", "pulling manifest"),
        LayerProgress("m:latest", D, "application/vnd.ollama.image.model", 100, 0),
        LayerProgress("m:latest", D, "application/vnd.ollama.image.model", 100, 40),
        LayerProgress("m:latest", D, "application/vnd.ollama.image.model", 100, 100, done=True),
        Status("m:latest", "verifying sha256 digest"),
        Status("m:latest", "writing manifest"),
        Status("m:latest", "success"),
    ]


def test_json_lines_are_ollamas_shape() -> None:
    out = io.StringIO()
    r = JsonRenderer(out)
    for e in events():
        r(e)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0] == {"status": "pulling manifest", "model": "m:latest"}
    layer = [x for x in lines if "digest" in x]
    assert layer[0] == {"status": f"pulling {'ab' * 6}", "digest": D, "total": 100, "model": "m:latest"}
    assert layer[-1]["completed"] == 100
    assert [x["status"] for x in lines][-3:] == ["verifying sha256 digest", "writing manifest", "success"]


def test_plain_lines_for_logs() -> None:
    out = io.StringIO()
    r = LineRenderer(out, interval=3600)
    for e in events():
        r(e)
    text = out.getvalue()
    assert "m:latest: pulling manifest" in text
    assert "m:latest: 100 B / 100 B (100%)" in text
    assert "40 B" not in text  # throttled: no line before the interval or the end
    assert text.strip().endswith("m:latest: success")


def test_rich_bars() -> None:
    out = io.StringIO()
    r = RichRenderer(Console(file=out, force_terminal=True, width=120))
    for e in events():
        r(e)
    r.close()
    text = out.getvalue()
    assert f"pulling {'ab' * 6}" in text
    assert "m:latest total" in text
    assert "success" in text


def test_make_renderer_modes() -> None:
    assert isinstance(make_renderer("plain", io.StringIO()), LineRenderer)
    assert isinstance(make_renderer("auto", io.StringIO()), LineRenderer)  # not a terminal
    assert isinstance(make_renderer("json", io.StringIO()), JsonRenderer)
    assert make_renderer("none") is None
