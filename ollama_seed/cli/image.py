"""CLI: ``image build``, ``image verify``, ``image extract`` (models as OCI container images).

Summaries and progress go to stderr; ``--json`` prints one result document on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .render import add_progress, rendering
from .store import add_common

if TYPE_CHECKING:
    from ..bundle.image.build import ImageResult
    from ..bundle.image.read import ImageReport

__all__ = ["register"]


def _common(p: argparse.ArgumentParser, *, source: bool) -> None:
    if source:
        p.add_argument("ref", nargs="?", metavar="REF", help="the image in a registry (registry.lan:5000/ai/models:v1)")
        p.add_argument("--oci-layout", metavar="DIR[:TAG]", help="the image in an OCI layout directory instead")
        p.add_argument("--oci-archive", metavar="FILE[:TAG]", help="or in a tar of one (image build, skopeo)")
        from .provenance import add_trust_options

        add_trust_options(p)
        p.add_argument(
            "--models-path", metavar="PATH", help="where the models sit in the image (default: its OLLAMA_MODELS)"
        )
    p.add_argument("--insecure", action="store_true", help="plain http to the registry")
    add_progress(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def register(sub: Any) -> None:
    image = sub.add_parser("image", help="models as OCI container images: build, verify, extract (no daemon)")
    isub = image.add_subparsers(dest="image_command", metavar="COMMAND")
    isub.required = True

    p = isub.add_parser("build", help="build an image holding models from the store (one layer per blob)")
    p.add_argument("models", nargs="+", metavar="MODEL", help="a model to put in the image (pulled first if missing)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--push", metavar="REF", help="push to a registry: registry.lan:5000/ai/models:v1")
    where.add_argument("--oci-layout", metavar="DIR[:TAG]", help="write into an OCI layout directory (tag: latest)")
    where.add_argument("--oci-archive", metavar="FILE", help="write a tar of an OCI layout")
    p.add_argument("--base", metavar="REF", help="put the models on top of this image (registry ref, or oci:DIR[:TAG])")
    p.add_argument(
        "--platform",
        metavar="OS/ARCH,...",
        help="platforms of a model-only image (default linux/amd64,linux/arm64); with --base: of the base",
    )
    p.add_argument("--models-path", default="/models", metavar="PATH", help="where the models go (default /models)")
    p.add_argument(
        "--compression", default="none", metavar="none|gzip|zstd[:LEVEL]", help="layer compression (default none)"
    )
    p.add_argument("--layering", choices=["per-blob", "single"], default="per-blob", help="one layer per blob, or one")
    p.add_argument("--max-layers", type=int, metavar="N", help="merge the smallest blobs past N layers in all")
    p.add_argument(
        "--mtime", type=int, metavar="EPOCH", help="time in every header (default $SOURCE_DATE_EPOCH, else 0)"
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="never pull: every model must be in the store (also OLLAMA_SEED_OFFLINE=1)",
    )
    p.add_argument("--no-verify", action="store_true", help="do not re-hash the store's blobs while reading them")
    from .provenance import add_key_options

    add_key_options(p, "--sign")
    p.add_argument(
        "--cosign-legacy", action="store_true", help="with --sign --push, also write cosign v2's sha256-<hex>.sig tags"
    )
    add_common(p)
    _common(p, source=False)
    p.set_defaults(func=cmd_build, network=_build_network)

    p = isub.add_parser("verify", help="check an image completely (digests, diff_ids, members, Ollama's rules)")
    _common(p, source=True)
    p.set_defaults(func=cmd_verify, network=_source_network("verify"))

    p = isub.add_parser("extract", help="install an image's models into the store, no container runtime needed")
    add_common(p)
    _common(p, source=True)
    p.set_defaults(func=cmd_extract, network=_source_network("extract"))


def _build_network(args: argparse.Namespace) -> tuple[str, str] | None:
    """A push, or a base image in a registry, needs the network (a missing model is --offline's refusal)."""
    if args.push:
        return f"image build --push {args.push}", "write the image with --oci-layout DIR or --oci-archive FILE"
    if args.base and not args.base.startswith("oci:"):
        return f"image build --base {args.base}", "take the base from an OCI layout on disk, --base oci:DIR[:TAG]"
    return None


def _source_network(verb: str) -> Callable[[argparse.Namespace], tuple[str, str] | None]:
    """``image verify|extract REF`` reads a registry; ``--oci-layout DIR`` and ``--oci-archive FILE`` the disk."""

    def network(args: argparse.Namespace) -> tuple[str, str] | None:
        if args.ref is None:
            return None
        return f"image {verb} {args.ref}", "read an image on disk with --oci-layout DIR[:TAG] or --oci-archive FILE"

    return network


def _run(func: Any, *args: Any, args_ns: argparse.Namespace, verb: str, **kwargs: Any) -> Any:
    from ..wire.sync import run_sync
    from .gcpause import resume

    resume()
    mode = "none" if args_ns.json else args_ns.progress
    with rendering(mode, sys.stderr, interval=args_ns.progress_interval, verb=verb) as renderer:
        return run_sync(func, *args, progress=renderer, **kwargs)


def cmd_build(args: argparse.Namespace) -> int:
    from ..bundle.image.api import abuild_image
    from ..core.errors import ConfigError
    from .provenance import load_key

    options: dict[str, Any] = {}
    if args.base:
        options["base"] = args.base
    key = load_key(args)
    if key is not None:
        options["sign"] = key
        if args.cosign_legacy:
            options["cosign_legacy"] = True
    elif args.cosign_legacy:
        raise ConfigError("--cosign-legacy is a signature format: give the key to sign with, --sign KEY")
    result: ImageResult = _run(
        abuild_image,
        args.models,
        args_ns=args,
        verb="building",
        oci_layout=args.oci_layout,
        oci_archive=args.oci_archive,
        push=args.push,
        models_dir=args.models_dir,
        offline=args.offline or _offline_env(),
        insecure=args.insecure,
        platforms=args.platform,
        models_path=args.models_path,
        layering=args.layering,
        max_layers=args.max_layers,
        compression=args.compression,
        mtime=args.mtime,
        verify=not args.no_verify,
        **options,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "digest": str(result.digest),
                    "target": result.target,
                    "refs": list(result.refs),
                    "platforms": {p: str(d) for p, d in result.platforms},
                    "layers": [
                        {"digest": str(la.digest), "size": la.size, "diff_id": str(la.diff_id), "holds": la.label}
                        for la in result.layers
                    ],
                    "models": [str(n) for n in result.models],
                    "uploaded": [str(d) for d in result.uploaded],
                    "mounted": [str(d) for d in result.mounted],
                    "existing": [str(d) for d in result.existing],
                    "bytes_written": result.bytes_written,
                    "elapsed": round(result.elapsed, 3),
                }
            )
        )
        return 0
    print(
        f"built {result.target} ({', '.join(result.refs)}): {len(result.models)} model(s), "
        f"{len(result.layers)} layer(s), {result.bytes_written / 1e6:.1f} MB written in {result.elapsed:.1f} s",
        file=sys.stderr,
    )
    for platform, digest in result.platforms:
        print(f"  {platform}: {digest}", file=sys.stderr)
    print(f"digest {result.digest}  (deploy by digest or a fixed tag)", file=sys.stderr)
    print(str(result.digest))
    return 0


