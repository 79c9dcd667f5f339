"""OCI images that carry Ollama models: layer plans, deterministic tar headers, config, manifest and index. Pure.

An image built by ``ollama-seed image build`` holds the models at ``<models path>/{blobs,manifests}``
(default ``/models``):

* one layer per Ollama blob, largest first (``--max-layers`` merges the smallest into one layer,
  ``--layering single`` puts everything in one): the directories of the models path, then
  ``models/blobs/sha256-<hex>``. The same blob gives the same layer bytes in every image, tag,
  platform and base, so registries, nodes and P2P caches store it once;
* one last small layer with the ``models/manifests/<host>/<ns>/<model>/<tag>`` files.

Headers are ustar (pax records only where ustar cannot say it: a file of 8 GiB or more, a long
path), uid/gid 0, empty user and group names, an integer mtime, mode 0644 for files and 0755 for
directories; no links, no xattrs, no whiteouts. Each layer descriptor is annotated
``io.ollama-seed.layer`` with what it holds (blob digests and/or ``manifests``), which is how
``image verify`` and ``image extract`` tell model layers from a base image's.
"""

from __future__ import annotations

import datetime
import json
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .digest import Digest
from .errors import ConfigError
from .manifest import CONFIG_MEDIA_TYPE as DOCKER_CONFIG
from .manifest import MANIFEST_MEDIA_TYPE as DOCKER_MANIFEST
from .manifest import OCI_MANIFEST_MEDIA_TYPE as MANIFEST_MEDIA_TYPE
from .manifest import Manifest
from .reference import ModelName

__all__ = [
    "ANNOTATION_LAYER",
    "BLOCK",
    "CONFIG_MEDIA_TYPE",
    "DOCKER_CONFIG",
    "DOCKER_MANIFEST",
    "END_OF_ARCHIVE",
    "INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPE",
    "Platform",
    "PlannedLayer",
    "TarFile",
    "descriptor",
    "encode_json",
    "image_config",
    "image_index",
    "image_manifest",
    "layer_cap",
    "models_dirs",
    "parse_platforms",
    "plan_layers",
    "tar_header",
]

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_MEDIA_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
ANNOTATION_LAYER = "io.ollama-seed.layer"
ANNOTATION_MODELS = "io.ollama-seed.models"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_REF = "org.opencontainers.image.ref.name"
ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
FILE_MODE, DIR_MODE = 0o644, 0o755
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
GB, MIB, GIB = 10**9, 1 << 20, 1 << 30

# Documented per-layer limits (../shared/docs/model-images.md §3.6): host suffix -> (bytes, who).
_CAPS: tuple[tuple[str, int, str], ...] = (
    ("ghcr.io", 10 * GB, "GitHub Container Registry (10 GB per layer, 10-minute upload timeout)"),
    ("public.ecr.aws", 10_000 * MIB, "Amazon ECR Public (10,000 MiB per layer)"),
    (".amazonaws.com", 52_000 * MIB, "Amazon ECR (52,000 MiB per layer)"),
    (".azurecr.io", 200 * GIB, "Azure Container Registry (200 GiB per layer)"),
)


def layer_cap(host: str) -> tuple[int, str] | None:
    """The documented per-layer size limit of the registry at *host*, and its wording; None if unknown."""
    bare = host.lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()
    for suffix, limit, who in _CAPS:
        if bare == suffix.lstrip(".") or (suffix.startswith(".") and bare.endswith(suffix)):
            return limit, who
    return None


@dataclass(frozen=True, slots=True)
class Platform:
    """An image platform: ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str = ""

    def doc(self) -> dict[str, str]:
        """The ``platform`` object of an index entry."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    @classmethod
    def of(cls, doc: Any) -> Platform | None:
        """The platform a ``platform`` object names; None when it is not one."""
        if (
            not isinstance(doc, dict)
            or not isinstance(doc.get("os"), str)
            or not isinstance(doc.get("architecture"), str)
        ):
            return None
        variant = doc.get("variant")
        return cls(doc["os"], doc["architecture"], variant if isinstance(variant, str) else "")


