"""``image build --base REF``: the image the models are put on, from a registry or an OCI layout (``oci:DIR[:TAG]``).

Every platform of a base index is kept (attestation manifests dropped), or the ones ``--platform``
names. Per platform, the base's layers stay exactly as they are (same blobs, same digests); its
config is kept and extended (diff_ids, history, ``OLLAMA_MODELS``, labels). A Docker schema 2
base is written as OCI: its descriptors get the OCI media types of the same bytes (a Docker gzip
layer is an OCI ``tar+gzip`` layer), so no manifest mixes the two families.

Base layers reach the target without passing through the store: into a layout they are copied
from the base layout or downloaded (the pull engine, into scratch space); into a registry they are
mounted from the base's repository when both are on the same registry (as ``crane append``
does), else downloaded and uploaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.digest import Digest
from ...core.errors import BundleError, ConfigError
from ...core.imageref import ImageRef
from ...core.ocidoc import Descriptor, is_index, parse_config, parse_index, parse_manifest
from ...core.ociimage import DOCKER_LAYER_GZIP, LAYER_MEDIA_TYPES, Platform
from .layout import split_layout_arg
from .source import LayoutSource, RegistrySource

if TYPE_CHECKING:
    from .api import RegistryOptions

__all__ = ["BaseImage", "BasePlatform", "resolve_base"]

_TO_OCI = {
    DOCKER_LAYER_GZIP: LAYER_MEDIA_TYPES["gzip"],
    "application/vnd.docker.image.rootfs.diff.tar": LAYER_MEDIA_TYPES["none"],
}


@dataclass(frozen=True, slots=True)
class BasePlatform:
    """One platform of the base: its manifest's layers (as OCI descriptors), diff_ids and config."""

    platform: Platform
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[Digest, ...]
    config: dict[str, Any]


@dataclass
class BaseImage:
    name: str
    digest: Digest
    source: LayoutSource | RegistrySource
    platforms: list[BasePlatform]
    ref: ImageRef | None = None  # a registry base (for cross-repository mounts)

    @property
    def layers(self) -> list[Descriptor]:
        """Every distinct base layer of every platform."""
        seen: dict[Digest, Descriptor] = {}
        for p in self.platforms:
            for desc in p.layers:
                seen.setdefault(desc.digest, desc)
        return list(seen.values())


def _as_oci(desc: Descriptor) -> Descriptor:
    media_type = _TO_OCI.get(desc.media_type, desc.media_type)
    if media_type not in LAYER_MEDIA_TYPES.values():
        raise BundleError(f"base layer {desc.digest} has media type {desc.media_type!r}, which cannot be carried over")
    return dataclasses.replace(desc, media_type=media_type, annotations={}, platform=None)


def _platform_of(config: dict[str, Any], fallback: Platform | None) -> Platform:
    os_, arch = config.get("os"), config.get("architecture")
    if isinstance(os_, str) and isinstance(arch, str):
        variant = config.get("variant")
        return Platform(os_, arch, variant if isinstance(variant, str) else "")
    if fallback is not None:
        return fallback
    raise BundleError("the base image's config names no os and architecture")


async def resolve_base(
    text: str, *, insecure: bool, scratch: Path, platforms: Sequence[Platform] | None, client: RegistryOptions
) -> BaseImage:
    """Read the base image *text* (``oci:DIR[:TAG]`` or a registry reference).

    Raises:
        ConfigError: no platform of the base is among *platforms*.
        BundleError: a base that is not an image, or mixes media-type families.
    """
    ref: ImageRef | None = None
    if text.startswith("oci:"):
        root, tag = split_layout_arg(text[4:])
        source: LayoutSource | RegistrySource = LayoutSource(root, tag if os.fspath(root) != text[4:] else None)
    else:
        ref = ImageRef.parse(text)
        source = RegistrySource(ref, scratch, insecure=insecure or ref.scheme == "http", **client)
    desc, raw = await source.resolve()
    children: list[tuple[Platform | None, bytes]] = []
    if is_index(desc.media_type, raw):
        for child in parse_index(raw, f"the index of base {text}"):
            if (
                platforms is None
                or child.platform is None
                or child.platform in platforms
                or any((p.os, p.architecture) == (child.platform.os, child.platform.architecture) for p in platforms)
            ):
                children.append((child.platform, await source.small(child)))
    else:
        children.append((None, raw))
    out: list[BasePlatform] = []
    for fallback, mraw in children:
        manifest = parse_manifest(mraw, f"a manifest of base {text}")
        config, diff_ids = parse_config(
            await source.small(manifest.config), len(manifest.layers), f"the config of base {text}"
        )
        platform = _platform_of(config, fallback)
        if platforms is not None and not any(
            (p.os, p.architecture) == (platform.os, platform.architecture) for p in platforms
        ):
            continue
        out.append(BasePlatform(platform, tuple(_as_oci(d) for d in manifest.layers), tuple(diff_ids), config))
    if not out:
        shown = ", ".join(str(p) for p in platforms or ())
        raise ConfigError(f"the base {text} has none of the platforms asked for ({shown})")
    return BaseImage(text, desc.digest, source, out, ref)
