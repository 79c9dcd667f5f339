"""``create``/``acreate``: a model from a Modelfile, written straight into the store, no Ollama server.

1. Parse the Modelfile (Ollama's grammar and error texts) and resolve what FROM and ADAPTER name:
   local GGUFs (copied into ``blobs/`` while hashed) or a model in the store (pulled first when
   allowed and missing).
2. Compute every layer, the config and the manifest as ``ollama create`` does
   (:func:`~.layers.plan_create`), with the GGUF stored unchanged as the model layer.
3. Write the new blobs, then the manifest last and atomically. A create that would write the
   manifest already there writes nothing and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ..core.digest import Digest
from ..core.errors import InvalidModelfile, InvalidName, ModelNotFound, OfflineError, StoreError
from ..core.layout import StrPath
from ..core.manifest import Manifest
from ..core.progress import LayerProgress, Status, no_progress
from ..core.reference import ModelName
from ..pulling.options import PullOptions, PullSettings
from ..store.ingest import ingest_bytes
from ..store.store import InstalledModel, ModelStore
from ..wire.sync import blocking
from .config import MEDIA_ADAPTER, MEDIA_MODEL, MEDIA_PROJECTOR, Era
from .gguf import GGUFError, GGUFInfo, read_gguf
from .layers import (
    MEDIA_PARAMS,
    MEDIA_TEMPLATE,
    AutoTemplate,
    BaseModel,
    CreateError,
    GGUFFile,
    manifest_layers,
    plan_create,
)
from .modelfile import ModelfileError, parse_modelfile
from .record import remember
from .sources import LocalFile, expand, ingest_gguf, local_files

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["CreateResult", "acreate", "create"]

MAX_MODELFILE = 16 << 20
_GGUF_MEDIA = (MEDIA_MODEL, MEDIA_PROJECTOR, MEDIA_ADAPTER)


@dataclass(frozen=True, slots=True)
class CreateResult:
    """What a create did. *unchanged*: the same manifest was already there (nothing written).
    *bytes_copied*: bytes of local files copied into the store (0 when the store had them)."""

    name: ModelName
    manifest_digest: Digest
    path: Path
    layers: int
    bytes_copied: int
    bytes_reused: int
    unchanged: bool
    warnings: tuple[str, ...]


def _read_modelfile(modelfile: str | os.PathLike[str]) -> tuple[bytes, Path]:
    """The Modelfile's bytes and its path (``~`` expanded)."""
    path = Path(modelfile).expanduser()
    try:
        if os.stat(path).st_size > MAX_MODELFILE:
            raise InvalidModelfile(f"{path} is larger than {MAX_MODELFILE >> 20} MiB: not a Modelfile")
        with open(path, "rb") as f:
            return f.read(MAX_MODELFILE + 1), path
    except FileNotFoundError:
        raise InvalidModelfile(f"specified Modelfile wasn't found: {path}") from None
    except IsADirectoryError:
        raise InvalidModelfile(f"{path} is a folder; give the Modelfile inside it (-f {path}/Modelfile)") from None
    except OSError as exc:
        raise InvalidModelfile(f"cannot read the Modelfile {path}: {exc.strerror or exc}") from None


def _blob_header(store: ModelStore, digest: Digest) -> GGUFInfo:
    path = store.layout.blob(digest)
    try:
        with open(path, "rb") as f:
            return read_gguf(f, name=str(path))
    except (OSError, GGUFError) as exc:
        raise InvalidModelfile(
            f"the base model's layer {digest} is not a readable GGUF ({exc}); "
            "run 'ollama-seed verify' and pull the base model again"
        ) from None


def _base(store: ModelStore, model: InstalledModel) -> BaseModel:
    layers = manifest_layers(model.manifest.raw)
    config = store.layout.blob(model.manifest.config.digest).read_bytes() if model.manifest.config else None
    blobs = {
        layer.digest: store.layout.blob(layer.digest).read_bytes()
        for layer in layers
        if layer.media_type == MEDIA_PARAMS
    }
    gguf = {layer.digest: _blob_header(store, layer.digest) for layer in layers if layer.media_type in _GGUF_MEDIA}
    return BaseModel(model.name.display, layers, config=config, blobs=blobs, gguf=gguf)