def parse_platforms(text: str | Sequence[str] | None) -> tuple[Platform, ...]:
    """``linux/amd64,linux/arm64`` (the default); arm64 gets the variant ``v8``.

    Raises:
        ConfigError: not ``os/arch[/variant]``.
    """
    items = DEFAULT_PLATFORMS if text is None else (text.split(",") if isinstance(text, str) else text)
    out: list[Platform] = []
    for item in items:
        parts = item.strip().split("/")
        if len(parts) not in (2, 3) or not all(p.isalnum() for p in parts):
            raise ConfigError(f"platform {item!r} is not os/arch[/variant] (for example linux/amd64)")
        variant = parts[2] if len(parts) == 3 else ("v8" if parts[1] == "arm64" else "")
        platform = Platform(parts[0], parts[1], variant)
        if platform not in out:
            out.append(platform)
    if not out:
        raise ConfigError("name at least one platform")
    return tuple(out)


def models_dirs(models_path: str) -> tuple[str, ...]:
    """The tar paths of the models path, ``/srv/models`` -> ``srv/models``.

    Raises:
        ConfigError: not an absolute path of plain components.
    """
    parts = models_path.strip("/").split("/")
    if not models_path.startswith("/") or any(p in ("", ".", "..") or not p.isprintable() for p in parts):
        raise ConfigError(f"--models-path must be an absolute path such as /models, not {models_path!r}")
    return ("/".join(parts),)


def tar_header(path: str, size: int, *, mtime: int, directory: bool = False, pax_size: bool = False) -> bytes:
    """The header block(s) of one member: ustar, with pax records only when needed (or, with
    *pax_size*, always a pax ``size`` record: the same length whatever the size)."""
    info = tarfile.TarInfo(path + ("/" if directory else ""))
    if pax_size:
        info.pax_headers = {"size": str(size)}
    info.size = 0 if directory else size
    info.mtime = mtime
    info.mode = DIR_MODE if directory else FILE_MODE
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def padding(size: int) -> int:
    """Bytes of zero padding after *size* bytes of member data."""
    return -size % BLOCK


@dataclass(frozen=True, slots=True)
class TarFile:
    """One regular file of a layer: a store blob (*digest*) or small bytes (*data*, a manifest)."""

    path: str
    size: int
    digest: Digest | None = None
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class PlannedLayer:
    """What one model layer holds: its directories, then its files, in tar order."""

    dirs: tuple[str, ...]
    files: tuple[TarFile, ...]
    label: str

    def size(self, mtime: int) -> int:
        """Bytes of the uncompressed tar (headers, data, padding, end-of-archive)."""
        total = sum(len(tar_header(d, 0, mtime=mtime, directory=True)) for d in self.dirs)
        for f in self.files:
            total += len(tar_header(f.path, f.size, mtime=mtime)) + f.size + padding(f.size)
        return total + len(END_OF_ARCHIVE)

    @property
    def blobs(self) -> tuple[Digest, ...]:
        return tuple(f.digest for f in self.files if f.digest is not None)


def _dirs_for(root: str, files: Iterable[str]) -> tuple[str, ...]:
    """*root* and every directory between it and *files*, parents first."""
    out = {root}
    for path in files:
        parts = path.split("/")
        for i in range(len(root.split("/")), len(parts)):
            out.add("/".join(parts[:i]))
    return tuple(sorted(out, key=lambda d: (d.count("/"), d)))


def plan_layers(
    models: Sequence[tuple[ModelName, Manifest]],
    *,
    models_path: str = "/models",
    layering: str = "per-blob",
    max_layers: int | None = None,
    base_layers: int = 0,
) -> list[PlannedLayer]:
    """The model layers of an image of *models*: blobs largest first, then the manifests layer.

    Raises:
        ConfigError: an unknown *layering*, or a *max_layers* the base alone fills.
    """
    (root,) = models_dirs(models_path)
    blobs: dict[Digest, int] = {}
    for _, manifest in models:
        for layer in manifest.blobs:
            blobs.setdefault(layer.digest, layer.size)
    ordered = sorted(blobs.items(), key=lambda item: (-item[1], item[0].hex))
    blob_files = [TarFile(f"{root}/blobs/{d.filename}", size, digest=d) for d, size in ordered]
    manifest_files = sorted(
        (TarFile(f"{root}/manifests/" + "/".join(name.path_parts), len(m.raw), data=m.raw) for name, m in models),
        key=lambda f: f.path,
    )
    if layering not in ("per-blob", "single"):
        raise ConfigError(f"--layering must be per-blob or single, not {layering!r}")
    if max_layers is not None and max_layers < base_layers + 1:
        raise ConfigError(
            f"--max-layers {max_layers} leaves no room for the models on top of the base's {base_layers} layers"
        )
    room = None if max_layers is None else max_layers - base_layers
    if layering == "single" or room == 1:
        files = [*blob_files, *manifest_files]
        label = " ".join([*(str(f.digest) for f in blob_files), "manifests"])
        return [PlannedLayer(_dirs_for(root, (f.path for f in files)), tuple(files), label)]
    groups: list[list[TarFile]] = [[f] for f in blob_files]
    if room is not None and len(groups) + 1 > room:
        keep = room - 2
        groups = [*groups[:keep], [f for g in groups[keep:] for f in g]]
    layers = [
        PlannedLayer(_dirs_for(root, (f.path for f in g)), tuple(g), " ".join(str(f.digest) for f in g)) for g in groups
    ]
    layers.append(PlannedLayer(_dirs_for(root, (f.path for f in manifest_files)), tuple(manifest_files), "manifests"))
    return layers


