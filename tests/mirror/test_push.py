"""push: into a real docker-registry (monolithic, chunked, skip, mount), pulled back byte for byte;
token auth with push scope; refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import ollama_seed
from ollama_seed.cli.main import main
from ollama_seed.core.errors import AuthenticationError, InvalidName, ModelNotFound, RegistryError, StoreError
from ollama_seed.mirror.app import MirrorApp
from ollama_seed.mirror.push import apush, push
from ollama_seed.store.store import ModelStore
from tests.support import MIB
from tests.support.invariants import tree
from tests.support.model import MT_SYSTEM, BuiltModel, make_model
from tests.support.registry import DockerRegistry

pytestmark = pytest.mark.anyio


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on and remembers ``(method, path, query, headers)``."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str, str, dict[str, str]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path, request.url.query.decode(), dict(request.headers)))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def methods(self, method: str, part: str = "") -> list[tuple[str, str, str, dict[str, str]]]:
        return [c for c in self.calls if c[0] == method and part in c[1]]


@pytest.fixture
def model() -> BuiltModel:
    return make_model(size_bytes=MIB + 3, seed=21, one_byte_layer=True, extra_layers=[(MT_SYSTEM, b"")])


@pytest.fixture
def store_dir(tmp_path: Path, model: BuiltModel) -> Path:
    root = tmp_path / "store"
    model.expected_store(root, "registry.ollama.ai", "library/tiny", "latest")
    return root


def repo() -> str:
    return f"t{uuid.uuid4().hex[:8]}/tiny"


async def pull_back(tmp_path: Path, reg: DockerRegistry, model: BuiltModel, repository: str, tag: str) -> None:
    out = tmp_path / f"back-{uuid.uuid4().hex[:6]}"
    await ollama_seed.apull(f"{reg.host}/{repository}:{tag}", models_dir=out, insecure=True)
    want = tmp_path / f"want-{uuid.uuid4().hex[:6]}"
    model.expected_store(want, reg.host, repository, tag)
    assert tree(out) == tree(want)


@pytest.mark.registry
async def test_push_monolithic_and_pull_back(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path, model: BuiltModel
) -> None:
    rec, name = Recording(), repo()
    result = await apush(
        "tiny", f"{docker_registry.host}/{name}:v1", models_dir=store_dir, insecure=True, transport=rec
    )
    assert sorted(map(str, result.uploaded)) == sorted(b.digest for b in model.blobs)
    assert result.bytes_uploaded == model.total_size and result.manifest_digest.hex == model.manifest_digest[7:]
    assert not rec.methods("PATCH")
    assert len(rec.methods("PUT", "/blobs/uploads/")) == len(model.blobs)
    (put,) = rec.methods("PUT", "/manifests/")
    assert put[3]["content-type"] == "application/vnd.docker.distribution.manifest.v2+json"
    await pull_back(tmp_path, docker_registry, model, name, "v1")


@pytest.mark.registry
async def test_push_chunked_and_pull_back(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path, model: BuiltModel
) -> None:
    rec, name = Recording(), repo()
    chunk = 256 * 1024
    await apush(
        "tiny",
        f"{docker_registry.host}/{name}:v2",
        models_dir=store_dir,
        insecure=True,
        transport=rec,
        chunk_size=chunk,
    )
    patches = rec.methods("PATCH")
    big = model.model_layer.size
    assert len(patches) == -(-big // chunk)
    assert [p[3]["content-range"] for p in patches][:2] == [f"0-{chunk - 1}", f"{chunk}-{2 * chunk - 1}"]
    assert patches[-1][3]["content-range"] == f"{(len(patches) - 1) * chunk}-{big - 1}"
    await pull_back(tmp_path, docker_registry, model, name, "v2")


@pytest.mark.registry
async def test_second_push_only_sends_the_manifest(
    docker_registry: DockerRegistry, store_dir: Path, model: BuiltModel
) -> None:
    name = repo()
    await apush("tiny", f"{docker_registry.host}/{name}:v1", models_dir=store_dir, insecure=True)
    rec = Recording()
    result = await apush(
        "tiny", f"{docker_registry.host}/{name}:v1", models_dir=store_dir, insecure=True, transport=rec
    )
    assert len(result.existing) == len(model.blobs) and not result.uploaded and result.bytes_uploaded == 0
    assert {m for m, *_ in rec.calls} == {"HEAD", "PUT"}
    assert len(rec.methods("PUT")) == 1


@pytest.mark.registry
async def test_mounts_across_repositories(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path, model: BuiltModel
) -> None:
    first, second, third = repo(), repo(), repo()
    await apush("tiny", f"{docker_registry.host}/{first}:v1", models_dir=store_dir, insecure=True)
    # a store that pulled from that registry knows which repository holds each blob
    store2 = tmp_path / "store2"
    await ollama_seed.apull(f"{docker_registry.host}/{first}:v1", models_dir=store2, insecure=True)
    rec = Recording()
    result = await apush(
        f"{docker_registry.host}/{first}:v1",
        f"{docker_registry.host}/{second}:v1",
        models_dir=store2,
        insecure=True,
        transport=rec,
    )
    assert len(result.mounted) == len(model.blobs) and not result.uploaded
    assert all(f"from={first.replace('/', '%2F')}" in c[2] for c in rec.methods("POST"))
    assert not rec.methods("PATCH") and len(rec.methods("PUT")) == 1
    await pull_back(tmp_path, docker_registry, model, second, "v1")
    # --mount-from: a repository named by the user, checked with HEAD first
    result = await apush(
        "tiny",
        f"{docker_registry.host}/{third}:v1",
        models_dir=store_dir,
        insecure=True,
        mount_from=["library/nothing-here", first],
    )
    assert len(result.mounted) == len(model.blobs)
    await pull_back(tmp_path, docker_registry, model, third, "v1")


@pytest.mark.registry
def test_cli_push(
    docker_registry: DockerRegistry, store_dir: Path, capsys: pytest.CaptureFixture[str], model: BuiltModel
) -> None:
    target = f"{docker_registry.host}/{repo()}:cli"
    code = main(
        ["push", "tiny", target, "--models-dir", str(store_dir), "--insecure", "--json", "--chunk-size", "512Ki"]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["digest"] == model.manifest_digest and len(doc["uploaded"]) == len(model.blobs)


async def test_refusals(store_dir: Path, model: BuiltModel, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        await apush("absent", "reg.test/ns/m:1", models_dir=store_dir)
    with pytest.raises(InvalidName):
        await apush("tiny", f"reg.test/ns/m@sha256:{'a' * 64}", models_dir=store_dir)
    mirror = httpx.ASGITransport(MirrorApp(ModelStore(store_dir)))
    with pytest.raises(RegistryError, match="does not accept uploads"):
        await apush("tiny", "mirror.test/ns/m:1", models_dir=store_dir, insecure=True, transport=mirror)
    (store_dir / "blobs" / f"sha256-{model.model_layer.hex}").unlink()
    with pytest.raises(StoreError, match="missing"):
        await apush("tiny", "reg.test/ns/m:1", models_dir=store_dir)


class UploadRegistry:
    """An in-process registry that takes uploads behind a token service asking for user ``u``/``p``."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.token_scopes: list[list[str]] = []
        self.expire_first = False  # answer each upload's first request with a body 401, as if the token expired
        self.expired: set[str] = set()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/token":
            if request.headers.get("authorization") != "Basic " + base64.b64encode(b"u:p").decode():
                return httpx.Response(401, json={"errors": [{"code": "UNAUTHORIZED", "message": "bad"}]})
            self.token_scopes.append(request.url.params.get_list("scope"))
            return httpx.Response(200, json={"token": "T"})
        if request.headers.get("authorization") != "Bearer T":
            scope = "repository:ns/m:pull,push"
            return httpx.Response(
                401,
                headers={"WWW-Authenticate": f'Bearer realm="https://reg.test/token",service="reg",scope="{scope}"'},
            )
        body = await request.aread()
        if path.startswith("/v2/ns/m/blobs/uploads/") and request.method == "POST":
            uid = uuid.uuid4().hex
            self.uploads[uid] = bytearray()
            return httpx.Response(202, headers={"Location": f"/upload/{uid}?_state=x"})
        if path.startswith("/upload/"):
            uid = path.rsplit("/", 1)[1]
            if self.expire_first and body and uid not in self.expired:
                self.expired.add(uid)
                return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://reg.test/token"'})
            self.uploads[uid] += body
            if request.method == "PATCH":
                return httpx.Response(
                    202, headers={"Location": f"/upload/{uid}?_state=y", "Range": f"0-{len(self.uploads[uid]) - 1}"}
                )
            digest = "sha256:" + hashlib.sha256(self.uploads[uid]).hexdigest()
            if digest != request.url.params["digest"]:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID", "message": digest}]})
            self.blobs[digest] = bytes(self.uploads.pop(uid))
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if "/blobs/" in path:
            return httpx.Response(200 if path.rsplit("/", 1)[1] in self.blobs else 404)
        if "/manifests/" in path and request.method == "PUT":
            self.manifests[path.rsplit("/", 1)[1]] = body
            return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()})
        return httpx.Response(404)


