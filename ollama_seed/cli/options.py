"""Options on the command line, declared once: the pull flags every pulling command shares, the one
place that turns them (over the config file's keys) into :class:`~..pulling.options.PullOptions`,
and the argparse types that check a number against its range (``core/bounds``).

A value out of range is a usage error before any work: argparse prints
``argument --connections: must be a whole number from 1 to 256, not '0'`` and exits 2, the way the
config file (``startup/config``) and the Python API (``pulling/options``) refuse it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..core.bounds import BOUNDS, check
from ..core.errors import ConfigError
from ..core.units import parse_rate, parse_size
from ..pulling.options import PullOptions, PullSettings

if TYPE_CHECKING:
    from ..core.progress import ProgressCallback
    from ..startup.config import Config
    from ..wire.verify import TrustLike

__all__ = ["add_pull_options", "bounded", "pull_options"]

DEFAULTS = PullSettings()


def bounded(key: str, convert: Callable[[str], Any] = int) -> Callable[[str], Any]:
    """An argparse type: *convert* the text (``int``, ``float``, ``parse_rate``, ``parse_size``), then
    check it against the range :data:`~..core.bounds.BOUNDS` gives *key*."""
    what = {int: "a whole number", float: "a number", parse_rate: "a rate", parse_size: "a size"}.get(
        convert, "a value"
    )

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError as exc:
            detail = f" ({exc})" if convert in (parse_rate, parse_size) else ""
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}{detail}") from None
        try:
            return check(key, value)
        except ConfigError:
            raise argparse.ArgumentTypeError(f"must be {BOUNDS[key].describe()}, not {text!r}") from None

    parse.__name__ = key  # what argparse names in "invalid <name> value"
    return parse


def add_pull_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--insecure``, ``--mirror``, ``--connections``, ``--max-connections``, ``--max-rate``,
    ``--stall-timeout``: unset flags fall back to the config file, then to the defaults."""
    p.add_argument(
        "--insecure", action="store_true", default=None, help="plain http for the registry (as ollama pull --insecure)"
    )
    p.add_argument(
        "--mirror",
        action="append",
        dest="mirrors",
        metavar="URL",
        help="a registry mirror to try first (repeatable, in order), e.g. http://mirror:8080",
    )
    p.add_argument(
        "--connections",
        type=bounded("connections"),
        metavar="N",
        help=f"range requests per blob, 1-256 (default {DEFAULTS.connections})",
    )
    p.add_argument(
        "--max-connections",
        type=bounded("max_connections"),
        metavar="N",
        help=f"requests across all blobs and models, 1-4096 (default {DEFAULTS.max_connections})",
    )
    p.add_argument(
        "--max-rate",
        type=bounded("max_rate", parse_rate),
        metavar="RATE",
        help="bandwidth cap, e.g. 50M (bytes/s) or 400Mbit (default: none)",
    )
    p.add_argument(
        "--stall-timeout",
        type=bounded("stall_timeout", float),
        metavar="S",
        help=f"retry a request after S seconds without a byte (default {DEFAULTS.stall_timeout:g})",
    )


def pull_options(
    args: argparse.Namespace,
    config: Config | None = None,
    *,
    progress: ProgressCallback | None = None,
    trust: TrustLike = None,
) -> PullOptions:
    """The pull options of a command: each flag given, else the config file's key, else left out (so
    :class:`~..pulling.options.PullSettings` fills in its default). A command that lacks a flag
    (``create`` has only ``--insecure``) takes the config file's value for it. *progress* (the
    renderer) and *trust* (``--trust``, see ``cli/provenance``) join them when given.

    Raises:
        ConfigError: a value out of range (the flags are checked as they are parsed; this checks the rest).
    """
    given = {
        "insecure": getattr(args, "insecure", None),
        "mirrors": getattr(args, "mirrors", None),
        "connections": getattr(args, "connections", None),
        "max_connections": getattr(args, "max_connections", None),
        "max_rate": getattr(args, "max_rate", None),
        "stall_timeout": getattr(args, "stall_timeout", None),
    }
    chosen = {k: v for k, v in given.items() if v is not None and v is not False and v != []}
    from_config = config.pull_options() if config is not None else PullOptions()
    options = cast(PullOptions, {**from_config, **chosen})
    if progress is not None:
        options["progress"] = progress
    if trust is not None:
        options["trust"] = trust
    PullSettings.of(options)
    return options
