"""CLI: ``ensure`` (models ready, or exit non-zero) and ``wait`` (an Ollama server answers).

``ollama-seed ensure`` with no names ensures the ``models`` of the config file (see
:mod:`startup.config`); flags override the file's settings. Exit 0 only when every model is ready.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..core.errors import ConfigError
from ..core.progress import ProgressEvent, human_duration, human_size
from .options import add_pull_options, bounded, pull_options
from .render import add_progress

__all__ = ["cmd_ensure", "cmd_wait", "register"]


def _keep_alive(text: str) -> str | float:
    """Ollama takes a number of seconds or a Go duration (``10m``, ``1h``); ``-1`` keeps it loaded."""
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        return text


def register(sub: Any) -> None:
    p = sub.add_parser(
        "ensure",
        help="make models ready: return at once if complete on disk, else pull only what is missing",
        description="Exit 0 only when every named model is ready. With no NAME, ensure the models listed in "
        "the config file.",
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="a model to have ready (as 'pull' names them); none: the models of the config file",
    )
    p.add_argument(
        "--modelfile",
        action="append",
        default=[],
        type=_modelfile,
        metavar="NAME=PATH",
        help="a model made from a Modelfile and the GGUFs it names (repeatable): created when missing, "
        "created again only when the Modelfile or a file it names changed",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $OLLAMA_SEED_CONFIG, else config.toml in the user config dir)",
    )
    p.add_argument(
        "--models-dir",
        metavar="DIR",
        help="the Ollama models directory (default: $OLLAMA_MODELS, else ~/.ollama/models)",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        help="an Ollama server that must see the models (any OLLAMA_HOST form; default $OLLAMA_HOST when needed)",
    )
    p.add_argument(
        "--via-server",
        action="store_true",
        help="have the server pull (/api/pull): for containers without the models volume",
    )
    p.add_argument(
        "--wait-timeout",
        type=bounded("wait_timeout", float),
        default=60.0,
        metavar="S",
        help="wait up to S seconds for the server to answer (default 60)",
    )
    p.add_argument("--warm", action="store_true", help="load each model into the server's memory")
    p.add_argument(
        "--keep-alive",
        type=_keep_alive,
        metavar="DURATION",
        help="how long a warmed model stays loaded (10m, 1h, -1 for ever; default: the server's)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        default=None,
        help="never contact a registry; fail at once naming what is missing (also OLLAMA_SEED_OFFLINE=1)",
    )
    p.add_argument("--verify", action="store_true", help="re-hash every blob on disk; fetch corrupt ones again")
    p.add_argument(
        "--update",
        action="store_true",
        help="ask the registry for the tag's current manifest and fetch only changed layers",
    )
    p.add_argument("--timeout", type=bounded("timeout", float), metavar="S", help="give up after S seconds overall")
    p.add_argument(
        "--require-signature",
        action="store_true",
        help="every model needs a signature by a key or CA you trust (--trust/--trust-ca, else the config file's "
        "[[trust]] rules, all enforced): checked before a pull writes anything; a model on disk by the signatures "
        "the store keeps, else its registry's; exit 13 when one has none",
    )
    from .provenance import add_trust_options

    add_trust_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    add_progress(p)
    add_pull_options(p)
    p.set_defaults(func=cmd_ensure)

    w = sub.add_parser(
        "wait",
        help="wait until an Ollama server answers",
        description="Poll the server with backoff; exit 0 when it answers, 11 on timeout.",
    )
    w.add_argument("--server", metavar="URL", help="the server (any OLLAMA_HOST form; default $OLLAMA_HOST)")
    w.add_argument(
        "--timeout",
        type=bounded("timeout", float),
        default=60.0,
        metavar="S",
        help="give up after S seconds (default 60)",
    )
    w.add_argument("--json", action="store_true", help="print one JSON line on stdout")
    w.set_defaults(func=cmd_wait)


def _modelfile(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"not NAME=PATH: {text!r} (example: my-assistant=/models/Modelfile)")
    return name.strip(), path.strip()


def cmd_ensure(args: argparse.Namespace) -> int:
    from ..core.reference import ModelName
    from ..core.trustpolicy import TrustPolicy
    from ..startup.config import load_config
    from ..startup.fast_path import ensure
    from .gcpause import resume
    from .provenance import trust_from
    from .render import make_renderer

    resume()

    started = time.monotonic()
    config = load_config(args.config, required=args.config is not None)
    modelfiles = dict(args.modelfile) if (args.names or args.modelfile) else dict(config.modelfiles)
    names = list(args.names) or ([] if args.modelfile else list(config.models))
    if not names and not modelfiles:
        where = config.path or args.config or _default_path()
        raise ConfigError(
            f"no models to ensure: name them (ollama-seed ensure llama3.2:1b) or list them in "
            f'{where} as models = ["llama3.2:1b"]'
        )
    trust = trust_from(args, require=args.require_signature, config=config)
    if args.require_signature and isinstance(trust, TrustPolicy):
        for name in names:  # every model needs a rule that names whom to trust
            trust.require_for(ModelName.parse(name))
    renderer = _LazyRenderer(lambda: make_renderer(args.progress, sys.stderr, interval=args.progress_interval))
    try:
        reports = ensure(
            names,
            models_dir=args.models_dir or config.models_dir,
            verify=args.verify,
            update=args.update,
            offline=args.offline,
            timeout=args.timeout,
            server=args.server,
            via_server=args.via_server,
            wait_timeout=args.wait_timeout,
            warm=args.warm,
            keep_alive=args.keep_alive,
            modelfiles=modelfiles,
            **pull_options(args, config, progress=renderer, trust=trust),
        )
    finally:
        renderer.close()
    if args.json:
        print(json.dumps({"ok": True, "models": [r.to_dict() for r in reports]}))
        return 0
    for r in reports:
        extra = ""
        if r.server:
            extra = f", {'pulled by' if r.via_server and r.fetched else 'seen by'} {r.server}"
            extra += ", loaded" if r.warmed else ""
        if r.source:
            extra += f", from {r.source}"
        if r.signer:
            extra += f", signed by {r.signer}"
        print(f"{r.model}: {r.status} ({human_size(r.bytes_fetched)} fetched, {r.elapsed:.2f} s{extra})")
    wall = time.monotonic() - started
    fetched = sum(r.bytes_fetched for r in reports)
    if fetched:  # a summary for the logs when something was fetched (a ready start-up stays one line per model)
        print(
            f"ensured {len(reports)} model(s): {human_size(fetched)} fetched in {human_duration(wall)} "
            f"({human_size(fetched / wall if wall > 0 else 0)}/s)"
        )
    return 0


class _LazyRenderer:
    """Creates the progress display on the first event: a run with nothing to fetch draws nothing."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._renderer: Any = None
        self._made = False

    def __call__(self, event: ProgressEvent) -> None:
        if not self._made:
            self._renderer, self._made = self._make(), True
        if self._renderer is not None:
            self._renderer(event)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()


def _default_path() -> str:
    from ..startup.config import default_config_path

    return str(default_config_path())


def cmd_wait(args: argparse.Namespace) -> int:
    from ..startup.server import wait_ready

    info = wait_ready(args.server, timeout=args.timeout)  # a failure: main() prints it (as JSON too with --json)
    if args.json:
        print(json.dumps({"ok": True, "url": info.url, "version": info.version, "waited": round(info.waited, 3)}))
    else:
        version = f" (ollama {info.version})" if info.version else ""
        print(f"ready: {info.url}{version} after {info.waited:.1f} s")
    return 0
