"""Which models directory a command works on, and where that choice came from.

Every command that reads or writes a store takes ``--models-dir`` and ``--config``, and resolves
the directory the same way, first match wins: ``--models-dir``; ``models_dir`` in the config file
(``--config``, else ``$OLLAMA_SEED_CONFIG``, else ``config.toml`` in the user config directory);
``$OLLAMA_MODELS``; ``~/.ollama/models``. So a config file written for ``ensure`` (an init
container's) points ``list``, ``show``, ``pull``, ``export``, ``serve`` ... at the same store.

A directory that was named (by the flag, the config file or ``OLLAMA_MODELS``) and does not exist
is an error for the commands that only read a store (a typo must not look like an empty store);
the default directory may be missing (nothing was pulled yet).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..core.errors import StoreError
from ..core.layout import default_models_dir

__all__ = ["add_store_options", "describe", "resolve"]


def add_store_options(p: argparse.ArgumentParser, *, reads_only: bool = False) -> None:
    """``--models-dir`` and ``--config``; *reads_only*: the command never creates the store."""
    p.add_argument(
        "--models-dir",
        metavar="DIR",
        help="the Ollama models directory (default: models_dir of the config file, else $OLLAMA_MODELS, "
        "else ~/.ollama/models)",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="the config file whose models_dir to use (default: $OLLAMA_SEED_CONFIG, else config.toml in "
        "the user config directory)",
    )
    p.set_defaults(store_options=True, reads_store_only=reads_only)


def resolve(args: argparse.Namespace) -> None:
    """Fill ``args.models_dir`` (None: OLLAMA_MODELS or the default, as ModelStore resolves it) and
    ``args.models_dir_from``; refuse a named directory that does not exist for a read-only command.

    Raises:
        ConfigError: the config file is unreadable or invalid (exit 2).
        StoreError: a named models directory does not exist (exit 8).
    """
    if not getattr(args, "store_options", False):
        return
    if args.models_dir:
        args.models_dir_from = "--models-dir"
    else:
        from ..startup.config import load_config

        config = load_config(args.config, required=args.config is not None)
        if config.models_dir:
            args.models_dir = config.models_dir
            args.models_dir_from = f"models_dir in {config.path}"
        elif os.environ.get("OLLAMA_MODELS", "").strip():
            args.models_dir_from = "$OLLAMA_MODELS"
        else:
            args.models_dir_from = "the default"
    if args.reads_store_only and args.models_dir_from != "the default":
        root = Path(args.models_dir).expanduser() if args.models_dir else default_models_dir()
        if not root.is_dir():
            raise StoreError(
                f"the models directory {root} (from {args.models_dir_from}) does not exist; check the path "
                "('ollama-seed list' reads ~/.ollama/models unless --models-dir, the config file or "
                "OLLAMA_MODELS names another)"
            )


def describe(args: argparse.Namespace) -> str:
    """``/srv/models (from --models-dir)``: what a listing says it read."""
    root = Path(args.models_dir).expanduser() if args.models_dir else default_models_dir()
    return f"{root} (from {getattr(args, 'models_dir_from', 'the default')})"
