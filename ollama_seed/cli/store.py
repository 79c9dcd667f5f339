"""CLI: ``pull``, ``list``, ``show``, ``cp``, ``verify``, ``rm``, ``prune``."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError, IntegrityError, SeedError
from ..core.progress import human_bytes, human_duration, human_size
from ..core.reference import ModelName
from ..store.store import ModelStore
from .options import add_pull_options
from .render import add_progress, rendering
from .where import add_store_options, describe

if TYPE_CHECKING:
    from ..pulling.session import PullResult

__all__ = ["add_common", "register"]


def add_common(p: argparse.ArgumentParser, *, reads_only: bool = False) -> None:
    """``--models-dir`` and ``--config`` (see cli/where); *reads_only*: a named directory must exist."""
    add_store_options(p, reads_only=reads_only)


def add_pull_flags(p: argparse.ArgumentParser) -> None:
    add_pull_options(p)
    p.add_argument("--json", action="store_true", help="NDJSON progress on stdout, shaped like Ollama's /api/pull")
    add_progress(p)


def register(sub: Any) -> None:
    p = sub.add_parser("pull", help="pull models from their registry into the store")
    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="a model as Ollama names it: gpt-oss:20b, user/model, registry.lan:5000/ns/model:tag, "
        "optionally pinned with @sha256:<manifest digest>",
    )
    add_common(p)
    add_pull_flags(p)
    from .provenance import add_trust_options

    add_trust_options(p)
    p.set_defaults(
        func=cmd_pull,
        network=lambda args: ("pull", "check what is on disk with 'ollama-seed ensure --offline NAME'"),
    )

    p = sub.add_parser("list", aliases=["ls"], help="list the models in the store (as ollama list)")
    add_common(p, reads_only=True)
    p.add_argument("--json", action="store_true", help="one JSON array on stdout, entries as Ollama's /api/tags")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="layers, media types, sizes and digests of a model")
    p.add_argument("name", metavar="NAME", help="a model in the store (matched without regard to case)")
    add_common(p, reads_only=True)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("cp", help="copy a model to another name (as ollama cp: the manifest only, no blob copied)")
    p.add_argument("source", metavar="SRC", help="a model in the store")
    p.add_argument("destination", metavar="DST", help="the new name (an existing DST is replaced, as ollama cp)")
    add_common(p, reads_only=True)
    p.set_defaults(func=cmd_cp)

    p = sub.add_parser(
        "verify",
        help="re-hash every blob of the named models (default: all); with --signature, check them against it",
        description="With --signature FILE (an OpenSSF Model Signing signature from 'ollama-seed sign', "
        "'export --sign' or 'model_signing sign'), also check that a key or CA you trust made it and that it "
        "covers each model as it is; a signature that verified is kept in the store, for 'ensure "
        "--require-signature' and 'serve'.",
    )
    p.add_argument(
        "names", nargs="*", metavar="NAME", help="a model in the store (default: all, or all the signature covers)"
    )
    add_common(p, reads_only=True)
    p.add_argument("--signature", metavar="FILE", help="an OMS signature (Sigstore bundle JSON) over the models")
    from .provenance import add_trust_options

    add_trust_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("rm", help="remove models; blobs another model uses are kept")
    p.add_argument("names", nargs="+", metavar="NAME", help="a model in the store")
    add_common(p, reads_only=True)
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser(
        "prune",
        help="remove unreferenced blobs, abandoned partial downloads, and caches and signature records of what is gone",
    )
    add_common(p, reads_only=True)
    p.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        metavar="S",
        help="keep unreferenced blobs younger than S seconds (default 3600, as Ollama)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, and remove nothing")
    p.set_defaults(func=cmd_prune)


def cmd_pull(args: argparse.Namespace) -> int:
    from ..pulling.api import apull_all  # httpx and anyio load only for commands that use the network
    from ..startup.config import load_config
    from ..wire.sync import run_sync
    from .gcpause import resume
    from .options import pull_options
    from .provenance import trust_from

    resume()

    names = list(dict.fromkeys(ModelName.parse(n) for n in args.names))
    with rendering("json" if args.json else args.progress, interval=args.progress_interval) as renderer:
        started = time.monotonic()
        config = load_config(args.config, required=args.config is not None)
        options = pull_options(args, config, progress=renderer, trust=trust_from(args, config=config))
        results: list[PullResult] = run_sync(apull_all, names, models_dir=args.models_dir, **options)
    wall = time.monotonic() - started
    down, reused = sum(r.bytes_downloaded for r in results), sum(r.bytes_reused for r in results)
    rate = down / wall if wall > 0 else 0.0
    if args.json:
        # the stream ends with "success" as Ollama's does; this last one carries the summary
        print(
            json.dumps(
                {
                    "status": "success",
                    "summary": True,
                    "models": [r.name.display for r in results],
                    "sources": [r.source for r in results],
                    "bytes_downloaded": down,
                    "bytes_reused": reused,
                    "elapsed": round(wall, 3),
                    "rate": round(rate),
                }
            ),
            flush=True,
        )
        return 0
    for r in results:
        print(
            f"{r.name.display}: {r.manifest_digest.hex[:12]}, {len(r.layers)} blobs, "
            f"{human_size(r.bytes_downloaded)} downloaded, {human_size(r.bytes_reused)} reused, "
            f"from {r.source}, {human_duration(r.elapsed)}" + (f", signed by {r.signer}" if r.signer else ""),
            file=sys.stderr,
        )
    print(
        f"pulled {len(results)} model(s): {human_size(down)} downloaded, {human_size(reused)} reused, "
        f"in {human_duration(wall)} ({human_size(rate)}/s)",
        file=sys.stderr,
    )
    return 0


def _unreadable(store: ModelStore) -> list[tuple[str, str]]:
    """``(name, what to do)`` for each manifest file that cannot be read (torn by a power cut, or
    Ollama's, which it writes without a sync)."""
    out = []
    for item in store.iter_models():
        if isinstance(item, tuple):
            path, problem = item
            name = store.layout.name_for_manifest_path(path)
            label = name.display if name is not None else str(path)
            out.append((label, f"the manifest {path} cannot be read ({problem}); 'ollama-seed rm {label}' removes it"))
    return out


def cmd_list(args: argparse.Namespace) -> int:
    store = ModelStore(args.models_dir)
    models = store.list_models()
    for _, note in _unreadable(store):
        print(f"ollama-seed: note: {note}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": m.name.display,
                        "model": m.name.display,
                        "digest": m.manifest.digest.hex,
                        "size": m.manifest.total_size,
                        "modified": m.modified,
                        "modified_at": _rfc3339(m.modified),
                    }
                    for m in models
                ]
            )
        )
        return 0
    now = time.time()
    width = max([len(m.name.display) for m in models] + [40])
    print(f"{'NAME':<{width}}    {'ID':<12}    {'SIZE':<10}    MODIFIED")
    for m in models:
        size, ago = human_bytes(m.manifest.total_size), human_ago(now - m.modified)
        print(f"{m.name.display:<{width}}    {m.manifest.digest.hex[:12]:<12}    {size:<10}    {ago}")
    missing = "" if store.root.is_dir() else ", which does not exist yet"
    print(f"{len(models)} model(s) in {describe(args)}{missing}", file=sys.stderr)
    return 0


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat()


