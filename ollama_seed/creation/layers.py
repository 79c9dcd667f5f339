"""Every blob ``ollama create`` writes, in Ollama's order, and the manifest: computed, not written.

The steps are Ollama's (``createModel`` and its ``set*`` helpers):

1. Base layers. ``FROM ./model.gguf``: each GGUF as a ``model``, ``projector`` or ``adapter`` layer
   (by its ``general.type`` and block counts), then a template and params matched from its chat template
   if the caller found one (:class:`AutoTemplate`), then the ``ADAPTER``. ``FROM model``: every layer of
   the base manifest, in its order, each with ``from`` = the base's short name.
2. ``TEMPLATE`` / ``SYSTEM`` (if non-empty): the old layer of that kind is dropped, the new one appended.
3. One ``license`` layer per ``LICENSE``, appended (never replacing).
4. Params: the new ``PARAMETER``\\ s, plus every key of the existing params layer they do not set (a whole
   ``stop`` list replaces the old one); if any, the old layer is dropped and the re-encoded one appended.
5. ``MESSAGE``\\ s (if any): the old messages layer dropped, the new one appended.
6. The config (fields from the GGUF headers), and the manifest that lists it all.

The caller resolves paths, reads GGUF headers (:func:`~.gguf.read_gguf`), hashes the GGUF while copying
it into the store, and writes every :attr:`CreatePlan.new_blobs` entry and then the manifest.
"""

from __future__ import annotations

import json
import ntpath
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..core.digest import Digest
from ..core.manifest import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Manifest, load_json_object
from .config import MEDIA_ADAPTER, MEDIA_MODEL, MEDIA_PROJECTOR, Era, config_blob, model_fields
from .gguf import GGUFInfo
from .gojson import GoValue, Struct, decode_object, encode, go_bytes
from .modelfile import Modelfile
from .params import wire_parameters

__all__ = [
    "MEDIA_LICENSE",
    "MEDIA_MESSAGES",
    "MEDIA_PARAMS",
    "MEDIA_SYSTEM",
    "MEDIA_TEMPLATE",
    "AutoTemplate",
    "BaseModel",
    "Blob",
    "CreateError",
    "CreatePlan",
    "GGUFFile",
    "gguf_media_type",
    "manifest_layers",
    "plan_create",
]

MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
_GGUF_MEDIA = (MEDIA_MODEL, MEDIA_PROJECTOR, MEDIA_ADAPTER)
# Architecture defaults (v0.20+ gemma4, v0.22+ laguna and nemotron_h*): renderer and parser
_ARCH_DEFAULTS = {
    "gemma4": "gemma4",
    "laguna": "laguna",
    "nemotron_h": "nemotron-3-nano",
    "nemotron_h_moe": "nemotron-3-nano",
    "nemotron_h_omni": "nemotron-3-nano",
}
_GEMMA4_STOP = "<turn|>"


