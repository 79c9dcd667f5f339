"""Docker-style credentials: environment variables (per host, global), ~/.docker/config.json."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import httpx
import pytest

from ollama_seed.core.reference import ModelName
from ollama_seed.wire.credentials import DockerCredentials, docker_config_path, env_key
from ollama_seed.wire.registry import RegistryClient


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_config(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_env_key() -> None:
    assert env_key("registry.example.com:5000") == "REGISTRY_EXAMPLE_COM_5000"
    assert env_key("10.0.0.5") == "10_0_0_5"


def test_per_host_variables_win(tmp_path: Path) -> None:
    env = {
        "OLLAMA_SEED_REGISTRY_USER_REG_LAN_5000": "alice",
        "OLLAMA_SEED_REGISTRY_PASSWORD_REG_LAN_5000": "s1",
        "OLLAMA_SEED_REGISTRY_USER": "bob",
        "OLLAMA_SEED_REGISTRY_PASSWORD": "s2",
    }
    creds = DockerCredentials(env, tmp_path / "none.json")
    assert creds("reg.lan:5000") == ("alice", "s1")
    assert creds("other.lan") == ("bob", "s2")
    assert creds("registry.ollama.ai") is None  # a site password is not offered to the public registries
    assert creds("hf.co") is None


def test_global_variables_can_be_limited_to_hosts(tmp_path: Path) -> None:
    env = {
        "OLLAMA_SEED_REGISTRY_USER": "bob",
        "OLLAMA_SEED_REGISTRY_PASSWORD": "s2",
        "OLLAMA_SEED_REGISTRY_HOSTS": "reg.lan:5000, Harbor.lan",
    }
    creds = DockerCredentials(env, tmp_path / "none.json")
    assert creds("reg.lan:5000") == ("bob", "s2")
    assert creds("harbor.lan") == ("bob", "s2")
    assert creds("registry.ollama.ai") is None
    assert DockerCredentials({"OLLAMA_SEED_REGISTRY_USER": "only-user"}, tmp_path / "x")("h") is None


def test_docker_config_auths(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "reg.lan:5000": {"auth": b64("carol:pa:ss")},
                "https://harbor.example.com/v1/": {"username": "dave", "password": "pw"},
                "https://index.docker.io/v1/": {"auth": b64("eve:hub")},
                "broken.lan": {"auth": "%%%"},
            }
        },
    )
    creds = DockerCredentials({}, path)
    assert creds("reg.lan:5000") == ("carol", "pa:ss")
    assert creds("harbor.example.com") == ("dave", "pw")
    assert creds("registry-1.docker.io") == ("eve", "hub")
    assert creds("broken.lan") is None
    assert creds("unknown.lan") is None


def test_config_location_follows_docker_config(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": str(tmp_path / "d")}) == tmp_path / "d" / "config.json"
    assert docker_config_path({}) == Path.home() / ".docker" / "config.json"
    write_config(Path.home() / ".docker" / "config.json", {"auths": {"h.lan": {"auth": b64("u:p")}}})
    assert DockerCredentials({})("h.lan") == ("u", "p")


def test_helpers_and_bad_files_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_config(
        tmp_path / "c.json",
        {"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud"}, "auths": {"tok.lan": {"identitytoken": "xyz"}}},
    )
    creds = DockerCredentials({}, path)
    with caplog.at_level(logging.WARNING, logger="ollama_seed"):
        assert creds("gcr.io") is None
        assert creds("gcr.io") is None
        assert creds("tok.lan") is None
    text = caplog.text
    assert "docker-credential-gcloud" in text and text.count("docker-credential-gcloud") == 1
    assert "identity token" in text
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="ollama_seed"):
        assert DockerCredentials({}, bad)("x") is None
    assert "ignoring" in caplog.text


@pytest.mark.anyio
async def test_registry_client_uses_them_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_SEED_REGISTRY_USER_PRIV_TEST", "u")
    monkeypatch.setenv("OLLAMA_SEED_REGISTRY_PASSWORD_PRIV_TEST", "p")
    seen: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        if request.headers.get("authorization") == "Basic " + b64("u:p"):
            return httpx.Response(404)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="priv"'})

    async with RegistryClient(transport=httpx.MockTransport(handle)) as client:
        name = ModelName.parse("priv.test/ns/m")
        resp = await client.send(name, "GET", client.manifest_url(name), {})
        await resp.aclose()
    assert resp.status_code == 404 and seen == ["", "Basic " + b64("u:p")]
