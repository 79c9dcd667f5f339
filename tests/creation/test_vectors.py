"""Ollama's own expected digests (server/routes_create_test.go), reproduced by our create core.

Each blob digest below is hard-coded in Ollama's Go tests (at v0.11.0, v0.24.0 and v0.33.0-rc2, per
the research notes), so matching it means our bytes are the bytes Ollama writes. The Go tests send the
create request as JSON; here the same inputs come through a Modelfile where a Modelfile can say them.
"""

from __future__ import annotations

import hashlib
import io

import pytest

from ollama_seed.core.digest import Digest
from ollama_seed.creation.config import Era
from ollama_seed.creation.gguf import read_gguf
from ollama_seed.creation.layers import (
    MEDIA_LICENSE,
    MEDIA_MESSAGES,
    MEDIA_PARAMS,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    AutoTemplate,
    BaseModel,
    CreatePlan,
    GGUFFile,
    plan_create,
)
from ollama_seed.creation.modelfile import parse_modelfile
from tests.support import ggufmake as gm

GGUF_TEST = "89a2116c3a82d6a97f59f748d86ed4417214353fd178ee54df418fde32495fad"
GGUF_EMPTY = "a4e5e156ddec27e286f75328784d7106b60a4eb1d246e950a001a3f944fbda99"
GGUF_PHI3 = "3322a0c650c758b7386ff55629d27d07c07b6c3d3515e259dc3e5598c41e9f4e"
CONFIG = "99759ad5b91e723db0393d698ffbb448b1b7df5ff6377a108c49254583b1bc8c"
CONFIG_ROOTFS = "6bcdb8859d417753645538d7bbfbd7ca91a3f0c191aef5379c53c05e86b669dd"
CONFIG_EMPTY_ROOTFS = "ca239d7bd8ea90e4a5d2e6bf88f8d74a47b14336e73eb4e18bed4dd325018116"
SYSTEM = "f29e82a8284dbdf5910b1555580ff60b04238b8da9d5e51159ada67a4d0d5851"
TEMPLATE = "fe7ac77b725cda2ccad03f88a880ecdfd7a33192d6cae08fce2c0ee1455991ed"
MIT = "e5dcffe836b6ec8a58e492419b550e65fb8cbdc308503979e5dacb33ac7ea3b7"
APACHE = "2af71558e438db0b73a20beab92dc278a94e1bbe974c00c1a33e3ab62d53a608"
PARAMS = "1d0ad71299d48c2fb7ae2b98e683643e771f8a5b72be34942af90d97a91c1e37"
PARAMS_MERGED = "e29a7b3c47287a2489c895d21fe413c20f859a85d20e749492f52a838e36e1ba"
PARAMS_ENDOFTEXT = "12f58bb75cb3042d69a7e013ab87fb3c3c7088f50ddc62f0c77bd332f0d44d35"
MESSAGES = "298baeaf6928a60cf666d88d64a1ba606feb43a2865687c39e40652e407bffc4"
MESSAGES_REPLACED = "a60ecc9da299ec7ede453f99236e5577fd125e143689b646d9f0ddc9971bf4db"
PARAMS_PHI3 = "0d79f567714c62c048378f2107fb332dabee0135d080c302d884317da9433cc5"

