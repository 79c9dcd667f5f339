"""CLI: ``serve`` (the store as a read-only registry, optionally pull-through) and ``push``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..core.groups import collapse
from ..core.progress import LayerProgress, ProgressEvent, Status
from ..store.store import ModelStore

# The server (uvicorn) is imported inside its handler: other subcommands start faster.
from ..wire.throttle import parse_rate
from .store import add_common

__all__ = ["register"]


def _size(text: str) -> int:
    try:
        return int(parse_rate(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 32M, 64Mi, 1G)") from None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="serve the store as a read-only registry (for ollama-seed and 'ollama pull --insecure')",
        description="Serve the models directory as a Docker Registry v2 API (GET/HEAD only). Stock Ollama pulls "
                    "with 'ollama pull --insecure HOST:PORT/library/MODEL:TAG'; ollama-seed with "
                    "'ollama-seed pull --insecure ...' or '--mirror http://HOST:PORT'.")
    add_common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a LAN)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--upstream", metavar="URL",
                   help="pull-through: fetch what the store lacks from this registry, e.g. https://registry.ollama.ai")
    p.add_argument("--redirect-blobs-to", default="auto", metavar="auto|off|URL",
                   help="where blob GETs of stock Ollama are sent with a 307 (it needs one to another host name): "
                        "auto (default) = another name of the address the client used; URL = another name of "
                        "this server for every client, e.g. http://10.0.0.5:8080; off = never")
    p.add_argument("--registry-host", action="append", default=[], metavar="HOST",
                   help="look <ns>/<model> up under this registry host of the store (repeatable, in order; "
                        "default: the upstream's host, registry.ollama.ai, then every other)")
    p.add_argument("--connections", type=int, default=16, metavar="N",
                   help="range requests per blob fetched from the upstream (default 16)")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="S",
                   help="retry an upstream request after S seconds without a byte (default 30)")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("push", help="push a stored model into a registry (Docker Distribution, Harbor, zot, ...)")
    p.add_argument("name", metavar="NAME", help="the model in the store")
    p.add_argument("target", metavar="REGISTRY/NS/MODEL:TAG",
                   help="where to push it, e.g. registry.lan:5000/ai/llama:8b")
    add_common(p)
    p.add_argument("--insecure", action="store_true", help="plain http to the registry")
    p.add_argument("--chunk-size", type=_size, default=32 * 1024 * 1024, metavar="SIZE",
                   help="blobs up to SIZE go in one PUT, larger ones in PATCH chunks of SIZE (default 32Mi)")
    p.add_argument("--mount-from", action="append", default=[], metavar="REPO",
                   help="a repository on the same registry to mount blobs from when it has them (repeatable)")
    p.add_argument("--concurrency", type=int, default=3, metavar="N", help="blobs pushed at once (default 3)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_push)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..mirror.serve import aserve
    from ..wire.sync import run_sync

    mirror_log = logging.getLogger("ollama_seed.mirror")
    mirror_log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    store = ModelStore(args.models_dir)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"ollama-seed: serving {store.root} on http://{shown}:{args.port}"
          + (f", pulling through from {args.upstream}" if args.upstream else "")
          + f"\n  ollama pull --insecure {shown}:{args.port}/library/MODEL:TAG\n"
          f"  ollama-seed pull --mirror http://{shown}:{args.port} MODEL:TAG", file=sys.stderr)
    if not args.upstream and next(iter(store.iter_models()), None) is None:
        print(f"ollama-seed: warning: {store.root} holds no models yet; pull some into it, or use --upstream",
              file=sys.stderr)
    try:
        run_sync(aserve, args.models_dir, host=args.host, port=args.port, upstream=args.upstream,
                 redirect_blobs_to=args.redirect_blobs_to, hosts=args.registry_host or None,
                 connections=args.connections, stall_timeout=args.stall_timeout, handle_signals=True)
    except BaseException as exc:
        raise collapse(exc) from None
    return 0


class _PushLines:
    """One line per blob as it is settled, on stderr."""

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, Status):
            print(f"{event.model}: {event.status}", file=sys.stderr)
        elif isinstance(event, LayerProgress) and event.done:
            how = "already there or mounted" if event.cached else f"uploaded {event.total} bytes"
            print(f"  {event.digest[7:19]}: {how}", file=sys.stderr)


def cmd_push(args: argparse.Namespace) -> int:
    from ..mirror.push import PushResult, apush
    from ..wire.sync import run_sync

    try:
        result: PushResult = run_sync(
            apush, args.name, args.target, models_dir=args.models_dir, insecure=args.insecure,
            chunk_size=args.chunk_size, mount_from=args.mount_from, concurrency=args.concurrency,
            progress=None if args.json else _PushLines())
    except BaseException as exc:
        raise collapse(exc) from None
    if args.json:
        print(json.dumps({
            "source": result.source.display, "target": str(result.target), "digest": str(result.manifest_digest),
            "uploaded": [str(d) for d in result.uploaded], "mounted": [str(d) for d in result.mounted],
            "existing": [str(d) for d in result.existing], "bytes_uploaded": result.bytes_uploaded,
            "seconds": round(result.elapsed, 3)}))
    else:
        print(f"{result.target}: {result.manifest_digest.hex[:12]}, {len(result.uploaded)} blobs uploaded "
              f"({result.bytes_uploaded} bytes), {len(result.mounted)} mounted, {len(result.existing)} already there, "
              f"{result.elapsed:.1f} s", file=sys.stderr)
    return 0
