"""Model names: Ollama's parsing rules, defaults and validation, as a table."""

from __future__ import annotations

import pytest

from ollama_seed import Digest, InvalidName, ModelName

HEX = "ab" * 32


@pytest.mark.parametrize(
    ("text", "host", "namespace", "model", "tag", "path"),
    [
        ("gpt-oss:20b", "registry.ollama.ai", "library", "gpt-oss", "20b", "registry.ollama.ai/library/gpt-oss/20b"),
        ("user/model", "registry.ollama.ai", "user", "model", "latest", "registry.ollama.ai/user/model/latest"),
        ("hf.co/user/repo:Q4_K_M", "hf.co", "user", "repo", "Q4_K_M", "hf.co/user/repo/Q4_K_M"),
        ("localhost:5000/ns/model:tag", "localhost:5000", "ns", "model", "tag", "localhost:5000/ns/model/tag"),
        ("localhost:5000/ns/model", "localhost:5000", "ns", "model", "latest", "localhost:5000/ns/model/latest"),
        (
            "llama3.2",
            "registry.ollama.ai",
            "library",
            "llama3.2",
            "latest",
            "registry.ollama.ai/library/llama3.2/latest",
        ),
        ("Llama3:8B", "registry.ollama.ai", "library", "Llama3", "8B", "registry.ollama.ai/library/Llama3/8B"),
        ("_x/_y:_z", "registry.ollama.ai", "_x", "_y", "_z", "registry.ollama.ai/_x/_y/_z"),
        (
            "127.0.0.1:8080/library/m:v1.2-rc_3",
            "127.0.0.1:8080",
            "library",
            "m",
            "v1.2-rc_3",
            "127.0.0.1:8080/library/m/v1.2-rc_3",
        ),
    ],
)
def test_parse(text: str, host: str, namespace: str, model: str, tag: str, path: str) -> None:
    name = ModelName.parse(text)
    assert (name.host, name.namespace, name.model, name.tag) == (host, namespace, model, tag)
    assert "/".join(name.path_parts) == path
    assert name.digest is None


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("gpt-oss:20b", "gpt-oss:20b"),
        ("user/model", "user/model:latest"),
        ("hf.co/user/repo:Q4_K_M", "hf.co/user/repo:Q4_K_M"),
        ("registry.ollama.ai/library/qwen3", "qwen3:latest"),
    ],
)
def test_display_shortest(text: str, display: str) -> None:
    assert ModelName.parse(text).display == display


def test_scheme_is_kept_apart_from_host() -> None:
    name = ModelName.parse("http://example.com:8080/ns/m:t")
    assert name.host == "example.com:8080"
    assert name.scheme == "http"
    assert name.base_url() == "http://example.com:8080"
    assert ModelName.parse("example.com/ns/m").base_url(insecure=True) == "http://example.com"


def test_digest_pin() -> None:
    name = ModelName.parse(f"gpt-oss:20b@sha256:{HEX}")
    assert name.digest == Digest(HEX)
    assert name.tag == "20b"
    assert name.unpinned().digest is None
    assert str(name).endswith(f"@sha256:{HEX}")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("  \t", "empty"),
        ("model:", "tag after ':' is empty"),
        ("/model", "namespace before '/' is empty"),
        ("host//model", "the namespace is empty"),
        ("ns/-model", "the model '-model'"),
        ("ns.x/model", "the namespace 'ns.x'"),
        ("ns/mo del", "the model 'mo del'"),
        ("model:t@g", "pinned digest"),
        ("model@sha256:1234", "pinned digest"),
        ("model:-tag", "the tag '-tag'"),
        ("a/b/c/d", "the host 'a/b'"),
        ("m" * 81, "longer than 80"),
        ("ns/m:" + "t" * 81, "longer than 80"),
        ("ns:x/model", "the namespace 'ns:x'"),
        ("../../etc/passwd", "the host '../..'"),
        ("ns/..", "the model '..'"),
        ("model:..", "the tag '..'"),
    ],
)
def test_invalid_names_say_which_part(text: str, fragment: str) -> None:
    with pytest.raises(InvalidName) as info:
        ModelName.parse(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidName, match="must be a string"):
        ModelName.parse(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (f"sha256:{HEX}", True),
        (f"sha256-{HEX}", True),
        (f"sha256:{HEX.upper()}", False),
        (f"sha512:{HEX}", False),
        (f"sha256:{HEX}0", False),
        ("sha256:", False),
        (f"sha256:{HEX[:-1]}g", False),
        (f"sha256:{HEX}\n", False),
    ],
)
def test_digest_parse(text: str, ok: bool) -> None:
    if ok:
        d = Digest.parse(text)
        assert str(d) == f"sha256:{HEX}"
        assert d.filename == f"sha256-{HEX}"
        assert d.short == HEX[:12]
    else:
        with pytest.raises(InvalidName):
            Digest.parse(text)


def test_digest_from_filename() -> None:
    assert Digest.from_filename(f"sha256-{HEX}") == Digest(HEX)
    assert Digest.from_filename(f"sha256:{HEX}") is None
    assert Digest.from_filename(f"sha256-{HEX}-partial") is None