def _template_from(store: ModelStore, name: str) -> AutoTemplate:
    """The template (and params) layers of a model in the store, for a GGUF whose chat template we
    cannot match to Ollama's library."""
    model = store.get(store.resolve(ModelName.parse(name)))
    template = next((layer for layer in model.manifest.layers if layer.media_type == MEDIA_TEMPLATE), None)
    if template is None:
        raise InvalidModelfile(f"--template-from {name}: that model has no template layer")
    params_layer = next((layer for layer in model.manifest.layers if layer.media_type == MEDIA_PARAMS), None)
    params = None
    if params_layer is not None:
        from .gojson import decode_object

        params = decode_object(store.layout.blob(params_layer.digest).read_bytes())
    return AutoTemplate(store.layout.blob(template.digest).read_bytes(), params)


async def _ensure_base(
    store: ModelStore, value: str, *, pull: bool, offline: bool, pull_options: PullOptions
) -> InstalledModel:
    try:
        name = store.resolve(ModelName.parse(value))
    except InvalidName as exc:
        raise InvalidModelfile(
            f"FROM {value}: no such file next to the Modelfile, and not a model name ({exc})"
        ) from None
    try:
        return store.get(name)
    except ModelNotFound:
        if offline or not pull:
            raise OfflineError(
                f"FROM {value}: the base model {name.display} is not in {store.root} and "
                + ("this create is offline" if offline else "--no-pull was given")
                + f"; pull it first (ollama-seed pull {name.display}) or import a bundle"
            ) from None
    from ..pulling.api import apull

    await apull(name, models_dir=store.root, **pull_options)
    return store.get(name)