class CreateError(ValueError):
    """Inputs a create cannot be built from; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Blob:
    """One layer (or the config): what the manifest says about it, and its bytes when they are new.

    ``data`` is None for blobs the caller provides (the GGUF it copied, a base model's layers).
    """

    media_type: str
    digest: Digest
    size: int
    data: bytes | None = field(default=None, repr=False)
    from_: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Blob:
        """A new blob holding *data*."""
        return cls(media_type, Digest.of(data), len(data), data)

    def manifest_entry(self) -> Struct:
        """Ollama's ``Layer`` struct: mediaType, digest, size, then ``from`` and ``name`` if set."""
        items: list[tuple[str, GoValue]] = [
            ("mediaType", self.media_type),
            ("digest", str(self.digest)),
            ("size", self.size),
        ]
        if self.from_:
            items.append(("from", self.from_))
        if self.name:
            items.append(("name", self.name))
        return Struct(items)


@dataclass(frozen=True, slots=True)
class GGUFFile:
    """A GGUF the caller is adding: ``key`` is Ollama's name for it in the create request (the file's
    base name; with several files under one folder, the path relative to it with ``/``)."""

    key: str
    digest: Digest
    size: int
    info: GGUFInfo


@dataclass(frozen=True, slots=True)
class BaseModel:
    """The model a ``FROM name`` builds on.

    ``name``: its short display name (``ModelName.display``: ``llama3.2:latest``), which every reused
    layer gets as ``from``. ``layers``: its manifest layers (:func:`manifest_layers`). ``config``: its
    config blob's bytes (renderer, parser, requires, model_format and capabilities carry over).
    ``blobs``: the bytes of its params layer(s). ``gguf``: the header of each model/projector/adapter layer.
    """

    name: str
    layers: Sequence[Blob]
    config: bytes | None = None
    blobs: Mapping[Digest, bytes] = field(default_factory=dict)
    gguf: Mapping[Digest, GGUFInfo] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AutoTemplate:
    """A template matched from the GGUF's ``tokenizer.chat_template`` (Ollama's ``template/<name>.gotmpl``
    bytes and its ``<name>.json`` params). Matching, and shipping those files, is the caller's business."""

    template: bytes
    params: Mapping[str, GoValue] | None = None


@dataclass(frozen=True, slots=True)
class CreatePlan:
    """The outcome: layers in manifest order, the config, and the manifest's bytes."""

    layers: tuple[Blob, ...]
    config: Blob
    manifest: bytes = field(repr=False)

    @property
    def manifest_digest(self) -> Digest:
        """The model's ID: the sha256 of the manifest file."""
        return Digest.of(self.manifest)

    @property
    def new_blobs(self) -> tuple[Blob, ...]:
        """The blobs to write (each once), config last: every one whose bytes are computed here."""
        seen: set[Digest] = set()
        out: list[Blob] = []
        for blob in (*self.layers, self.config):
            if blob.data is not None and blob.digest not in seen:
                seen.add(blob.digest)
                out.append(blob)
        return tuple(out)


def gguf_media_type(info: GGUFInfo, era: Era = Era.CURRENT) -> str:
    """``adapter`` if ``general.type`` says so; ``projector`` for a vision/audio projector; else ``model``."""
    kind = info.string("general.type")
    if kind == "adapter":
        return MEDIA_ADAPTER
    arch = info.architecture
    blocks = info.uint32(f"{arch}.block_count")
    if kind == "projector" or (not blocks and (info.uint32(f"{arch}.vision.block_count") or 0) > 0):
        return MEDIA_PROJECTOR
    if not era.classic and (
        kind == "mmproj"
        or (
            arch == "clip"
            and not blocks
            and (info.boolean("clip.has_vision_encoder") or info.boolean("clip.has_audio_encoder"))
        )
    ):
        return MEDIA_PROJECTOR
    return MEDIA_MODEL


def manifest_layers(raw: bytes) -> tuple[Blob, ...]:
    """A base model's manifest layers, with their ``name`` (kept when reused, as Ollama v0.14+ does).

    Raises:
        RegistryProtocolError: the bytes are not a valid manifest (from :meth:`Manifest.parse`).
    """
    manifest = Manifest.parse(raw, source="the base model's manifest")
    entries = json.loads(raw).get("layers") or []
    names = [e.get("name") if isinstance(e, dict) and isinstance(e.get("name"), str) else None for e in entries]
    return tuple(
        Blob(layer.media_type, layer.digest, layer.size, name=name)
        for layer, name in zip(manifest.layers, names, strict=True)
    )


def _blob_path(models_dir: str, digest: Digest) -> str:
    """``filepath.Join(models, "blobs", "sha256-<hex>")`` with the models dir's own separators."""
    windows = "\\" in models_dir or (len(models_dir) > 1 and models_dir[1] == ":")
    if windows:
        return ntpath.normpath(ntpath.join(models_dir, "blobs", digest.filename))
    return posixpath.normpath(posixpath.join(models_dir, "blobs", digest.filename))


def _inherited(config: bytes | None) -> dict[str, object]:
    if config is None:
        return {}
    try:
        return load_json_object(config, "the base model's config blob")
    except ValueError as exc:
        raise CreateError(f"{exc}; pull the base model again") from None


def _text(doc: Mapping[str, object], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def _drop(layers: list[Blob], media_type: str) -> list[Blob]:
    return [layer for layer in layers if layer.media_type != media_type]


def _base_layers(
    ggufs: Sequence[GGUFFile], adapter: GGUFFile | None, auto: AutoTemplate | None, era: Era, models_dir: str | None
) -> tuple[list[Blob], list[tuple[str, GGUFInfo]]]:
    if era.classic and models_dir is None:
        raise CreateError(
            "the classic era (Ollama up to v0.24) stores the GGUF blob's absolute path as the "
            "layer's 'from': give models_dir, the models directory as that Ollama sees it"
        )
    layers: list[Blob] = []
    infos: list[tuple[str, GGUFInfo]] = []
    files = list(ggufs) if era.classic else sorted(ggufs, key=lambda g: g.key)
    for g in files:
        media = gguf_media_type(g.info, era)
        if era.classic and models_dir is not None:
            where: str | None = _blob_path(models_dir, g.digest)
        elif media == MEDIA_MODEL and not g.info.has_compat_tensors:
            where = None  # Ollama v0.30+ rewrites this GGUF into a new blob, which has no 'from'
        else:
            where = g.key
        layers.append(Blob(media, g.digest, g.size, from_=where))
        infos.append((media, g.info))
    if auto is not None:
        layers.append(Blob.of(MEDIA_TEMPLATE, auto.template.replace(b"\r\n", b"\n")))
        if auto.params:
            layers.append(Blob.of(MEDIA_PARAMS, encode(dict(auto.params))))
    if adapter is not None:
        media = gguf_media_type(adapter.info, era)
        if media != MEDIA_ADAPTER:
            found = adapter.info.string("general.type")
            raise CreateError(
                f"ADAPTER {adapter.key}: not a LoRA adapter GGUF (general.type is {found!r}, not "
                "'adapter'); convert the adapter with llama.cpp's convert_lora_to_gguf.py"
            )
        where = _blob_path(models_dir, adapter.digest) if era.classic and models_dir is not None else adapter.key
        layers.append(Blob(media, adapter.digest, adapter.size, from_=where))
        infos.append((media, adapter.info))
    return layers, infos


def _from_model(base: BaseModel) -> tuple[list[Blob], list[tuple[str, GGUFInfo]]]:
    layers = [replace(layer, data=None, from_=base.name) for layer in base.layers]
    infos: list[tuple[str, GGUFInfo]] = []
    for layer in layers:
        if layer.media_type in _GGUF_MEDIA:
            info = base.gguf.get(layer.digest)
            if info is None:
                raise CreateError(
                    f"the header of the base model's {layer.media_type.rsplit('.', 1)[-1]} layer "
                    f"{layer.digest} is needed (read it with read_gguf and pass it in BaseModel.gguf)"
                )
            infos.append((layer.media_type, info))
    return layers, infos


def _merge_params(layers: list[Blob], new: dict[str, GoValue], base: BaseModel | None) -> list[Blob]:
    existing: dict[str, GoValue] = {}
    for layer in layers:
        if layer.media_type != MEDIA_PARAMS:
            continue
        data = layer.data if layer.data is not None else (base.blobs.get(layer.digest) if base else None)
        if data is None:
            raise CreateError(
                f"the bytes of the base model's params layer {layer.digest} are needed to merge "
                "parameters (pass them in BaseModel.blobs)"
            )
        try:
            existing.update(decode_object(data))
        except ValueError as exc:
            raise CreateError(
                f"the params layer {layer.digest} is not a JSON object ({exc}); Ollama cannot "
                "merge it either: pull the base model again"
            ) from None
    merged = dict(new)
    for key, value in existing.items():
        merged.setdefault(key, value)
    if not merged:
        return layers
    return [*_drop(layers, MEDIA_PARAMS), Blob.of(MEDIA_PARAMS, encode(merged))]


def plan_create(
    modelfile: Modelfile,
    *,
    ggufs: Sequence[GGUFFile] = (),
    adapter: GGUFFile | None = None,
    base: BaseModel | None = None,
    auto_template: AutoTemplate | None = None,
    era: Era = Era.CURRENT,
    models_dir: str | None = None,
) -> CreatePlan:
    """Compute the layers, config and manifest of ``ollama create`` for *modelfile*.

    Give either *ggufs* (the FROM files, with their headers, digests and sizes) or *base* (FROM a model),
    not both; *adapter* is the resolved last ``ADAPTER`` file; *auto_template* applies to FROM files only.
    *models_dir* (as Ollama sees it) is needed for :attr:`Era.CLASSIC`.

    Raises:
        CreateError: both or neither of *ggufs* and *base*; ``DRAFT`` (not supported); an ADAPTER that is
            not a LoRA GGUF; a base model whose GGUF headers, params bytes or config are missing or corrupt.
    """
    if modelfile.drafts:
        raise CreateError(
            "DRAFT (a speculative-decoding draft model) is not supported by this create; remove "
            "the DRAFT line, or create the model with a running Ollama"
        )
    if (base is None) == (not ggufs):
        raise CreateError(
            "give either the GGUF files a FROM names or the base model a FROM names, not "
            + ("both" if base is not None else "neither")
        )
    if base is not None:
        layers, infos = _from_model(base)
        inherited = _inherited(base.config)
    else:
        layers, infos = _base_layers(ggufs, adapter, auto_template, era, models_dir)
        inherited = {}
    new = wire_parameters(modelfile.parameters)
    arch = next((info.architecture for media, info in infos if media == MEDIA_MODEL), "")
    default = "" if era.classic else _ARCH_DEFAULTS.get(arch, "")
    if not era.classic and arch == "gemma4" and "stop" not in modelfile.parameters:
        new["stop"] = [_GEMMA4_STOP]
    if modelfile.template:
        layers = [*_drop(layers, MEDIA_TEMPLATE), Blob.of(MEDIA_TEMPLATE, go_bytes(modelfile.template))]
    if modelfile.system:
        layers = [*_drop(layers, MEDIA_SYSTEM), Blob.of(MEDIA_SYSTEM, go_bytes(modelfile.system))]
    layers += [Blob.of(MEDIA_LICENSE, go_bytes(text)) for text in modelfile.licenses]
    layers = _merge_params(layers, new, base)
    if modelfile.messages:
        body = encode([Struct([("role", m.role), ("content", m.content)]) for m in modelfile.messages])
        layers = [*_drop(layers, MEDIA_MESSAGES), Blob.of(MEDIA_MESSAGES, body)]
    capabilities = inherited.get("capabilities")
    config = config_blob(
        model_fields(infos, era, model_format=_text(inherited, "model_format")),
        renderer=modelfile.renderer or _text(inherited, "renderer") or default,
        parser=modelfile.parser or _text(inherited, "parser") or default,
        requires=modelfile.requires or _text(inherited, "requires"),
        capabilities=[c for c in capabilities if isinstance(c, str)] if isinstance(capabilities, list) else (),
        diff_ids=[str(layer.digest) for layer in layers] if era.rootfs else None,
    )
    config_layer = Blob.of(CONFIG_MEDIA_TYPE, config)
    manifest = encode(
        Struct(
            [
                ("schemaVersion", 2),
                ("mediaType", MANIFEST_MEDIA_TYPE),
                ("config", config_layer.manifest_entry()),
                ("layers", [layer.manifest_entry() for layer in layers]),
            ]
        )
    )
    return CreatePlan(tuple(layers), config_layer, manifest)