# -- JSON documents -------------------------------------------------------------------------


def encode_json(doc: Any) -> bytes:
    """Canonical bytes: sorted keys, no spaces (the same document always has the same digest)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(mtime: int) -> str:
    """*mtime* (seconds since the epoch) as OCI's ``created``: ``2024-01-02T03:04:05Z``."""
    return datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def descriptor(media_type: str, digest: Digest, size: int, **extra: Any) -> dict[str, Any]:
    """A descriptor object to write (empty *extra* fields left out); :func:`.ocidoc.parse_descriptor` reads one."""
    return {"mediaType": media_type, "digest": str(digest), "size": size, **{k: v for k, v in extra.items() if v}}


def image_config(
    platform: Platform,
    diff_ids: Sequence[Digest],
    history: Sequence[str],
    *,
    mtime: int,
    models_path: str,
    models: Sequence[ModelName],
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The image config: the base's (if any) with our diff_ids, history, ``OLLAMA_MODELS`` and labels appended."""
    created = rfc3339(mtime)
    doc: dict[str, Any] = dict(base) if base else {"architecture": platform.architecture, "os": platform.os}
    if not base and platform.variant:
        doc["variant"] = platform.variant
    inner = dict(doc.get("config") or {})
    env = [e for e in inner.get("Env") or [] if isinstance(e, str) and not e.startswith("OLLAMA_MODELS=")]
    inner["Env"] = [*env, f"OLLAMA_MODELS={models_path}"]
    labels = dict(inner.get("Labels") or {})
    labels[ANNOTATION_MODELS] = " ".join(str(n) for n in models)
    inner["Labels"] = labels
    doc["config"] = inner
    rootfs = doc.get("rootfs") if isinstance(doc.get("rootfs"), dict) else {}
    doc["rootfs"] = {"type": "layers", "diff_ids": [*(rootfs or {}).get("diff_ids", []), *map(str, diff_ids)]}
    doc["history"] = [
        *(doc.get("history") or []),
        *({"created": created, "created_by": f"ollama-seed image build: {h}"} for h in history),
    ]
    doc["created"] = created
    return doc


def image_manifest(
    config: dict[str, Any],
    layers: Sequence[dict[str, Any]],
    *,
    mtime: int,
    models: Sequence[ModelName],
    media_type: str = MANIFEST_MEDIA_TYPE,
    base: tuple[str, Digest] | None = None,
) -> dict[str, Any]:
    """One platform's image manifest over *config* and *layers* (descriptor objects); an OCI one is
    annotated with its creation time, the models and the *base* (name, digest) it was built on."""
    annotations = {ANNOTATION_CREATED: rfc3339(mtime), ANNOTATION_MODELS: " ".join(str(n) for n in models)}
    if base is not None:
        annotations[ANNOTATION_BASE_NAME], annotations[ANNOTATION_BASE_DIGEST] = base[0], str(base[1])
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type, "config": config, "layers": list(layers)}
    if media_type == MANIFEST_MEDIA_TYPE:
        doc["annotations"] = annotations
    return doc


def image_index(
    children: Sequence[tuple[Platform, Digest, int]], *, models: Sequence[ModelName], media_type: str = INDEX_MEDIA_TYPE
) -> dict[str, Any]:
    """The image index over *children*, each ``(platform, manifest digest, manifest size)``; a Docker
    manifest list when *media_type* says so (a Docker base), with Docker manifest entries."""
    manifest_type = MANIFEST_MEDIA_TYPE if media_type == INDEX_MEDIA_TYPE else DOCKER_MANIFEST
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [descriptor(manifest_type, d, size, platform=p.doc()) for p, d, size in children],
    }
    if media_type == INDEX_MEDIA_TYPE:
        doc["annotations"] = {ANNOTATION_MODELS: " ".join(str(n) for n in models)}
    return doc
