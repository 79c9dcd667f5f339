"""CLI: ``create NAME -f Modelfile``: a model from a Modelfile and local GGUFs, no Ollama server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .render import add_progress, rendering
from .store import add_common

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "create",
        help="create a model from a Modelfile and local GGUF files, straight into the store",
        description="Create NAME from a Modelfile as 'ollama create NAME -f Modelfile' does, writing the layers, "
        "config and manifest into the models directory itself: no Ollama server. FROM names a GGUF "
        "file (or a folder of them) relative to the Modelfile, or a model (pulled first if missing).",
    )
    p.add_argument("name", metavar="NAME", help="the model to create, e.g. my-assistant or my-assistant:v2")
    p.add_argument(
        "-f", "--file", default="Modelfile", metavar="MODELFILE", help="the Modelfile (default: ./Modelfile)"
    )
    add_common(p)
    p.add_argument("--no-pull", action="store_true", help="fail instead of pulling a FROM model that is missing")
    p.add_argument(
        "--offline",
        action="store_true",
        help="never touch the network (implies --no-pull; also OLLAMA_SEED_OFFLINE=1)",
    )
    p.add_argument(
        "--insecure", action="store_true", default=None, help="plain http to the registry of a FROM model pulled first"
    )
    p.add_argument(
        "--template-from",
        metavar="MODEL",
        help="use this stored model's template and params when the GGUF has a chat template and the "
        "Modelfile no TEMPLATE (ollama-seed does not ship Ollama's template library)",
    )
    p.add_argument(
        "--era",
        choices=["current", "rewrite", "classic"],
        default="current",
        help="whose 'ollama create' to write like: current (v0.32.7+, default), rewrite (v0.30-0.32.6), "
        "classic (v0.7-0.24); every era's Ollama reads all three",
    )
    p.add_argument("--json", action="store_true", help="NDJSON progress and the result as JSON on stdout")
    add_progress(p)
    p.set_defaults(func=cmd_create)


def cmd_create(args: argparse.Namespace) -> int:
    from ..creation.api import CreateResult, acreate
    from ..creation.config import Era
    from ..startup.config import load_config
    from ..wire.sync import run_sync
    from .gcpause import resume
    from .options import pull_options

    resume()

    from ..startup.local import offline_from_env

    offline = args.offline or offline_from_env()
    with rendering("json" if args.json else args.progress, interval=args.progress_interval) as renderer:
        result: CreateResult = run_sync(
            acreate,
            args.name,
            args.file,
            models_dir=args.models_dir,
            pull=not (args.no_pull or offline),
            offline=offline,
            template_from=args.template_from,
            era=Era(args.era),
            **pull_options(args, load_config(args.config, required=args.config is not None), progress=renderer),
        )
    for warning in result.warnings:
        print(f"ollama-seed: warning: {warning.removeprefix('warning: ')}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "status": "success",
                    "model": result.name.display,
                    "digest": str(result.manifest_digest),
                    "unchanged": result.unchanged,
                    "layers": result.layers,
                    "bytes_copied": result.bytes_copied,
                    "bytes_reused": result.bytes_reused,
                    "warnings": list(result.warnings),
                }
            )
        )
    else:
        how = "unchanged (already created from these files)" if result.unchanged else "created"
        print(
            f"{result.name.display}: {how}, {result.manifest_digest.hex[:12]}, {result.layers} layers, "
            f"{result.bytes_copied} bytes copied, {result.bytes_reused} already in the store",
            file=sys.stderr,
        )
    return 0