async def acreate(
    name: str | ModelName,
    modelfile: str | os.PathLike[str],
    *,
    models_dir: StrPath | None = None,
    pull: bool = True,
    offline: bool = False,
    template_from: str | None = None,
    era: Era = Era.CURRENT,
    **options: Unpack[PullOptions],
) -> CreateResult:
    """Create the model *name* from the Modelfile at *modelfile* in the store.

    Args:
        pull: pull a ``FROM model:tag`` base that is not in the store (not when *offline*).
        template_from: a model in the store whose template and params layers to use when a GGUF carries
            a chat template and the Modelfile has no TEMPLATE (Ollama matches such templates against a
            library it ships; we do not).
        era: whose ``ollama create`` to imitate (:class:`~.config.Era`).
        options: :class:`~ollama_seed.PullOptions`; ``progress`` gets the create's events, the
            rest apply to pulling a FROM model that is not in the store.

    Raises:
        ConfigError: an option out of range (before any work).
        InvalidModelfile: the Modelfile does not parse, or a file it names is not a usable GGUF.
        OfflineError: the base model is missing and may not be pulled.
        SeedError: as a pull, for the base model; StoreError and InsufficientSpace for the store.
    """
    progress = PullSettings.of(options, caller="acreate").progress
    emit = progress or no_progress
    ref = ModelName.of(name)
    raw, modelfile_path = _read_modelfile(modelfile)
    folder = modelfile_path.parent.absolute()
    try:
        parsed = parse_modelfile(raw)
    except ModelfileError as exc:
        raise InvalidModelfile(str(exc)) from None
    store = ModelStore(models_dir)  # prepared only once the Modelfile and its files passed: no empty store on a refusal
    ref = store.resolve(ref)
    label = ref.display
    warnings = list(parsed.warnings)
    emit(Status(label, "parsing modelfile"))

    files: list[LocalFile] = []
    base_value: str | None = None
    for value in parsed.froms:
        found = await anyio.to_thread.run_sync(local_files, value, folder, "FROM")
        if found is None:
            base_value = value
        else:
            files.extend(found)
    if base_value is not None and files:
        raise InvalidModelfile(
            f"FROM {base_value}: no such file ({expand(base_value, folder)}), so it names a model, but another FROM "
            "names local files; a create builds on local GGUF files or on one model, not both"
        )
    adapter_file: LocalFile | None = None
    if parsed.adapters:
        found = await anyio.to_thread.run_sync(local_files, parsed.adapters[-1], folder, "ADAPTER")
        if not found:
            raise InvalidModelfile(
                f"ADAPTER {parsed.adapters[-1]}: no such file: {expand(parsed.adapters[-1], folder)} (an adapter is "
                "a local file; a relative path is read from the Modelfile's folder)"
            )
        if len(found) > 1:
            raise InvalidModelfile(f"ADAPTER {parsed.adapters[-1]}: only one adapter is currently supported")
        adapter_file = found[0]

    copied = reused = 0

    async def bring(local: LocalFile) -> GGUFFile:
        nonlocal copied, reused
        emit(Status(label, f"copying file {local.path.name}"))
        key = f"file:{local.path.name}"

        def step(done: int, total: int) -> None:
            emit(LayerProgress(label, key, MEDIA_MODEL, total, done))

        gguf, existed = await anyio.to_thread.run_sync(ingest_gguf, store, local, step, abandon_on_cancel=False)
        if existed:
            reused += gguf.size
        else:
            copied += gguf.size
        emit(LayerProgress(label, key, MEDIA_MODEL, gguf.size, gguf.size, cached=existed, done=True))
        return gguf

    if files or adapter_file is not None:
        store.prepare()
    ggufs = [await bring(f) for f in files]
    adapter = await bring(adapter_file) if adapter_file is not None else None
    base = None
    base_name: ModelName | None = None
    if base_value is not None:
        model = await _ensure_base(store, base_value, pull=pull, offline=offline, pull_options=options)
        base_name = model.name
        base = await anyio.to_thread.run_sync(_base, store, model)
    store.prepare()
    sources = [f.path for f in files] + ([adapter_file.path] if adapter_file is not None else [])

    auto = None
    if not parsed.template and base is None:
        chat = next((g.info.chat_template for g in ggufs if g.info.chat_template), None)
        if template_from is not None:
            auto = await anyio.to_thread.run_sync(_template_from, store, template_from)
        elif chat is not None:
            warnings.append(
                "the GGUF carries a chat template, which Ollama would match against the templates it "
                "ships; ollama-seed does not ship them, so this model has no template: add a TEMPLATE "
                "to the Modelfile, or --template-from MODEL to reuse a model's template and params"
            )
    try:
        plan = plan_create(
            parsed,
            ggufs=ggufs,
            adapter=adapter,
            base=base,
            auto_template=auto,
            era=era,
            models_dir=str(store.root) if era is Era.CLASSIC else None,
        )
    except CreateError as exc:
        raise InvalidModelfile(str(exc)) from None

    path = store.layout.manifest(ref)
    try:
        existing = store.read_manifest(ref)
    except StoreError:  # unreadable (torn by a crash, or Ollama's): overwritten, as pull and import do
        existing = None
    if existing is not None and existing.raw == plan.manifest and not store.missing(existing):
        remember(store, ref, modelfile_path, sources, base_name, plan.manifest_digest)
        emit(Status(label, "success"))
        return CreateResult(ref, plan.manifest_digest, path, len(plan.layers), copied, reused, True, tuple(warnings))
    emit(Status(label, "writing layers"))
    for blob in plan.new_blobs:
        assert blob.data is not None
        await anyio.to_thread.run_sync(ingest_bytes, store, blob.data, blob.media_type)
    emit(Status(label, "writing manifest"))
    manifest = Manifest.parse(plan.manifest, source="the created manifest")
    await anyio.to_thread.run_sync(store.write_manifest, ref, manifest)
    remember(store, ref, modelfile_path, sources, base_name, plan.manifest_digest)
    emit(Status(label, "success"))
    return CreateResult(ref, plan.manifest_digest, path, len(plan.layers), copied, reused, False, tuple(warnings))


create = blocking(acreate)
