"""CLI: ``export``, ``import``, ``bundle ls``, ``bundle verify``.

The bundle itself may go to stdout (``-o -``), so summaries and progress go to stderr;
``--json`` prints one result document on stdout (not with ``-o -``).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.groups import collapse
from ..core.progress import human_size
from .render import add_progress, rendering
from .store import add_common

if TYPE_CHECKING:
    from ..bundle.api import BundleInfo
    from ..bundle.export import ExportResult
    from ..bundle.importer import ImportResult

# The bundle machinery is imported inside the handlers: other subcommands start faster.

__all__ = ["register"]

_SIGNATURE_HELP = (
    "a detached signature (from export --signature, ollama-seed sign or model_signing sign) to check instead of "
    "the bundle's own; needs --trust or --trust-ca"
)


def _arg(parse: str) -> Callable[[str], Any]:
    """An argparse type calling ``bundle.options.<parse>``, imported only when an option is parsed:
    every command builds this parser, and only export needs it."""

    def convert(text: str) -> Any:
        from ..bundle import options as bundle_options

        try:
            return getattr(bundle_options, parse)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse  # what argparse names in "invalid <name> value"
    return convert


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="write installed models to a bundle for another (air-gapped) host")
    p.add_argument("names", nargs="+", metavar="NAME", help="a model in the store (its blobs shared with others once)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="bundle file, or - for stdout; with --format oci a directory unless FILE ends in .tar; "
        "with --format dir the directory to write the models into",
    )
    p.add_argument(
        "--compress",
        type=_arg("parse_compress"),
        default="auto",
        metavar="auto|none|zstd[:LEVEL]|gzip[:LEVEL]",
        help="auto (default): zstd level 1 when a sample of the weights shrinks by 2%% or more; "
        "gzip (level 1 unless given) for sites whose tools only read gzip",
    )
    p.add_argument(
        "--split-size",
        type=_arg("parse_split_size"),
        metavar="SIZE",
        help="write FILE.000, FILE.001, ... of at most SIZE (4G = 4e9 bytes, 4GiB = 2**32)",
    )
    p.add_argument(
        "--format",
        choices=["ollama", "oci", "dir"],
        default="ollama",
        help="ollama (tar with an index, the default), oci (an OCI image layout) or dir (a plain "
        "models directory, blobs first and manifests last: for rsync)",
    )
    p.add_argument("--no-verify", action="store_true", help="do not re-hash the store's blobs while exporting")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing FILE (and remove the parts FILE.NNN of an older export that this one does not write)",
    )
    from .provenance import add_key_options, add_trust_options

    add_key_options(p, "--sign")
    p.add_argument(
        "--signature",
        metavar="FILE",
        help="with --sign, also write the signature to FILE (detached; --format dir: default DIR/model.sig)",
    )
    add_common(p)
    add_progress(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import", help="install the models of a bundle or another models directory, verifying every blob"
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="a bundle (tar, zstd or gzip: ours, a tar of a models directory, an ollamazip archive), "
        "its first part FILE.000, - for stdin, an OCI layout (directory or tar), or another "
        "Ollama models directory (/mnt/usb/.ollama/models)",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="with a models directory: import only these models")
    p.add_argument(
        "--as",
        dest="as_name",
        metavar="NAME",
        help="install the only model of the bundle under this name (as ollamazip unpack --name)",
    )
    add_trust_options(p)
    p.add_argument("--signature", metavar="FILE", help=_SIGNATURE_HELP)
    add_common(p)
    add_progress(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=cmd_import)

    bundle = sub.add_parser("bundle", help="read a bundle without installing it (ls, verify)")
    bsub = bundle.add_subparsers(dest="bundle_command", metavar="COMMAND")
    bsub.required = True
    p = bsub.add_parser(
        "ls", help="list the models and blobs of a bundle (any source import reads), and who says they signed it"
    )
    p.add_argument("source", metavar="SOURCE", help="a bundle, its first part, an OCI layout or a models directory")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)
    p = bsub.add_parser(
        "verify",
        help="read a whole bundle (any source import reads) and check every digest, and with --trust its "
        "signature; writes nothing",
    )
    p.add_argument("source", metavar="SOURCE", help="a bundle, its first part, an OCI layout or a models directory")
    add_trust_options(p)
    p.add_argument("--signature", metavar="FILE", help=_SIGNATURE_HELP)
    p.add_argument(
        "--models-dir", metavar="DIR", help="a store to look in for blobs the bundle does not carry (default: none)"
    )
    add_progress(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)


def _run(
    func: Any, *args: Any, progress_mode: str = "none", interval: float = 5.0, verb: str = "pulling", **kwargs: Any
) -> Any:
    """*func*, a blocking bundle function, with a progress renderer; it runs in this thread, no event loop."""
    with rendering(progress_mode, sys.stderr, interval=interval, verb=verb) as renderer:
        return func(*args, progress=renderer, **kwargs)


def _existing_output(args: argparse.Namespace) -> list[Path]:
    """The files an export to ``-o`` would replace: FILE, or every FILE.NNN part for --split-size."""
    out = str(args.output)
    if out == "-" or args.format == "dir":
        return []
    if args.format == "oci" and not out.endswith((".tar", ".tar.zst", ".tar.gz", ".tgz")):
        return []  # an OCI layout directory: written into
    path = Path(out)
    if args.split_size:
        return sorted(p for p in path.parent.glob(glob.escape(path.name) + ".[0-9][0-9][0-9]") if p.is_file())
    return [path] if path.is_file() else []


def cmd_export(args: argparse.Namespace) -> int:
    if args.output == "-" and sys.stdout.isatty():
        raise ConfigError("refusing to write a binary bundle to a terminal; use -o FILE or a pipe")
    if args.output == "-" and args.json:
        raise ConfigError("--json needs stdout, which -o - uses for the bundle")
    existing = _existing_output(args)
    if existing and not args.force:
        raise ConfigError(
            f"{existing[0]} exists{' (and ' + str(len(existing) - 1) + ' more part(s))' if len(existing) > 1 else ''}; "
            "export does not overwrite a file: remove it, choose another -o, or pass --force"
        )
    from ..bundle.api import export_bundle
    from .gcpause import resume
    from .provenance import load_key

    resume()

    try:
        result: ExportResult = _run(
            export_bundle,
            args.names,
            args.output,
            models_dir=args.models_dir,
            compress=args.compress,
            split_size=args.split_size,
            format=args.format,
            verify=not args.no_verify,
            sign=load_key(args),
            signature_file=args.signature,
            progress_mode=args.progress,
            interval=args.progress_interval,
            verb="exporting",
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for stale in existing:  # --force: parts of an older, longer export would be read as part of this one
        if str(stale) not in result.paths:
            stale.unlink(missing_ok=True)
    if args.json:
        print(
            json.dumps(
                {
                    "models": [n.display for n in result.models],
                    "blobs": result.blobs,
                    "bytes_in": result.bytes_in,
                    "bytes_out": result.bytes_out,
                    "compression": result.compression,
                    "format": result.format,
                    "paths": list(result.paths),
                    "elapsed": round(result.elapsed, 3),
                    "signer": result.signer,
                    "signature_file": result.signature_file,
                }
            )
        )
        return 0
    if result.signer:
        detached = f"; signature also in {result.signature_file}" if result.signature_file else ""
        print(f"signed by {result.signer}{detached}", file=sys.stderr)
    where = ", ".join(result.paths) if result.paths else "stdout"
    if len(result.paths) > 3:
        where = f"{result.paths[0]} .. {result.paths[-1]} ({len(result.paths)} parts)"
    print(
        f"exported {len(result.models)} model(s), {result.blobs} blob(s): {human_size(result.bytes_in)} -> "
        f"{human_size(result.bytes_out)} ({result.compression}, {result.format}) to {where} in {result.elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0


def _import_json(result: ImportResult) -> dict[str, Any]:
    return {
        "models": [n.display for n in result.models],
        "replaced": [n.display for n in result.replaced],
        "unchanged": [n.display for n in result.unchanged],
        "blobs_written": result.blobs_written,
        "blobs_skipped": result.blobs_skipped,
        "bytes_written": result.bytes_written,
        "format": result.format,
        "compression": result.compression,
        "elapsed": round(result.elapsed, 3),
        "signer": result.signer,
    }


def cmd_import(args: argparse.Namespace) -> int:
    from ..bundle.api import import_bundle
    from .gcpause import resume
    from .provenance import trust_from

    resume()

    try:
        result: ImportResult = _run(
            import_bundle,
            args.source,
            models_dir=args.models_dir,
            names=args.names,
            as_name=args.as_name,
            trust=trust_from(args),
            signature=args.signature,
            progress_mode=args.progress,
            interval=args.progress_interval,
            verb="importing",
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.json:
        print(json.dumps(_import_json(result)))
        return 0
    for name in result.models:
        state = "unchanged" if name in result.unchanged else "replaced" if name in result.replaced else "installed"
        print(f"{name.display}: {state}", file=sys.stderr)
    print(
        f"{result.blobs_written} blob(s) written ({human_size(result.bytes_written)}), {result.blobs_skipped} already "
        f"in the store; {result.elapsed:.1f} s" + (f"; signed by {result.signer}" if result.signer else ""),
        file=sys.stderr,
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..bundle.api import verify_bundle
    from .provenance import trust_from

    result: ImportResult = _run(
        verify_bundle,
        args.source,
        models_dir=args.models_dir,
        trust=trust_from(args),
        signature=args.signature,
        progress_mode=args.progress,
        interval=args.progress_interval,
        verb="verifying",
    )
    if args.json:
        print(json.dumps({"ok": True, **_import_json(result)}))
        return 0
    print(
        f"ok: {len(result.models)} model(s) verified ({', '.join(n.display for n in result.models)}); "
        f"format {result.format}, compression {result.compression}"
        + (f"; signed by {result.signer}" if result.signer else "")
    )
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from ..bundle.api import inspect_bundle

    try:
        info: BundleInfo = inspect_bundle(args.source)
    except BaseException as exc:
        raise collapse(exc) from None
    if args.json:
        print(
            json.dumps(
                {
                    "format": info.format,
                    "version": info.version,
                    "created_by": info.created_by,
                    "created": info.created,
                    "compression": info.compression,
                    "size": info.size,
                    "models": [
                        {"name": m.name.display, "digest": str(m.manifest_digest), "size": m.size, "blobs": m.blobs}
                        for m in info.models
                    ],
                    "blobs": [{"digest": str(d), "size": s} for d, s in info.blobs],
                    "signers": list(info.signers),
                }
            )
        )
        return 0
    made = f", made by {info.created_by} at {info.created}" if info.created_by else ""
    version = f" v{info.version}" if info.version else ""
    print(f"{info.format}{version} bundle, compression {info.compression}{made}")
    print(f"{'NAME':<50} {'ID':<12} {'SIZE':>10} {'BLOBS':>5}")
    for m in info.models:
        print(f"{m.name.display:<50} {m.manifest_digest.hex[:12]:<12} {human_size(m.size):>10} {m.blobs:>5}")
    print(f"{len(info.blobs)} distinct blob(s), {human_size(info.size)} in all")
    for signer in info.signers:
        print(f"signed by {signer} (not verified here: 'bundle verify SOURCE --trust KEY' checks it)")
    if not info.signers:
        print("not signed")
    return 0
