"""The layer builder: Ollama's layer order, replacement and merge rules, eras, config derivation."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping

import pytest

from ollama_seed.core.digest import Digest
from ollama_seed.core.errors import RegistryProtocolError
from ollama_seed.creation.config import (
    MEDIA_ADAPTER,
    MEDIA_MODEL,
    MEDIA_PROJECTOR,
    Era,
    ModelFields,
    config_blob,
    file_type_name,
    human_number,
)
from ollama_seed.creation.gguf import read_gguf
from ollama_seed.creation.layers import (
    MEDIA_PARAMS,
    AutoTemplate,
    BaseModel,
    Blob,
    CreateError,
    CreatePlan,
    GGUFFile,
    manifest_layers,
    plan_create,
)
from ollama_seed.creation.modelfile import parse_modelfile
from tests.support import ggufmake as gm


def gguf_file(
    key: str = "model.gguf",
    arch: str = "llama",
    extra: tuple[bytes, ...] = (),
    tensors: tuple[bytes, ...] = (),
    data_bytes: int = 4096,
) -> GGUFFile:
    data = gm.gguf([gm.arch(arch), *extra], tensors)
    data += bytes(-len(data) % 32) + bytes(data_bytes) if tensors else b""
    return GGUFFile(key, Digest(hashlib.sha256(data).hexdigest()), len(data), read_gguf(io.BytesIO(data)))


MODEL = gguf_file()


def plan(text: str, **kw: object) -> CreatePlan:
    if "base" not in kw:
        kw.setdefault("ggufs", [MODEL])
    return plan_create(parse_modelfile(text), **kw)  # type: ignore[arg-type]


def kinds(p: CreatePlan) -> list[str]:
    return [layer.media_type.rsplit(".", 1)[-1] for layer in p.layers]


def config(p: CreatePlan) -> dict[str, object]:
    doc = json.loads(p.config.data or b"")
    assert isinstance(doc, dict)
    return doc


def text_of(p: CreatePlan, kind: str) -> list[bytes]:
    return [layer.data or b"" for layer in p.layers if layer.media_type.endswith("." + kind)]


AUTO = AutoTemplate(b"{{ .Prompt }}", {"stop": ["<|end|>"]})


def test_order_with_an_auto_template() -> None:
    p = plan(
        "FROM ./model.gguf\nMESSAGE user hi\nLICENSE a\nSYSTEM s\nLICENSE b\nPARAMETER top_k 5\n", auto_template=AUTO
    )
    assert kinds(p) == ["model", "template", "system", "license", "license", "params", "messages"]
    assert text_of(p, "license") == [b"a", b"b"]
    assert text_of(p, "params") == [b'{"stop":["\\u003c|end|\\u003e"],"top_k":5}\n']


def test_an_explicit_template_replaces_the_auto_one_but_its_params_stay() -> None:
    p = plan("FROM ./model.gguf\nTEMPLATE mine\n", auto_template=AUTO)
    assert kinds(p) == ["model", "template", "params"]
    assert text_of(p, "template") == [b"mine"]
    assert text_of(p, "params") == [b'{"stop":["\\u003c|end|\\u003e"]}\n']


def test_a_user_stop_replaces_the_whole_auto_stop_list() -> None:
    p = plan("FROM ./model.gguf\nPARAMETER stop X\n", auto_template=AUTO)
    assert text_of(p, "params") == [b'{"stop":["X"]}\n']


def test_empty_system_and_template_write_nothing_empty_license_writes_an_empty_blob() -> None:
    p = plan('FROM ./model.gguf\nSYSTEM ""\nTEMPLATE """"""\nLICENSE ""\n')
    assert kinds(p) == ["model", "license"]
    assert p.layers[1].digest.hex == hashlib.sha256(b"").hexdigest() and p.layers[1].size == 0


def test_no_parameters_anywhere_means_no_params_layer() -> None:
    assert kinds(plan("FROM ./model.gguf\n")) == ["model"]


def test_float_parameters_go_through_float32_and_ints_through_float64() -> None:
    p = plan(
        "FROM ./model.gguf\nPARAMETER temperature 0.123456789\nPARAMETER seed 9007199254740993\n"
        "PARAMETER use_mmap false\nPARAMETER top_p 1e-7\n"
    )
    assert text_of(p, "params") == [
        b'{"seed":9007199254740992,"temperature":0.12345679,"top_p":1e-7,"use_mmap":false}\n'
    ]


BASE_PARAMS = b'{\n  "temperature": 0.70,\n  "stop": ["<|eot_id|>"]\n}\n'


def base(
    era_layers: list[tuple[str, bytes]] | None = None, config_doc: Mapping[str, object] | None = None
) -> BaseModel:
    layers = [Blob(MEDIA_MODEL, MODEL.digest, MODEL.size, from_="old", name=None)]
    blobs: dict[Digest, bytes] = {}
    for media, data in era_layers or [("template", b"T"), ("license", b"L"), ("params", BASE_PARAMS)]:
        blob = Blob.of(f"application/vnd.ollama.image.{media}", data)
        layers.append(blob)
        blobs[blob.digest] = data
    raw = json.dumps(config_doc or {"model_format": "gguf", "renderer": "r0", "parser": "p0"}).encode()
    return BaseModel("llama3.2:latest", layers, raw, blobs, {MODEL.digest: MODEL.info})


def test_from_a_model_reuses_every_layer_with_the_base_name_and_appends_in_ollamas_order() -> None:
    p = plan("FROM llama3.2\nSYSTEM be brief\nPARAMETER top_k 5\n", base=base())
    assert kinds(p) == ["model", "template", "license", "system", "params"]
    assert [layer.from_ for layer in p.layers] == ["llama3.2:latest"] * 3 + [None, None]
    assert all(layer.data is None for layer in p.layers[:3])
    # merged: the new key added, the base keys kept, re-encoded the Go way
    assert text_of(p, "params") == [b'{"stop":["\\u003c|eot_id|\\u003e"],"temperature":0.7,"top_k":5}\n']


def test_from_a_model_a_new_template_moves_to_the_end() -> None:
    p = plan("FROM llama3.2\nTEMPLATE new\n", base=base())
    assert kinds(p) == ["model", "license", "template", "params"]


def test_the_base_params_are_re_encoded_even_without_parameter_lines() -> None:
    p = plan("FROM llama3.2\n", base=base())
    [params] = [layer for layer in p.layers if layer.media_type == MEDIA_PARAMS]
    assert params.data == b'{"stop":["\\u003c|eot_id|\\u003e"],"temperature":0.7}\n' and params.from_ is None


def test_base_messages_stay_unless_replaced() -> None:
    layers = [("system", b"S"), ("messages", b'[{"role":"user","content":"x"}]\n')]
    kept = plan("FROM llama3.2\nLICENSE MIT\n", base=base(layers))
    assert kinds(kept) == ["model", "system", "messages", "license"]
    replaced = plan("FROM llama3.2\nMESSAGE user y\n", base=base(layers))
    assert kinds(replaced) == ["model", "system", "messages"]
    assert text_of(replaced, "messages") == [b'[{"role":"user","content":"y"}]\n']


def test_config_inherits_from_the_base_and_explicit_values_win() -> None:
    doc = {
        "model_format": "gguf",
        "renderer": "r0",
        "parser": "p0",
        "requires": "0.14.0",
        "capabilities": ["completion", "vision"],
    }
    p = plan("FROM llama3.2\nPARSER mine\n", base=base(config_doc=doc))
    c = config(p)
    assert (c["renderer"], c["parser"], c["requires"], c["capabilities"]) == (
        "r0",
        "mine",
        "0.14.0",
        ["completion", "vision"],
    )
    assert list(c) == [
        "model_format",
        "model_family",
        "model_families",
        "model_type",
        "file_type",
        "renderer",
        "parser",
        "requires",
        "capabilities",
        "architecture",
        "os",
    ]


def test_classic_era_from_is_the_blob_path_and_rootfs_lists_every_layer() -> None:
    p = plan("FROM ./model.gguf\nSYSTEM s\n", era=Era.CLASSIC, models_dir="/root/.ollama/models/")
    assert p.layers[0].from_ == f"/root/.ollama/models/blobs/sha256-{MODEL.digest.hex}"
    assert config(p)["rootfs"] == {"type": "layers", "diff_ids": [str(layer.digest) for layer in p.layers]}
    windows = plan("FROM ./model.gguf\n", era=Era.CLASSIC, models_dir="C:\\Users\\me\\.ollama\\models")
    assert windows.layers[0].from_ == f"C:\\Users\\me\\.ollama\\models\\blobs\\sha256-{MODEL.digest.hex}"


def test_classic_era_needs_the_models_dir() -> None:
    with pytest.raises(CreateError, match="models_dir"):
        plan("FROM ./model.gguf\n", era=Era.CLASSIC)


def test_current_eras_from_follows_what_ollama_keeps() -> None:
    vision = gguf_file(
        "model.gguf", "gemma3", (gm.kv("gemma3.block_count", gm.U32, 2),), (gm.tensor_info("v.patch_embd.weight", [4]),)
    )
    proj = gguf_file("mmproj.gguf", "clip", (gm.kv("general.type", gm.STR, "mmproj"),))
    p = plan("FROM .\n", ggufs=[vision, proj], era=Era.REWRITE)
    assert [(layer.media_type, layer.from_) for layer in p.layers] == [
        (MEDIA_PROJECTOR, "mmproj.gguf"),
        (MEDIA_MODEL, "model.gguf"),
    ]  # sorted by name
    assert [layer.from_ for layer in plan("FROM ./model.gguf\n").layers] == [None]  # Ollama rewrites it


def test_model_families_per_era() -> None:
    proj = gguf_file("a-mmproj.gguf", "clip", (gm.kv("general.type", gm.STR, "projector"),))
    classic = config(plan("FROM .\n", ggufs=[MODEL, proj], era=Era.CLASSIC, models_dir="/m"))
    current = config(plan("FROM .\n", ggufs=[MODEL, proj]))
    assert classic["model_families"] == ["llama", "clip"] and current["model_families"] == ["llama"]
    assert classic["model_family"] == current["model_family"] == "llama"


def test_mmproj_is_a_projector_only_for_current_ollama() -> None:
    proj = gguf_file("p.gguf", "clip", (gm.kv("general.type", gm.STR, "mmproj"),))
    assert plan("FROM .\n", ggufs=[proj]).layers[0].media_type == MEDIA_PROJECTOR
    assert plan("FROM .\n", ggufs=[proj], era=Era.CLASSIC, models_dir="/m").layers[0].media_type == MEDIA_MODEL


def test_an_adapter_goes_after_the_model_and_must_be_one() -> None:
    lora = gguf_file("lora.gguf", "llama", (gm.kv("general.type", gm.STR, "adapter"),))
    p = plan("FROM ./model.gguf\nADAPTER ./lora.gguf\nSYSTEM s\n", adapter=lora)
    assert [(layer.media_type, layer.from_) for layer in p.layers[:2]] == [
        (MEDIA_MODEL, None),
        (MEDIA_ADAPTER, "lora.gguf"),
    ]
    with pytest.raises(CreateError, match="not a LoRA adapter"):
        plan("FROM ./model.gguf\nADAPTER ./x.gguf\n", adapter=gguf_file("x.gguf"))


@pytest.mark.parametrize(
    ("arch", "renderer"), [("gemma4", "gemma4"), ("laguna", "laguna"), ("nemotron_h_moe", "nemotron-3-nano")]
)
def test_architecture_defaults(arch: str, renderer: str) -> None:
    f = gguf_file(arch=arch)
    c = config(plan("FROM ./model.gguf\n", ggufs=[f]))
    assert (c["renderer"], c["parser"]) == (renderer, renderer)
    stop = text_of(plan("FROM ./model.gguf\n", ggufs=[f]), "params")
    assert stop == ([b'{"stop":["\\u003cturn|\\u003e"]}\n'] if arch == "gemma4" else [])
    explicit = plan("FROM ./model.gguf\nRENDERER mine\nPARAMETER stop x\n", ggufs=[f])
    assert config(explicit)["renderer"] == "mine" and config(explicit)["parser"] == renderer
    assert text_of(explicit, "params") == [b'{"stop":["x"]}\n']
    assert "renderer" not in config(plan("FROM ./model.gguf\n", ggufs=[f], era=Era.CLASSIC, models_dir="/m"))


def test_model_type_and_file_type_come_from_the_header() -> None:
    i8 = 24  # one byte per element
    f = gguf_file(
        extra=(gm.kv("general.file_type", gm.U32, 15),),
        data_bytes=1_100_000,
        tensors=(gm.tensor_info("a", [1000, 1000], i8), gm.tensor_info("b", [100, 1000], i8, 1_000_000)),
    )
    c = config(plan("FROM ./model.gguf\n", ggufs=[f]))
    assert (c["model_type"], c["file_type"]) == ("1.10M", "Q4_K_M")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (1500, "2K"),
        (2500, "2K"),
        (999_999, "1000K"),
        (1_000_000, "1M"),
        (268_100_000, "268.10M"),
        (7_000_000_000, "7B"),
        (8_030_000_000, "8.0B"),
        (8_050_000_000, "8.1B"),
        (1_234_567_890_123, "1234.6B"),
    ],
)
def test_human_number(n: int, text: str) -> None:
    assert human_number(n) == text


@pytest.mark.parametrize(
    ("ft", "era", "name"),
    [
        (None, Era.CURRENT, "unknown"),
        (0, Era.CURRENT, "unknown"),
        (1, Era.CURRENT, "F16"),
        (15, Era.CURRENT, "Q4_K_M"),
        (19, Era.CURRENT, "IQ2_XXS"),
        (19, Era.CLASSIC, "unknown"),
        (4, Era.CURRENT, "unknown"),
        (4, Era.CLASSIC, "MXFP4"),
        (32, Era.CLASSIC, "BF16"),
        (40, Era.CURRENT, "Q1_0"),
        (41, Era.CURRENT, "unknown"),
    ],
)
def test_file_type_names(ft: int | None, era: Era, name: str) -> None:
    assert file_type_name(ft, era) == name


def test_config_without_gguf_layers_has_null_families() -> None:
    assert config_blob(ModelFields()) == (
        b'{"model_format":"","model_family":"","model_families":null,'
        b'"model_type":"","file_type":"","architecture":"amd64","os":"linux"}\n'
    )


def test_new_blobs_once_each_config_last_provided_ones_left_out() -> None:
    p = plan("FROM ./model.gguf\nLICENSE MIT\nLICENSE MIT\nSYSTEM other\n")
    assert kinds(p) == ["model", "system", "license", "license"]
    new = p.new_blobs
    assert [b.media_type.rsplit(".", 1)[-1] for b in new] == ["system", "license", "v1+json"]
    assert new[-1] is p.config and all(b.data is not None for b in new)
    assert MODEL.digest not in {b.digest for b in new}


def test_manifest_layers_keep_names_for_reuse() -> None:
    a, b = "a" * 64, "b" * 64
    raw = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": f"sha256:{b}",
                "size": 3,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.ollama.image.tensor",
                    "digest": f"sha256:{a}",
                    "size": 5,
                    "name": "w.weight",
                    "from": "x",
                }
            ],
        }
    ).encode()
    [layer] = manifest_layers(raw)
    assert (layer.name, layer.size, layer.from_) == ("w.weight", 5, None)
    p = plan("FROM x\n", base=BaseModel("me/x:v1", [layer]))
    assert b'"size":5,"from":"me/x:v1","name":"w.weight"}' in p.manifest
    assert config(p)["model_families"] is None
    with pytest.raises(RegistryProtocolError):
        manifest_layers(b"{}")


def test_inputs_that_cannot_make_a_create() -> None:
    with pytest.raises(CreateError, match="DRAFT"):
        plan("FROM x\nDRAFT ./d\n")
    with pytest.raises(CreateError, match="neither"):
        plan_create(parse_modelfile("FROM x\n"))
    with pytest.raises(CreateError, match="both"):
        plan_create(parse_modelfile("FROM x\n"), ggufs=[MODEL], base=BaseModel("x:latest", []))


def test_a_base_model_missing_what_the_merge_needs() -> None:
    no_header = BaseModel("x:latest", [Blob(MEDIA_MODEL, MODEL.digest, MODEL.size)])
    with pytest.raises(CreateError, match=r"BaseModel\.gguf"):
        plan("FROM x\n", base=no_header)
    params = Blob.of(MEDIA_PARAMS, b"{}")
    with pytest.raises(CreateError, match=r"BaseModel\.blobs"):
        plan("FROM x\n", base=BaseModel("x:latest", [params]))
    bad = Blob.of(MEDIA_PARAMS, b"[1]")
    with pytest.raises(CreateError, match="not a JSON object"):
        plan("FROM x\n", base=BaseModel("x:latest", [bad], blobs={bad.digest: b"[1]"}))
    with pytest.raises(CreateError, match="config blob is not JSON"):
        plan("FROM x\n", base=BaseModel("x:latest", [], config=b"{"))