def _report(report: ImageReport, args: argparse.Namespace, verb: str) -> int:
    if args.json:
        print(
            json.dumps(
                {
                    "ok": True,
                    "digest": str(report.digest),
                    "models": [str(n) for n in report.models],
                    "platforms": list(report.platforms),
                    "layers_read": report.layers_read,
                    "layers_skipped": report.layers_skipped,
                    "blobs_written": report.blobs_written,
                    "bytes_written": report.bytes_written,
                    "elapsed": round(report.elapsed, 3),
                    "signer": str(report.signer) if report.signer is not None else None,
                }
            )
        )
        return 0
    names = ", ".join(n.display for n in report.models)
    if report.signer is not None:
        print(f"signed by {report.signer}")
    print(
        f"{verb} {report.digest}: {len(report.models)} model(s) ({names}); {report.layers_read} layer(s) read, "
        f"{report.layers_skipped} skipped, {report.blobs_written} blob(s) written in {report.elapsed:.1f} s"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ..bundle.image.api import averify_image
    from .provenance import trust_from

    report: ImageReport = _run(
        averify_image,
        args.ref,
        args_ns=args,
        verb="verifying",
        oci_layout=args.oci_layout,
        oci_archive=args.oci_archive,
        trust=trust_from(args),
        insecure=args.insecure,
        models_path=args.models_path,
    )
    return _report(report, args, "ok:")


def cmd_extract(args: argparse.Namespace) -> int:
    from ..bundle.image.api import aextract_image
    from .provenance import trust_from

    report: ImageReport = _run(
        aextract_image,
        args.ref,
        args_ns=args,
        verb="extracting",
        oci_layout=args.oci_layout,
        oci_archive=args.oci_archive,
        trust=trust_from(args),
        models_dir=args.models_dir,
        insecure=args.insecure,
        models_path=args.models_path,
    )
    return _report(report, args, "extracted")


def _offline_env() -> bool:
    from ..startup.local import offline_from_env

    return offline_from_env()
