"""CLI: ``serve`` (the store as a read-only registry, optionally pull-through) and ``push``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..core.groups import collapse
from ..core.progress import LayerProgress, ProgressEvent, Status

# The server (uvicorn) is imported inside its handler: other subcommands start faster.
from ..core.units import parse_size
from ..store.store import ModelStore
from .logjson import JsonFormatter
from .options import bounded
from .store import add_common

__all__ = ["register"]


def _limit(text: str) -> int:
    """``--limit-concurrency``: 0 for no limit, else in the range of ``limit_concurrency``."""
    return 0 if text.strip() == "0" else int(bounded("limit_concurrency")(text))


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 32M, 64Mi, 1G)") from None


def _failures(text: str) -> tuple[int, float]:
    count, _, seconds = text.partition("/")
    try:
        n, window = int(count), float(seconds or 60)
    except ValueError:
        n, window = 0, 0.0
    if n < 1 or not window > 0:
        raise argparse.ArgumentTypeError(f"not N or N/SECONDS with N at least 1: {text!r} (example: 10/60)")
    return n, window


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the store as a read-only registry (for ollama-seed and 'ollama pull --insecure')",
        description="Serve the models directory as a Docker Registry v2 API (GET/HEAD only). Stock Ollama pulls "
        "with 'ollama pull --insecure HOST:PORT/library/MODEL:TAG'; ollama-seed with "
        "'ollama-seed pull --insecure ...' or '--mirror http://HOST:PORT'.",
    )
    add_common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for a LAN)")
    p.add_argument("--port", type=bounded("port"), default=8080, help="port to listen on, 0-65535 (default 8080)")
    p.add_argument(
        "--upstream",
        metavar="URL",
        help="pull-through: fetch what the store lacks from this registry, e.g. https://registry.ollama.ai",
    )
    p.add_argument(
        "--redirect-blobs-to",
        default="auto",
        metavar="auto|off|URL",
        help="where blob GETs of stock Ollama are sent with a 307 (it needs one to another host name): "
        "auto (default) = another name of the address the client used; URL = another name of "
        "this server for every client, e.g. http://10.0.0.5:8080; off = never",
    )
    p.add_argument(
        "--registry-host",
        action="append",
        default=[],
        metavar="HOST",
        help="look <ns>/<model> up under this registry host of the store (repeatable, in order; "
        "default: the upstream's host, registry.ollama.ai, then every other)",
    )
    p.add_argument(
        "--connections",
        type=bounded("connections"),
        default=16,
        metavar="N",
        help="range requests per blob fetched from the upstream (default 16)",
    )
    p.add_argument(
        "--stall-timeout",
        type=bounded("stall_timeout", float),
        default=30.0,
        metavar="S",
        help="retry an upstream request after S seconds without a byte (default 30)",
    )
    p.add_argument(
        "--upstream-private-redirects",
        action="store_true",
        help="let the upstream redirect the pull-through to loopback, link-local and private addresses "
        "(refused by default)",
    )
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default) or one JSON object a line, access-log fields included",
    )
    site = p.add_argument_group("running it for a site")
    site.add_argument("--tls-cert", metavar="FILE", help="serve https with this PEM certificate (chain after it)")
    site.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    site.add_argument(
        "--htpasswd",
        metavar="FILE",
        help="readers log in (HTTP Basic) as a user of this htpasswd file (bcrypt: 'htpasswd -B')",
    )
    site.add_argument(
        "--token-file",
        metavar="FILE",
        help="or with a static bearer token: USER:TOKEN lines (TOKEN may be sha256:<hex of it>)",
    )
    site.add_argument(
        "--access",
        metavar="FILE",
        help='TOML [read] table: user = ["glob", ...] repositories each user may read; others answer 404',
    )
    site.add_argument("--metrics-auth", action="store_true", help="/metrics needs a login too")
    site.add_argument(
        "--max-cache-size",
        type=bounded("max_cache_size", parse_size),
        metavar="SIZE",
        help="with --upstream: keep the store's blobs under SIZE (e.g. 200G) by evicting "
        "pulled-through models, least recently served first",
    )
    site.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="NAME",
        help="never evict this model (repeatable); models in the store before are never evicted",
    )
    site.add_argument(
        "--limit-concurrency",
        type=_limit,
        default=1024,
        metavar="N",
        help="connections open at once; a new one closes the longest idle, and when all are answering requests "
        "it is answered 503 (default 1024; 0 = no limit)",
    )
    site.add_argument(
        "--max-header-size",
        type=bounded("max_header_size", parse_size),
        default=16 * 1024,
        metavar="SIZE",
        help="a request head still incomplete past SIZE is refused (default 16Ki)",
    )
    site.add_argument(
        "--header-timeout",
        type=bounded("header_timeout", float),
        default=10.0,
        metavar="S",
        help="a request head (and TLS handshake) must arrive within S seconds, else the connection is closed "
        "(default 10)",
    )
    site.add_argument(
        "--write-timeout",
        type=bounded("write_timeout", float),
        default=60.0,
        metavar="S",
        help="a response that cannot send a byte for S seconds (the client stopped reading) is abandoned (default 60)",
    )
    site.add_argument(
        "--keep-alive",
        type=bounded("keep_alive", float),
        default=30.0,
        metavar="S",
        help="close a connection idle S seconds between requests (default 30)",
    )
    site.add_argument(
        "--login-failures",
        type=_failures,
        default=(10, 60.0),
        metavar="N[/S]",
        help="past N failed logins in S seconds for an address and user, answer 429 without a check "
        "(default 10/60; 5 x N per address and per user)",
    )
    site.add_argument(
        "--shutdown-timeout",
        type=bounded("shutdown_timeout", float),
        default=30.0,
        metavar="S",
        help="on SIGTERM, seconds the responses in flight may take to finish (default 30)",
    )
    p.set_defaults(func=cmd_serve, network=_serve_network)

    p = sub.add_parser("push", help="push a stored model into a registry (Docker Distribution, Harbor, zot, ...)")
    p.add_argument("name", metavar="NAME", help="the model in the store")
    p.add_argument(
        "target", metavar="REGISTRY/NS/MODEL:TAG", help="where to push it, e.g. registry.lan:5000/ai/llama:8b"
    )
    add_common(p)
    p.add_argument("--insecure", action="store_true", help="plain http to the registry")
    p.add_argument(
        "--chunk-size",
        type=_size,
        default=32 * 1024 * 1024,
        metavar="SIZE",
        help="blobs up to SIZE go in one PUT, larger ones in PATCH chunks of SIZE (default 32Mi)",
    )
    p.add_argument(
        "--mount-from",
        action="append",
        default=[],
        metavar="REPO",
        help="a repository on the same registry to mount blobs from when it has them (repeatable)",
    )
    p.add_argument(
        "--concurrency",
        type=bounded("concurrency"),
        default=3,
        metavar="N",
        help="blobs pushed at once, 1-64 (default 3)",
    )
    from .provenance import add_key_options

    add_key_options(p, "--sign")
    p.add_argument(
        "--cosign-legacy",
        action="store_true",
        help="with --sign, also write cosign v2's sha256-<hex>.sig simple signing (for cosign 2, older Kyverno)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(
        func=cmd_push,
        network=lambda args: (f"push {args.target}", "carry the model in a bundle ('ollama-seed export NAME -o FILE')"),
    )


def _serve_network(args: argparse.Namespace) -> tuple[str, str] | None:
    """Only the pull-through goes to the network: without ``--upstream`` serve reads the store."""
    if not args.upstream:
        return None
    return f"serve --upstream {args.upstream}", "leave out --upstream to serve only what the store holds"


def cmd_serve(args: argparse.Namespace) -> int:
    import anyio

    from ..mirror.factory import create_app
    from ..mirror.serve import ServeInfo, aserve
    from ..wire.sync import run_sync
    from .gcpause import resume

    resume()

    mirror_log = logging.getLogger("ollama_seed.mirror")
    mirror_log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    logging.getLogger("ollama_seed.mirror.auth").setLevel(logging.INFO)  # failed logins even with --quiet
    if args.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    logins = bool(args.htpasswd or args.token_file)

    def announce(info: ServeInfo) -> None:
        """Said once the socket listens, with the port it really has."""
        shown = info.url.split("://", 1)[1]
        lines = [
            f"ollama-seed: serving {store.root} on {info.url}"
            + (f", pulling through from {args.upstream}" if args.upstream else "")
            + (", logins required" if logins else "")
        ]
        if not logins:  # stock Ollama cannot log in: suggest it only for an open mirror
            lines.append(f"  ollama pull{'' if info.scheme == 'https' else ' --insecure'} {shown}/library/MODEL:TAG")
        lines.append(f"  ollama-seed pull --mirror {info.url} MODEL:TAG")
        print("\n".join(lines), file=sys.stderr)
        if not args.upstream and next(iter(store.iter_models()), None) is None:
            print(
                f"ollama-seed: warning: {store.root} holds no models yet; pull some into it, or use --upstream",
                file=sys.stderr,
            )

    store = ModelStore(args.models_dir)
    app = create_app(
        args.models_dir,
        upstream=args.upstream,
        redirect_blobs_to=args.redirect_blobs_to,
        hosts=args.registry_host or None,
        connections=args.connections,
        stall_timeout=args.stall_timeout,
        htpasswd=args.htpasswd,
        token_file=args.token_file,
        access=args.access,
        metrics_auth=args.metrics_auth,
        max_cache_size=args.max_cache_size,
        keep=args.keep,
        login_failures=args.login_failures,
        upstream_private_redirects=args.upstream_private_redirects,
    )

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            info = await tg.start(
                lambda task_status: aserve(
                    app,
                    host=args.host,
                    port=args.port,
                    tls_cert=args.tls_cert,
                    tls_key=args.tls_key,
                    limit_concurrency=args.limit_concurrency or None,
                    max_header_size=args.max_header_size,
                    header_timeout=args.header_timeout,
                    keep_alive=args.keep_alive,
                    write_timeout=args.write_timeout,
                    shutdown_timeout=args.shutdown_timeout,
                    handle_signals=True,
                    task_status=task_status,
                )
            )
            announce(info)

    try:
        run_sync(run)
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
    from ..core.errors import ConfigError
    from ..mirror.push import PushResult, apush
    from ..wire.sync import run_sync
    from .gcpause import resume
    from .provenance import load_key

    resume()
    key = load_key(args)
    if args.cosign_legacy and key is None:
        raise ConfigError("--cosign-legacy is a signature format: give the key to sign with, --sign KEY")

    try:
        result: PushResult = run_sync(
            apush,
            args.name,
            args.target,
            models_dir=args.models_dir,
            insecure=args.insecure,
            chunk_size=args.chunk_size,
            mount_from=args.mount_from,
            concurrency=args.concurrency,
            progress=None if args.json else _PushLines(),
            sign=key,
            cosign_legacy=args.cosign_legacy,
        )
    except BaseException as exc:
        raise collapse(exc) from None
    if args.json:
        print(
            json.dumps(
                {
                    "source": result.source.display,
                    "target": str(result.target),
                    "digest": str(result.manifest_digest),
                    "uploaded": [str(d) for d in result.uploaded],
                    "mounted": [str(d) for d in result.mounted],
                    "existing": [str(d) for d in result.existing],
                    "bytes_uploaded": result.bytes_uploaded,
                    "signatures": [str(d) for d in result.signatures],
                    "seconds": round(result.elapsed, 3),
                }
            )
        )
    else:
        print(
            f"{result.target}: {result.manifest_digest.hex[:12]}, {len(result.uploaded)} blobs uploaded "
            f"({result.bytes_uploaded} bytes), {len(result.mounted)} mounted, {len(result.existing)} already there, "
            f"{result.elapsed:.1f} s",
            file=sys.stderr,
        )
        if result.signatures:
            assert key is not None
            print(
                f"{result.target}: signed by {key.public_key.fingerprint} ({len(result.signatures)} signature "
                f"document(s): {', '.join(d.short for d in result.signatures)})",
                file=sys.stderr,
            )
    return 0
