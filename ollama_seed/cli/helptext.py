"""What ``--help`` says beyond the options: each command's description and the exit codes it returns.

An init container, a systemd unit or a CI job acts on the exit code, so every command's ``--help``
ends with the codes that command can return, and ``ollama-seed --help`` lists all of them once.
:data:`EXIT_MEANINGS` is the one table (README.md's "Exit codes" is checked against it);
:data:`COMMAND_EXITS` says which codes each command can end with. A command missing from it fails
``tests/cli/test_help.py``: a new command declares its codes here.
"""

from __future__ import annotations

import argparse
import textwrap

__all__ = ["COMMAND_EXITS", "EXIT_MEANINGS", "finish"]

EXIT_MEANINGS: dict[int, str] = {
    0: "success",
    1: "unexpected error",
    2: "usage error or invalid model name",
    3: "model not found",
    4: "network or registry error (after retries)",
    5: "integrity: a digest or size mismatch",
    6: "not enough disk space",
    7: "authentication refused",
    8: "the local store is unusable (permissions, a corrupt manifest, a symlink where none belongs)",
    9: "timeout",
    10: "offline and something is missing",
    11: "an Ollama server did not answer or refused",
    12: "a bad bundle, or a damaged or hostile image (image verify, image extract)",
    13: "a signature is missing where trust is configured, does not verify, or is not from a key or CA you trust",
    14: "a key, certificate or passphrase that cannot be used",
    130: "interrupted (run the same command again to resume)",
}

_PULLING = (3, 4, 5, 6, 7, 8, 10)  # what fetching from a registry can end with
COMMAND_EXITS: dict[str, tuple[int, ...]] = {
    "pull": (0, 2, *_PULLING, 13, 14),
    "list": (0, 2, 8),
    "show": (0, 2, 3, 8),
    "cp": (0, 2, 3, 8),
    "verify": (0, 2, 3, 5, 8, 13, 14),
    "rm": (0, 2, 3, 8),
    "prune": (0, 2, 8),
    "ensure": (0, 2, *_PULLING, 9, 11, 13, 14),
    "wait": (0, 2, 11),
    "create": (0, 2, *_PULLING),
    "export": (0, 2, 3, 5, 6, 8, 14),
    "import": (0, 2, 5, 6, 8, 12, 13, 14),
    "bundle": (0, 2, 8, 12, 13, 14),
    "bundle ls": (0, 2, 12),
    "bundle verify": (0, 2, 12, 13, 14),
    "serve": (0, 2, 4, 8, 14),
    "push": (0, 2, 3, 4, 5, 7, 8, 10),
    "image": (0, 2, *_PULLING, 12, 13, 14),
    "image build": (0, 2, *_PULLING, 12, 14),
    "image verify": (0, 2, 3, 4, 7, 10, 12, 13, 14),
    "image extract": (0, 2, 3, 4, 5, 6, 7, 8, 10, 12, 13, 14),
    "keygen": (0, 2, 14),
    "sign": (0, 2, 3, 5, 8, 14),
}


def exit_codes_line(codes: tuple[int, ...]) -> str:
    """``exit codes: 0 success; 2 usage error ...`` for one command's ``--help``."""
    said = "; ".join(f"{code} {EXIT_MEANINGS[code]}" for code in codes)
    return f"exit codes: {said} (and 1 unexpected error, 130 interrupted; all: ollama-seed --help)"


def top_epilog() -> str:
    """The full table, for ``ollama-seed --help``."""
    lines = ["exit codes (every command's --help lists its own):"]
    for code, meaning in EXIT_MEANINGS.items():
        lines.extend(textwrap.wrap(meaning, 84, initial_indent=f"  {code:>3}  ", subsequent_indent=" " * 7))
    return "\n".join(lines)


def finish(parser: argparse.ArgumentParser) -> None:
    """Give the top-level parser the exit-code table and every subcommand (nested too) a description
    (its one-line help when it has none) and its exit codes (unless it wrote its own)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = top_epilog()
    _finish_children(parser, "")


def _finish_children(parser: argparse.ArgumentParser, prefix: str) -> None:
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        return
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, child in sub.choices.items():
        command = f"{prefix}{name}"
        if child.description is None and helps.get(name):
            child.description = str(helps[name])[:1].upper() + str(helps[name])[1:] + "."
        codes = COMMAND_EXITS.get(command)
        if codes is not None and not (child.epilog and "exit codes" in child.epilog):
            child.epilog = exit_codes_line(codes)
        _finish_children(child, f"{command} ")
