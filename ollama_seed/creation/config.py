"""The config blob ``ollama create`` writes (``application/vnd.docker.container.image.v1+json``), and the
Ollama version eras whose bytes differ.

The config is Ollama's ``ConfigV2`` struct through Go's JSON encoder: ``model_format``, ``model_family``,
``model_families``, ``model_type``, ``file_type``, the optional ``renderer``/``parser``/``requires``/
``capabilities``, ``architecture: "amd64"``, ``os: "linux"`` (constants, whatever the host), and until
v0.32.6 ``rootfs`` with the digests of every layer. The model fields come from the GGUF header:
``model_type`` is the tensor parameter count as Ollama's ``format.HumanNumber`` writes it (``8.0B``,
``268.10M``, ``0``), ``file_type`` the name of ``general.file_type`` (``unknown`` for F32 or a missing key).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from .gguf import GGUFInfo
from .gojson import GoValue, Struct, encode

__all__ = [
    "FILE_TYPES",
    "FILE_TYPES_V0_13",
    "MEDIA_ADAPTER",
    "MEDIA_MODEL",
    "MEDIA_PROJECTOR",
    "Era",
    "ModelFields",
    "config_blob",
    "file_type_name",
    "human_number",
    "model_fields",
]

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"


class Era(enum.Enum):
    """Which Ollama's ``create`` to imitate byte for byte.

    Every era's Ollama reads every era's store: the differences are which bytes a create writes (so which
    digests), not what a reader needs (Go's JSON decoder ignores a missing or an extra ``rootfs``).
    """

    CLASSIC = "classic"
    """v0.7.1 - v0.24.x: the GGUF layer's ``from`` is the blob's absolute path; ``rootfs`` in the config;
    ``model_families`` lists projectors and adapters too."""
    REWRITE = "rewrite"
    """v0.30.0 - v0.32.6: still ``rootfs``; families of model layers only; arch defaults (gemma4, laguna,
    nemotron_h). Ollama rewrites a text-only GGUF through ``llama-quantize ... COPY`` into a new blob with
    no ``from`` (bytes that depend on its bundled llama.cpp); we store the GGUF as-is but write the layer
    as the rewrite would (no ``from``), so the manifest matches Ollama's wherever the rewrite is a copy.
    GGUFs Ollama keeps as-is (with ``v.``/``mm.``/... tensors, projectors, adapters) get ``from`` = the
    file's name, as there."""
    CURRENT = "current"
    """v0.32.7 - v0.33.0-rc2 (the newest checked): as REWRITE, without ``rootfs``. The default."""

    @property
    def rootfs(self) -> bool:
        return self is not Era.CURRENT

    @property
    def classic(self) -> bool:
        return self is Era.CLASSIC


# fs/ggml/type.go at v0.33.0-rc2
FILE_TYPES: dict[int, str] = {
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}
# v0.13.5: 4 is MXFP4; no IQ*, TQ*, MXFP4_MOE, NVFP4 or Q1_0 names
FILE_TYPES_V0_13: dict[int, str] = {
    **{
        k: v
        for k, v in FILE_TYPES.items()
        if not v.startswith(("IQ", "TQ")) and v not in ("MXFP4_MOE", "NVFP4", "Q1_0")
    },
    4: "MXFP4",
}


def file_type_name(file_type: int | None, era: Era = Era.CURRENT) -> str:
    """``FileType(general.file_type).String()``: the name, or ``unknown`` (F32 = 0 and missing included)."""
    names = FILE_TYPES_V0_13 if era.classic else FILE_TYPES
    return names.get(file_type, "unknown") if file_type else "unknown"


def human_number(n: int) -> str:
    """Ollama's ``format.HumanNumber``: ``7B``, ``8.0B``, ``268.10M``, ``500K``, ``0``."""
    if n >= 1_000_000_000:
        x = float(n) / 1e9
        return f"{x:.0f}B" if x.is_integer() else f"{x:.1f}B"
    if n >= 1_000_000:
        x = float(n) / 1e6
        return f"{x:.0f}M" if x.is_integer() else f"{x:.2f}M"
    if n >= 1_000:
        return f"{float(n) / 1e3:.0f}K"
    return str(n)


@dataclass(frozen=True, slots=True)
class ModelFields:
    """The config fields a create derives from its GGUF layers."""

    model_format: str = ""
    model_family: str = ""
    model_families: tuple[str, ...] | None = None  # None: Go's nil slice, written as null
    model_type: str = ""
    file_type: str = ""


def _or(*values: str) -> str:
    """Go's ``cmp.Or``: the first non-empty string."""
    return next((v for v in values if v), "")


def model_fields(
    ggufs: Sequence[tuple[str, GGUFInfo]], era: Era = Era.CURRENT, *, model_format: str = ""
) -> ModelFields:
    """Derive the model fields from ``(media type, header)`` of the GGUF layers, in layer order.

    CLASSIC takes each field from the first GGUF layer of any kind and lists every GGUF's architecture;
    later eras look at ``model`` layers only. *model_format* is one inherited from a base model's config
    (it wins, as in Ollama).
    """
    used = [info for media, info in ggufs if era.classic or media == MEDIA_MODEL]
    if not used:
        return ModelFields(model_format=model_format)
    return ModelFields(
        model_format=_or(model_format, *("gguf" for _ in used)),
        model_family=_or(*(info.architecture for info in used)),
        model_families=tuple(info.architecture for info in used),
        model_type=_or(*(human_number(info.parameter_count) for info in used)),
        file_type=_or(*(file_type_name(info.file_type, era) for info in used)),
    )


def config_blob(
    fields: ModelFields,
    *,
    renderer: str = "",
    parser: str = "",
    requires: str = "",
    capabilities: Sequence[str] = (),
    diff_ids: Sequence[str] | None = None,
) -> bytes:
    """The config blob's bytes. ``diff_ids`` (the ``sha256:<hex>`` of every manifest layer, in order)
    adds ``rootfs`` as Ollama up to v0.32.6 writes it; None leaves it out (v0.32.7+)."""
    items: list[tuple[str, GoValue]] = [
        ("model_format", fields.model_format),
        ("model_family", fields.model_family),
        ("model_families", None if fields.model_families is None else list(fields.model_families)),
        ("model_type", fields.model_type),
        ("file_type", fields.file_type),
    ]
    for key, value in (("renderer", renderer), ("parser", parser), ("requires", requires)):
        if value:
            items.append((key, value))
    if capabilities:
        items.append(("capabilities", list(capabilities)))
    items += [("architecture", "amd64"), ("os", "linux")]
    if diff_ids is not None:
        items.append(("rootfs", Struct([("type", "layers"), ("diff_ids", list(diff_ids))])))
    return encode(Struct(items))
