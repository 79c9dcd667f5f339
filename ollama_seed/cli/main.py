"""The ``ollama-seed`` command line: the parser, logging, and a failure turned into its exit code.

Subcommands live in the other modules of ``cli/`` (``store``, ``ensure``, ``create``, ``bundle``,
``image``, ``serve``, ``provenance``), each with a ``register(subparsers)`` function that adds its
parsers and sets ``func`` to a handler ``(args) -> int``. The exit codes are the table of
:mod:`.helptext` (``EXIT_MEANINGS``; README.md's is checked against it), each carried by its
exception class in ``core/errors``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

from ..__about__ import __version__
from ..core.errors import SeedError
from ..core.redact import RedactFilter
from . import gcpause, helptext, where
from . import store as _cli_store

__all__ = ["EXIT_INTERRUPTED", "EXIT_UNEXPECTED", "EXIT_USAGE", "entry", "main"]

EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_MODULES = [_cli_store]


def _optional_modules() -> list[ModuleType]:
    """The other subcommand modules, loaded when the parser is built (not at import)."""
    from . import bundle, create, ensure, image, provenance, serve

    return [ensure, create, bundle, image, serve, provenance]


# Which module registers each command: a command line naming one gets a parser with only that
# module's subcommands (building all of them, and importing their modules, cost ~25 ms of CPU on
# the project's 2-core machine, twice that in wall time under a 500m CPU quota).
_COMMAND_MODULES = {
    **dict.fromkeys(("pull", "list", "ls", "show", "cp", "verify", "rm", "prune"), "store"),
    **dict.fromkeys(("ensure", "wait"), "ensure"),
    "create": "create",
    **dict.fromkeys(("export", "import", "bundle"), "bundle"),
    **dict.fromkeys(("serve", "push"), "serve"),
    "image": "image",
    **dict.fromkeys(("keygen", "sign"), "provenance"),
}


def _modules_for(argv: Sequence[str] | None) -> list[ModuleType]:
    """The subcommand modules a parser for *argv* needs: the one of its command, else all of them
    (no command, an unknown one, or only global options such as --help: the full list is shown)."""
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    name = _COMMAND_MODULES.get(command or "")
    if name is None:
        return [*_MODULES, *_optional_modules()]
    if name == "store":
        return [_cli_store]
    import importlib

    return [importlib.import_module(f"{__package__}.{name}")]


def build_parser(argv: Sequence[str] | None = None, *, complete: bool = True) -> argparse.ArgumentParser:
    """The CLI's parser; with ``complete=False``, only what *argv*'s command needs (see _modules_for)."""
    parser = argparse.ArgumentParser(
        prog="ollama-seed",
        description="Pull Ollama models straight from the registry into Ollama's store, resumable and\n"
        "verified, with no Ollama server needed. 'ollama-seed COMMAND --help' tells more.",
    )
    parser.add_argument("--version", action="version", version=f"ollama-seed {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for HTTP details)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in [*_MODULES, *_optional_modules()] if complete else _modules_for(argv):
        module.register(sub)
    _verbose_after(sub)
    helptext.finish(parser)
    return parser


def _verbose_after(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``-v``/``-vv`` after the subcommand too (``ollama-seed pull -v NAME``), as users type them.

    A separate destination: argparse would otherwise let the subcommand's count replace the
    one given before it; main() adds the two.
    """
    for parser in set(sub.choices.values()):
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            _verbose_after(nested[0])
            continue
        parser.add_argument(
            "-v",
            "--verbose",
            dest="verbose_after",
            action="count",
            default=argparse.SUPPRESS,
            help="log more (-vv for HTTP details)",
        )


# Imported eagerly by httpx/httpcore when installed, never used by this command: httpx's own CLI
# (click, pygments, rich; click comes with uvicorn) and trio (httpcore probes for it). Together
# they are ~90 ms of a ~270 ms no-op pull. A None entry in sys.modules makes their import raise
# ImportError, which both libraries catch. Done only in the command's own process (entry()).
_UNUSED_OPTIONAL_IMPORTS = ("httpx._main", "trio")


def entry() -> None:
    """The console script and ``python -m ollama_seed``: trim start-up, run, exit with the code.

    Every file the command wrote is closed (and fsynced where it matters) before main()
    returns, so the exit skips the interpreter's teardown (~30 ms of freeing ~400 modules
    after a pull) once stdio and logging are flushed. Under coverage or with threads still
    running (none are expected) it exits the ordinary way.
    """
    for name in _UNUSED_OPTIONAL_IMPORTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    gcpause.pause()  # the command turns it back on after its imports (see gcpause)
    code = main()
    if "coverage" in sys.modules or threading.active_count() > 1:
        raise SystemExit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): the output is lost either way
            code = code or EXIT_UNEXPECTED
    os._exit(code)


def json_error(exc: SeedError) -> dict[str, object]:
    """What ``--json`` prints on stdout when a command fails (its last line; ``error`` as in Ollama's
    ``/api/pull`` stream)."""
    return {
        "ok": False,
        "error": str(exc),
        "error_type": type(exc).__name__,
        "exit_code": exc.exit_code,
    }


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command *args* names, for its own usage line in an error."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, sub.dest, None) if sub is not None else None
        if sub is None or chosen not in sub.choices:
            return parser
        parser = sub.choices[chosen]


def _refuse_offline(args: argparse.Namespace) -> None:
    """``OLLAMA_SEED_OFFLINE``: a command that would use the network fails at once (exit 10), before it
    writes anything. A subcommand says what of its arguments needs the network with ``network=``
    (``args -> (what, what to do instead)``, or None when this call needs none)."""
    network = getattr(args, "network", None)
    need: tuple[str, str] | None = network(args) if network is not None else None
    if need is None:
        return
    from ..core.errors import OfflineError
    from ..startup.local import OFFLINE_ENV, offline_from_env

    if offline_from_env():
        what, instead = need
        raise OfflineError(
            f"{OFFLINE_ENV} is set, and '{what}' needs the network; {instead}, or unset {OFFLINE_ENV} to let it "
            "go to the network"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser(argv, complete=False)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # the subcommand's own usage, not the top level's
            _command_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    args.verbose += getattr(args, "verbose_after", 0)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # signed URLs and tokens never reach the log (see core/redact)
        handler.addFilter(RedactFilter())
    if args.verbose < 2:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        where.resolve(args)
        _refuse_offline(args)
        code: int = args.func(args)
        return code
    except SeedError as exc:
        if getattr(args, "json", False) and not sys.stdout.closed:  # --json: the failure as JSON on stdout too
            print(json.dumps(json_error(exc)), flush=True)
        print(f"ollama-seed: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ollama-seed: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNEXPECTED
