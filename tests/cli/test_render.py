"""Progress renderers: NDJSON shaped like Ollama's, plain log lines, rich bars."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from ollama_seed import LayerNote, LayerProgress, Status
from ollama_seed.cli.main import main
from ollama_seed.cli.render import JsonRenderer, LineRenderer, make_renderer
from ollama_seed.cli.render_rich import RichRenderer
from ollama_seed.cli.store import human_ago
from ollama_seed.core.progress import human_duration, retry_reason

D = "sha256:" + "ab" * 32
E = "sha256:" + "cd" * 32
MT = "application/vnd.ollama.image.model"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events() -> list[Status | LayerProgress]:
    return [
        Status("m:latest", "pulling manifest"),
        LayerProgress("m:latest", D, MT, 100, 0),
        LayerProgress("m:latest", D, MT, 100, 40),
        LayerProgress("m:latest", D, MT, 100, 100, done=True),
        Status("m:latest", "verifying sha256 digest"),
        Status("m:latest", "writing manifest"),
        Status("m:latest", "success"),
    ]


def test_json_lines_are_ollamas_shape_plus_our_keys() -> None:
    out = io.StringIO()
    clock = Clock()
    r = JsonRenderer(out, clock=clock)
    r(Status("m:latest", "pulling manifest"))
    r(LayerProgress("m:latest", D, MT, 100_000_000, 0))
    clock.now += 2
    r(LayerProgress("m:latest", D, MT, 100_000_000, 20_000_000))
    r(LayerNote("m:latest", D, "retry", 100_000_000, 20_000_000, "connection dropped", 2.0))
    r(LayerProgress("m:latest", D, MT, 100_000_000, 100_000_000, done=True))
    r(Status("m:latest", "success"))
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0] == {"status": "pulling manifest", "model": "m:latest"}
    first = lines[1]
    assert {k: first[k] for k in ("status", "digest", "total", "model")} == {
        "status": f"pulling {'ab' * 6}",
        "digest": D,
        "total": 100_000_000,
        "model": "m:latest",
    }
    assert lines[2]["completed"] == 20_000_000 and lines[2]["percent"] == 20.0
    assert lines[2]["rate"] == 10_000_000 and lines[2]["eta"] == 8.0  # 80 MB left at 10 MB/s
    assert lines[3]["event"] == "retry" and lines[3]["message"] == "connection dropped, retrying in 2 s"
    assert lines[3]["retry_in"] == 2.0 and lines[3]["status"] == f"pulling {'ab' * 6}"
    assert lines[4]["completed"] == 100_000_000 and lines[4]["percent"] == 100.0
    assert lines[-1] == {"status": "success", "model": "m:latest"}


def test_plain_lines_for_logs() -> None:
    out = io.StringIO()
    r = LineRenderer(out, interval=3600)
    for e in events():
        r(e)
    text = out.getvalue()
    assert "m:latest: pulling manifest" in text
    assert f"m:latest: pulling {'ab' * 6} 100% 100 B" in text
    assert "40 B" not in text  # throttled: no line before the interval or the end
    assert text.strip().endswith("m:latest: success")


def test_plain_lines_every_interval_with_rate_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    r = LineRenderer(out, interval=5, clock=clock)
    r(LayerProgress("g:1", D, MT, 253_100_000, 0))
    r(LayerProgress("g:1", E, MT, 1_000_000, 0))
    for second in range(1, 13):  # 12 s at 10 MB/s, an event every 0.5 s as the engine reports
        for half in (0.5, 1.0):
            clock.now = 1000 + second - 1 + half
            r(LayerProgress("g:1", D, MT, 253_100_000, int((second - 1 + half) * 10_000_000)))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # at 5 s and at 10 s; the idle layer E (no byte yet) gets none
    assert lines[0] == f"g:1: pulling {'ab' * 6}  20% 50.0 MB / 253.1 MB, 10.0 MB/s, ETA 20 s"
    assert lines[1] == f"g:1: pulling {'ab' * 6}  40% 100.0 MB / 253.1 MB, 10.0 MB/s, ETA 15 s"
    clock.now += 0.25
    r(LayerNote("g:1", D, "retry", 253_100_000, 120_000_000, "connection dropped", 2))
    r(LayerNote("g:1", D, "retry", 253_100_000, 120_000_000, "connection dropped", 2.4))  # another connection
    clock.now += 10  # nothing for 10 s: the next event prints the stall
    r(LayerProgress("g:1", D, MT, 253_100_000, 120_000_000))
    clock.now += 1
    r(LayerProgress("g:1", D, MT, 253_100_000, 253_100_000, done=True))
    r(LayerProgress("g:1", D, MT, 253_100_000, 253_100_000, done=True))  # a second model sharing it: once
    lines = out.getvalue().splitlines()[2:]
    assert lines[0] == f"g:1: pulling {'ab' * 6}: connection dropped, retrying in 2 s"
    assert lines[1].endswith(
        "120.0 MB / 253.1 MB, 1.6 MB/s, ETA 1 min 22 s"
    )  # 20 MB in the 12.25 s since the last line
    assert lines[2] == f"g:1: pulling {'ab' * 6} 100% 253.1 MB in 23 s (10.9 MB/s)"
    assert len(lines) == 3


def test_plain_resume_reuse_and_stall_lines() -> None:
    out, clock = io.StringIO(), Clock()
    r = LineRenderer(out, interval=1, clock=clock, verb="importing")
    r(LayerNote("x:1", D, "resume", 6_700_000_000, 3_100_000_000))
    r(LayerProgress("x:1", D, MT, 6_700_000_000, 3_100_000_000))
    clock.now += 2
    r(LayerProgress("x:1", D, MT, 6_700_000_000, 3_100_000_000))
    r(LayerProgress("x:1", E, MT, 500, 500, cached=True, done=True))
    text = out.getvalue().splitlines()
    assert text[0] == f"x:1: importing {'ab' * 6}: resuming at 3.1 GB of 6.7 GB"
    assert text[1].endswith("3.1 GB / 6.7 GB, 0 B/s, no data, waiting")
    assert text[2] == f"x:1: importing {'cd' * 6} 100% 500 B, already in the store"


def test_rich_bars() -> None:
    out = io.StringIO()
    r = RichRenderer(Console(file=out, force_terminal=True, width=120))
    for e in events():
        r(e)
    r(LayerNote("m:latest", D, "retry", 100, 40, "stalled", 0.5))
    r.close()
    text = out.getvalue()
    assert f"pulling {'ab' * 6}" in text
    assert "m:latest total" in text
    assert "success" in text and "stalled, retrying in 0.5 s" in text


def test_make_renderer_modes() -> None:
    assert isinstance(make_renderer("plain", io.StringIO()), LineRenderer)
    assert isinstance(make_renderer("auto", io.StringIO()), LineRenderer)  # not a terminal
    assert isinstance(make_renderer("json", io.StringIO()), JsonRenderer)
    assert make_renderer("none") is None
    r = make_renderer("plain", io.StringIO(), interval=0.5)
    assert isinstance(r, LineRenderer) and r.interval == 0.5


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0.4 s"),
        (2, "2 s"),
        (9.96, "10 s"),
        (59, "59 s"),
        (66, "1 min 06 s"),
        (3725, "1 h 02 min"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("error", "short"),
    [
        ("the body ended early at byte 5 of 9", "connection dropped"),
        ("network error from http://x/: ReadError: reset", "connection dropped"),
        ("stalled: no data for 30 s from http://x/", "stalled"),
        ("cannot connect to http://x/: refused; check the address", "cannot connect"),
        ("HTTP 503", "HTTP 503"),
    ],
)
def test_retry_reason(error: str, short: str) -> None:
    assert retry_reason(error) == short


# Ollama's format.HumanTime, as `ollama list` shows MODIFIED
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second ago"),
        (1, "1 second ago"),
        (42, "42 seconds ago"),
        (60, "About a minute ago"),
        (150, "2 minutes ago"),
        (3600, "About an hour ago"),
        (5 * 3600, "5 hours ago"),
        (47 * 3600, "47 hours ago"),
        (3 * 86400, "3 days ago"),
        (20 * 86400, "2 weeks ago"),
        (70 * 86400, "2 months ago"),
        (800 * 86400, "2 years ago"),
        (-120, "2 minutes from now"),
    ],
)
def test_human_ago_matches_ollama_list(seconds: float, text: str) -> None:
    assert human_ago(seconds) == text


def test_verbose_after_the_subcommand(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["list", "-v"], ["-v", "list", "-vv"], ["bundle", "ls", "-v", "/nonexistent"]):
        code = main([*argv, "--models-dir", "/nonexistent"] if argv[-1] != "/nonexistent" else argv)
        assert code in (8, 12), argv  # a named models directory that is not there: 8
    assert "unrecognized arguments" not in capsys.readouterr().err


def test_list_shows_modified_as_ollama(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from ollama_seed import ModelName
    from tests.support.craft import Model, install
    from tests.support.model import make_model

    root = Path(str(tmp_path)) / "models"
    install(root, [Model(ModelName.parse("alpha:1"), make_model(size_bytes=2000, seed=3))])
    assert main(["list", "--models-dir", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"NAME\s+ID\s+SIZE\s+MODIFIED", lines[0])
    assert lines[1].startswith("alpha:1 ") and re.search(r"(Less than a second|\d+ seconds?) ago$", lines[1])
    assert main(["list", "--json", "--models-dir", str(root)]) == 0
    entry = json.loads(capsys.readouterr().out)[0]
    assert entry["name"] == entry["model"] == "alpha:1" and re.match(r"\d{4}-\d\d-\d\dT", entry["modified_at"])
    assert main(["show", "alpha:1", "--json", "--models-dir", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "alpha:1"
