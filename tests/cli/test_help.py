"""Issue 25, item 10: every command's ``--help`` has a description, help for every positional and the
exit codes it can return; ``ollama-seed --help`` lists all exit codes once, and README.md's table is
that list. Before: ten subcommands had no description, their positionals no help, and no ``--help``
named an exit code, though init containers act on them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import ollama_seed.core.errors as errors
from ollama_seed.cli.helptext import COMMAND_EXITS, EXIT_MEANINGS
from ollama_seed.cli.main import build_parser, main

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        return
    seen: set[int] = set()
    for name, child in sub.choices.items():
        if id(child) in seen:  # an alias (ls for list)
            continue
        seen.add(id(child))
        yield f"{prefix}{name}", child
        yield from _commands(child, f"{prefix}{name} ")


COMMANDS = dict(_commands(build_parser()))


def test_every_command_declares_its_exit_codes() -> None:
    assert sorted(COMMANDS) == sorted(COMMAND_EXITS), "a new command: add it to cli/helptext.COMMAND_EXITS"
    for codes in COMMAND_EXITS.values():
        assert 0 in codes and 2 in codes and set(codes) <= set(EXIT_MEANINGS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_has_a_description_positionals_and_exit_codes(command: str) -> None:
    parser = COMMANDS[command]
    assert parser.description, command
    for action in parser._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            assert action.help, f"{command}: the positional {action.metavar or action.dest} has no help"
    text = " ".join(parser.format_help().split())
    assert "exit codes:" in text
    for code in COMMAND_EXITS[command]:
        assert re.search(rf"\b{code} ", text.split("exit codes:", 1)[1]), (command, code)


def test_the_top_level_help_lists_every_exit_code_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    table = capsys.readouterr().out.split("exit codes", 1)[1]
    for code, meaning in EXIT_MEANINGS.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning.split()[0])}", table, re.M), code


def test_every_error_class_has_a_documented_code() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.SeedError)]
    assert {c.exit_code for c in classes} <= set(EXIT_MEANINGS)


def test_readme_lists_the_same_exit_codes() -> None:
    text = README.read_text(encoding="utf-8").split("## Exit codes", 1)[1]
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", text.split("\n## ", 1)[0], re.M))
    assert {int(k): v.replace("`", "") for k, v in rows.items()} == EXIT_MEANINGS


def test_a_subcommand_help_shows_its_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ensure", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 success;" in out and "11 an Ollama server did not answer or refused" in out