async def test_push_with_token_auth_and_push_scope(store_dir: Path, model: BuiltModel) -> None:
    reg = UploadRegistry()
    transport = httpx.MockTransport(reg.handle)
    with pytest.raises(AuthenticationError):
        await apush("tiny", "reg.test/ns/m:1", models_dir=store_dir, transport=transport, credentials=lambda host: None)
    result = await apush(
        "tiny",
        "reg.test/ns/m:1",
        models_dir=store_dir,
        transport=transport,
        chunk_size=300_000,
        credentials=lambda host: ("u", "p") if host == "reg.test" else None,
    )
    assert reg.token_scopes and all(s == ["repository:ns/m:pull,push"] for s in reg.token_scopes)
    assert {d: reg.blobs[d] for d in reg.blobs} == {b.digest: b.read_bytes() for b in model.blobs}
    assert reg.manifests == {"1": model.manifest}
    assert len(result.uploaded) == len(model.blobs)


async def test_a_body_is_sent_again_whole_after_a_401(store_dir: Path, model: BuiltModel) -> None:
    reg = UploadRegistry()
    reg.expire_first = True
    result = await apush(
        "tiny",
        "reg.test/ns/m:2",
        models_dir=store_dir,
        transport=httpx.MockTransport(reg.handle),
        chunk_size=300_000,
        concurrency=1,
        credentials=lambda host: ("u", "p"),
    )
    assert len(reg.expired) == sum(1 for b in model.blobs if b.size)  # each non-empty body went twice
    assert {d: reg.blobs[d] for d in reg.blobs} == {b.digest: b.read_bytes() for b in model.blobs}
    assert len(result.uploaded) == len(model.blobs)


def test_environment_credentials_reach_the_registry(
    store_dir: Path, monkeypatch: pytest.MonkeyPatch, model: BuiltModel
) -> None:
    reg = UploadRegistry()
    monkeypatch.setenv("OLLAMA_SEED_REGISTRY_USER_REG_TEST", "u")
    monkeypatch.setenv("OLLAMA_SEED_REGISTRY_PASSWORD_REG_TEST", "p")
    kw: dict[str, Any] = {"models_dir": store_dir, "transport": httpx.MockTransport(reg.handle)}
    push("tiny", "reg.test/ns/m:env", **kw)
    assert reg.manifests == {"env": model.manifest}