PHI3_JINJA = (
    "{{ bos_token }}{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + "
    "message['content'] + '<|end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}"
    "{% else %}{{ eos_token }}{% endif %}"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gguf_file(data: bytes, key: str = "test.gguf") -> GGUFFile:
    return GGUFFile(key, Digest(sha(data)), len(data), read_gguf(io.BytesIO(data)))


TEST_GGUF = gm.gguf([gm.arch("test")])


def create(text: str, **kw: object) -> CreatePlan:
    kw.setdefault("ggufs", [gguf_file(TEST_GGUF)])
    return plan_create(parse_modelfile(text), **kw)  # type: ignore[arg-type]


def digests(plan: CreatePlan, media_type: str) -> list[str]:
    return [layer.digest.hex for layer in plan.layers if layer.media_type == media_type]


def test_the_test_gguf_is_ollamas_68_bytes_and_reads_back() -> None:
    assert len(TEST_GGUF) == 68 and sha(TEST_GGUF) == GGUF_TEST
    info = read_gguf(io.BytesIO(TEST_GGUF))
    assert (info.architecture, info.parameter_count, info.file_type, info.tensor_count) == ("test", 0, None, 0)


def test_config_without_rootfs_v0_32_7_and_later() -> None:
    plan = create("FROM ./test.gguf\n", era=Era.CURRENT)
    assert plan.config.digest.hex == CONFIG and plan.config.size == 147
    assert [layer.digest.hex for layer in plan.layers] == [GGUF_TEST]


@pytest.mark.parametrize("era", [Era.REWRITE, Era.CLASSIC])
def test_config_with_rootfs_up_to_v0_32_6(era: Era) -> None:
    plan = create("FROM ./test.gguf\n", era=era, models_dir="/root/.ollama/models")
    assert plan.config.digest.hex == CONFIG_ROOTFS


def test_gguf_without_metadata_and_its_config() -> None:
    empty = gm.gguf()
    assert len(empty) == 24 and sha(empty) == GGUF_EMPTY
    plan = create("FROM ./test.gguf\n", ggufs=[gguf_file(empty)], era=Era.CLASSIC, models_dir="/m")
    assert plan.config.digest.hex == CONFIG_EMPTY_ROOTFS
    assert b'"model_family":"unknown"' in (plan.config.data or b"")


def test_system_template_and_licenses_are_raw_text() -> None:
    plan = create(
        'FROM ./test.gguf\nSYSTEM Say hi!\nTEMPLATE "{{ .System }} {{ .Prompt }}"\nLICENSE MIT\nlicense Apache-2.0\n'
    )
    assert digests(plan, MEDIA_SYSTEM) == [SYSTEM]
    assert digests(plan, MEDIA_TEMPLATE) == [TEMPLATE]
    assert digests(plan, MEDIA_LICENSE) == [MIT, APACHE]


def test_params_sorted_with_whole_numbers_without_a_point() -> None:
    plan = create(
        "FROM ./test.gguf\nPARAMETER temperature 1\nPARAMETER top_k 10\n"
        "PARAMETER stop USER:\nPARAMETER stop ASSISTANT:\n"
    )
    [params] = [layer for layer in plan.layers if layer.media_type == MEDIA_PARAMS]
    assert params.data == b'{"stop":["USER:","ASSISTANT:"],"temperature":1,"top_k":10}\n'
    assert params.digest.hex == PARAMS


def base_model(plan: CreatePlan) -> BaseModel:
    """The model *plan* created, as a FROM-model create sees it."""
    return BaseModel(
        name="test:latest",
        layers=plan.layers,
        config=plan.config.data,
        blobs={b.digest: b.data for b in plan.layers if b.data is not None},
        gguf={Digest(GGUF_TEST): read_gguf(io.BytesIO(TEST_GGUF))},
    )


def test_params_merged_over_a_base_model_and_lists_replaced() -> None:
    base = base_model(
        create(
            "FROM ./test.gguf\nPARAMETER temperature 1\nPARAMETER top_k 10\n"
            "PARAMETER stop USER:\nPARAMETER stop ASSISTANT:\n"
        )
    )
    merged = plan_create(parse_modelfile("FROM test\nPARAMETER temperature 0.6\nPARAMETER top_p 0.7\n"), base=base)
    assert digests(merged, MEDIA_PARAMS) == [PARAMS_MERGED]
    replaced = plan_create(
        parse_modelfile("FROM test\nPARAMETER temperature 0.6\nPARAMETER top_p 0.7\nPARAMETER stop <|endoftext|>\n"),
        base=base,
    )
    assert digests(replaced, MEDIA_PARAMS) == [PARAMS_ENDOFTEXT]
    assert b'"\\u003c|endoftext|\\u003e"' in (replaced.layers[-1].data or b"")


def test_messages_and_their_replacement_from_a_base_model() -> None:
    plan = create(
        "FROM ./test.gguf\nMESSAGE assistant What is my purpose?\nMESSAGE user You run tests.\n"
        "MESSAGE assistant Oh, my god.\n"
    )
    assert digests(plan, MEDIA_MESSAGES) == [MESSAGES]
    derived = plan_create(
        parse_modelfile(
            "FROM test\nMESSAGE assistant You're a test, Harry.\nMESSAGE user I-I'm a what?\n"
            "MESSAGE assistant A test. And a thumping good one at that, I'd wager.\n"
        ),
        base=base_model(plan),
    )
    assert digests(derived, MEDIA_MESSAGES) == [MESSAGES_REPLACED]


def test_auto_detected_phi3_gguf_and_its_stop_params() -> None:
    phi3 = gm.gguf([gm.arch("test"), gm.kv("tokenizer.chat_template", gm.STR, PHI3_JINJA)])
    assert sha(phi3) == GGUF_PHI3
    info = read_gguf(io.BytesIO(phi3))
    assert info.chat_template == PHI3_JINJA
    # The template bytes are Ollama's phi-3.gotmpl (its MIT file, not shipped here): a stand-in.
    auto = AutoTemplate(b"stand-in template\r\n", {"stop": ["<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]})
    plan = plan_create(parse_modelfile("FROM ./test.gguf\n"), ggufs=[gguf_file(phi3)], auto_template=auto)
    assert [layer.media_type.rsplit(".", 1)[-1] for layer in plan.layers] == ["model", "template", "params"]
    assert plan.layers[1].data == b"stand-in template\n"
    assert digests(plan, MEDIA_PARAMS) == [PARAMS_PHI3]


def test_the_manifest_example_byte_for_byte() -> None:
    plan = create("FROM ./test.gguf\nSYSTEM Say hi!\n")
    assert plan.manifest == (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":'
        b'{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:'
        + CONFIG.encode()
        + b'","size":147},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:'
        + GGUF_TEST.encode()
        + b'","size":68},{"mediaType":"application/vnd.ollama.image.system","digest":'
        b'"sha256:' + SYSTEM.encode() + b'","size":7}]}\n'
    )
    assert plan.manifest_digest.hex == sha(plan.manifest)
