"""Ollama's own name tests, run against ollama_seed's parser.

The cases are data (``ollama_names.json``, beside this file), transcribed from Ollama's test files
at the commit its ``origin`` names: ``types/model/name_test.go`` (the name grammar),
``internal/modelref/modelref_test.go`` and ``server/model_resolver_test.go`` (what the pull
handler does to a name first: white space, ``:local``, ``:cloud``) and ``format/bytes_test.go``
(the sizes ``ollama list`` prints). Nobody here wrote the expectations, so they check us.

Where ollama_seed deliberately differs, it is tested here too and said in README.md ("Names"):
a pinned ``@sha256:`` digest, a scheme other than http(s) refused when pulling, names Windows
cannot store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollama_seed import InvalidName, ModelName
from ollama_seed.core.layout import ModelsLayout
from ollama_seed.core.progress import human_bytes

_DATA = json.loads((Path(__file__).parent / "ollama_names.json").read_text(encoding="utf-8"))
_CONSTANTS: dict[str, str] = _DATA["constants"]


def _expand(value: Any) -> Any:
    """``{part80}`` and ``{part350}`` are the long parts Ollama's tests build from constants."""
    if isinstance(value, str):
        for key, text in _CONSTANTS.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    return value


def _cases(table: str) -> list[Any]:
    return [_expand(case) for case in _DATA[table]["cases"]]


def _ids(table: str, key: str) -> list[str]:
    return [repr(str(_expand(case[key]))[:40]) for case in _DATA[table]["cases"]]


def _outcome(text: str) -> ModelName | str:
    try:
        return ModelName.parse(text)
    except InvalidName:
        return "refused"


def test_the_tables_say_where_they_come_from() -> None:
    origin = _DATA["origin"]
    assert origin["repository"] == "https://github.com/ollama/ollama"
    assert len(origin["commit"]) == 40
    for table in (k for k in _DATA if k not in ("origin", "constants")):
        source = _DATA[table]["source"]
        assert any(source.startswith(path) for path in origin["files"]), table
    assert sum(len(_DATA[t]["cases"]) for t in _DATA if t not in ("origin", "constants")) >= 120


@pytest.mark.parametrize("case", _cases("parse_name_parts"), ids=_ids("parse_name_parts", "in"))
def test_parse_name_parts(case: dict[str, Any]) -> None:
    name = ModelName.parse(case["in"])
    want = case["want"]
    assert name.host == want.get("host", "registry.ollama.ai")
    assert name.namespace == want.get("namespace", "library")
    assert name.model == want["model"]
    assert name.tag == want.get("tag", "latest")
    assert name.scheme == want.get("scheme", "https")
    assert "/".join(name.path_parts) == case["filepath"]


@pytest.mark.parametrize("case", _cases("name_is_valid"), ids=_ids("name_is_valid", "name"))
def test_name_is_valid(case: dict[str, Any]) -> None:
    if not case["valid_with_defaults"]:
        with pytest.raises(InvalidName):
            ModelName.parse(case["name"])
        return
    name = ModelName.parse(case["name"])
    if case["valid"]:  # fully qualified: the parts are the input's, and they print back as it
        assert str(name) == case["name"]


@pytest.mark.parametrize("case", _cases("name_default"), ids=_ids("name_default", "name"))
def test_name_defaults(case: dict[str, Any]) -> None:
    assert str(ModelName.parse(case["name"])) == case["want"]


@pytest.mark.parametrize("case", _cases("is_valid_part"), ids=_ids("is_valid_part", "s"))
def test_is_valid_part(case: dict[str, Any]) -> None:
    parts = {"host": "h", "namespace": "n", "model": "m", "tag": "t", case["kind"]: case["s"]}
    if case["want"]:
        assert getattr(ModelName.from_parts(**parts), case["kind"]) == case["s"]
    else:
        with pytest.raises(InvalidName):
            ModelName.from_parts(**parts)


@pytest.mark.parametrize("case", _cases("is_valid_namespace"), ids=_ids("is_valid_namespace", "s"))
def test_is_valid_namespace(case: dict[str, Any]) -> None:
    if case["want"]:
        assert ModelName.from_parts("h", case["s"], "m", "t").namespace == case["s"]
    else:
        with pytest.raises(InvalidName):
            ModelName.from_parts("h", case["s"], "m", "t")


@pytest.mark.parametrize("case", _cases("parse_name_from_filepath"), ids=_ids("parse_name_from_filepath", "in"))
def test_parse_name_from_filepath(case: dict[str, Any], tmp_path: Path) -> None:
    layout = ModelsLayout(tmp_path)
    path = Path(case["in"]) if case["in"].startswith("/") else layout.manifests_dir / case["in"]
    name = layout.name_for_manifest_path(path)
    if case["want"] is None:
        assert name is None
    else:
        assert name is not None
        assert name.path_parts == tuple(case["want"][k] for k in ("host", "namespace", "model", "tag"))


def test_a_stored_tag_is_read_as_written_not_as_a_pull_name(tmp_path: Path) -> None:
    """``x/local`` on disk (an older Ollama could write it) is the tag ``local``, not ``x:latest``."""
    layout = ModelsLayout(tmp_path)
    for tag in ("local", "cloud", "20B-CLOUD"):
        name = layout.name_for_manifest_path(layout.manifests_dir / "registry.ollama.ai" / "library" / "x" / tag)
        assert name is not None
        assert name.tag == tag


@pytest.mark.parametrize("case", _cases("display_shortest"), ids=_ids("display_shortest", "in"))
def test_display_shortest(case: dict[str, Any]) -> None:
    assert ModelName.parse(case["in"]).display == case["want"]


@pytest.mark.parametrize("case", _cases("normalize_pull_name"), ids=_ids("normalize_pull_name", "input"))
def test_normalize_pull_name(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(InvalidName, match=case["error"]):
            ModelName.parse(case["input"])
        return
    assert ModelName.parse(case["input"]) == ModelName.parse(case["want"])


@pytest.mark.parametrize("case", _cases("parse_ref"), ids=_ids("parse_ref", "input"))
def test_parse_ref(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(InvalidName):
            ModelName.parse(case["input"])
        return
    # ParseRef does not check the name; the parse that follows it may still refuse it (foo:bar-cloud/baz)
    assert _outcome(case["input"]) == _outcome(case["pull_name"])
    if case["source"] == "":
        assert case["base"] == case["pull_name"] == case["input"]


@pytest.mark.parametrize("case", _cases("pull_model_ref"), ids=_ids("pull_model_ref", "input"))
def test_pull_model_ref(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(InvalidName):
            ModelName.parse(case["input"])
        return
    assert str(ModelName.parse(case["input"])) == case["want"]


@pytest.mark.parametrize(
    ("size", "text"), _DATA["human_bytes"]["cases"], ids=[str(c[0]) for c in _cases("human_bytes")]
)
def test_human_bytes_as_ollama_list(size: int, text: str) -> None:
    assert human_bytes(size) == text


# Beyond the tables: Ollama's pull trims the name (modelref.ParseRef), and where we differ.


@pytest.mark.parametrize("text", [" gpt-oss:20b", "gpt-oss:20b\n", "\tgpt-oss:20b  "])
def test_surrounding_white_space_is_trimmed(text: str) -> None:
    assert ModelName.parse(text) == ModelName.parse("gpt-oss:20b")


def test_a_scheme_other_than_http_parses_but_cannot_be_pulled() -> None:
    name = ModelName.parse("scheme://host:5000/ns/model:tag")
    assert name.path_parts == ("host:5000", "ns", "model", "tag")
    with pytest.raises(InvalidName, match=r"http:// or https://, not scheme://"):
        name.base_url()
    assert ModelName.parse("http://host:5000/ns/model:tag").base_url() == "http://host:5000"


def test_a_pinned_digest_is_ours() -> None:
    """Ollama refuses '@' in a name; ollama_seed reads ``@sha256:<hex>`` as a pin (README: Names)."""
    pinned = ModelName.parse("gpt-oss:20b:local@sha256:" + "ab" * 32)
    assert pinned.tag == "20b"
    assert pinned.digest is not None


def test_list_prints_sizes_and_names_as_ollama_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ollama_seed.cli.main import main
    from tests.support.model import make_model

    root = tmp_path / "models"
    model = make_model(size_bytes=12_345_678)
    model.expected_store(root, "REGISTRY.ollama.ai", "Library/demo", "v1")
    assert main(["list", "--models-dir", str(root)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert rows[1].split()[0] == "demo:v1"  # the shortest form, whatever the case of host and namespace
    assert rows[1].split()[2:4] == ["12", "MB"]  # format.HumanBytes: 12.3 MB is "12 MB" (was "12.3 MB")