def human_ago(seconds: float) -> str:
    """How long ago, in the words ``ollama list`` uses for MODIFIED (Ollama's ``format.HumanTime``)."""
    if int(int(int(seconds / 3600) / 24) / 365) < -20:  # Go's int(delta.Hours())/24/365, truncating
        return "Forever"
    if seconds < 0:
        return _duration(-seconds) + " from now"
    return _duration(seconds) + " ago"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    minutes = int(seconds // 60)
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # Go's math.Round on positive values
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"  # Go: int(d.Hours())/24/365, not rounded


def cmd_show(args: argparse.Namespace) -> int:
    model = ModelStore(args.models_dir).get(ModelName.parse(args.name))
    m = model.manifest
    if args.json:
        print(
            json.dumps(
                {
                    "name": model.name.display,
                    "digest": str(m.digest),
                    "path": str(model.path),
                    "layers": [
                        {"mediaType": lay.media_type, "digest": str(lay.digest), "size": lay.size}
                        for lay in (*m.layers, *([m.config] if m.config else []))
                    ],
                }
            )
        )
        return 0
    print(f"{model.name.display}  ({m.digest})\n  manifest: {model.path}\n  models directory: {describe(args)}")
    for layer in (*m.layers, *([m.config] if m.config else [])):
        print(f"  {layer.kind:<10} {layer.digest}  {layer.size:>14}  {layer.media_type}")
    return 0


def cmd_cp(args: argparse.Namespace) -> int:
    ModelStore(args.models_dir).copy(ModelName.parse(args.source), ModelName.parse(args.destination))
    print(f"copied '{args.source}' to '{args.destination}'")  # Ollama's own words
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.signature is not None or args.trust or args.trust_ca:
        return _verify_signed(args)
    store = ModelStore(args.models_dir)
    names = [ModelName.parse(n) for n in args.names] or [m.name for m in store.list_models()]
    report: list[dict[str, Any]] = []
    damaged: list[str] = []
    failed: list[SeedError] = []
    torn = [] if args.names else _unreadable(store)  # no names: every manifest, readable or not
    for label, note in torn:
        report.append({"name": label, "ok": False, "error": f"{note}, then pull it again"})
    for name in names:
        try:
            problems = store.verify(name)
        except SeedError as exc:
            report.append({"name": name.display, "ok": False, "error": str(exc)})
            failed.append(exc)
            continue
        if problems:
            damaged.append(name.display)
        report.append(
            {
                "name": name.display,
                "ok": not problems,
                "problems": [{"digest": str(p.layer.digest), "problem": p.problem} for p in problems],
            }
        )
    if args.json:
        print(json.dumps(report))
    else:
        for item in report:
            status = "ok" if item["ok"] else "BAD"
            print(f"{item['name']}: {status}")
            for p in item.get("problems", []):
                print(f"  {p['digest']}: {p['problem']}")
            if "error" in item:
                print(f"  {item['error']}")
    if torn and not damaged:
        raise IntegrityError(
            f"{len(torn)} manifest(s) cannot be read; remove them with 'ollama-seed rm' and pull again"
        )
    if damaged:
        where = f" --models-dir {args.models_dir}" if args.models_dir else ""
        raise IntegrityError(
            f"{len(damaged)} model(s) failed verification; to fetch only the damaged blobs again, run: "
            f"ollama-seed pull{where} {' '.join(damaged)} (a pull re-hashes the blobs verify found damaged; "
            "without a registry, import a bundle that carries them)"
        )
    if failed:  # not there (exit 3), or a manifest that cannot be read: the first one's own code
        raise failed[0]
    return 0


def _verify_signed(args: argparse.Namespace) -> int:
    from ..pulling.provenance import verify_models
    from ..wire.trust import Trust
    from .provenance import trust_from

    if args.signature is None:
        raise ConfigError("--trust and --trust-ca check a signature: give it with --signature FILE")
    trust = trust_from(args, require=True)
    if not isinstance(trust, Trust):
        raise ConfigError("verify --signature needs the keys or CAs to trust: --trust PUBLIC_KEY or --trust-ca CA_CERT")
    result = verify_models(args.signature, trust, args.names, models_dir=args.models_dir)
    if args.json:
        print(json.dumps([{"name": n.display, "ok": True, "signer": str(result.signer)} for n in result.models]))
    else:
        for name in result.models:
            print(f"{name.display}: ok, signed by {result.signer}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = ModelStore(args.models_dir)
    for text in args.names:
        removed = store.remove(ModelName.parse(text))
        print(f"deleted '{text}' ({len(removed)} blobs removed)")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from ..store.locks import staging_in_use

    store = ModelStore(args.models_dir)
    report = store.prune(grace_seconds=args.grace, staging_in_use=staging_in_use(store), dry_run=args.dry_run)
    if report.skipped_reason:
        print(f"blobs kept: {report.skipped_reason}", file=sys.stderr)
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {len(report.removed_blobs)} unreferenced blobs ({report.removed_bytes} bytes) "
        f"and {len(report.removed_staging)} abandoned staging files"
    )
    if args.dry_run:
        print("".join(f"  blob {d}\n" for d in report.removed_blobs), end="")
        print("".join(f"  staging {n}\n" for n in report.removed_staging), end="")
    state = report.state
    if state is not None and (state.layer_entries or state.scratch_files or state.signatures):
        print(
            f"{verb} {state.layer_entries} image-layer digests of removed blobs, {state.scratch_files} files of "
            f"abandoned image downloads ({state.scratch_bytes} bytes) and the signature records of "
            f"{len(state.signatures)} manifests no longer in the store"
        )
        if args.dry_run:
            print("".join(f"  signatures of {d}\n" for d in state.signatures), end="")
    return 0
