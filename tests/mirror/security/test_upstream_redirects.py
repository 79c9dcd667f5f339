"""F13 over real sockets: the pull-through's blob GETs (the transfer engine, on its direct path) do not
follow an upstream's redirects to internal addresses, as its HEAD probes already did not; and
upstream credentials go to a token endpoint on another host only when the upstream answers over TLS.

The upstream is a registry on 127.0.0.1 (its own host: always followed); 127.0.0.2 and another port
of 127.0.0.1 are loopback addresses it may not send the mirror to unless the operator allows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from ollama_seed.mirror.factory import create_app
from ollama_seed.wire.registry import credentials_refused
from tests.support.asgi import RegistryServer
from tests.support.fake_registry import FakeRegistry
from tests.support.model import BuiltModel, make_model
from tests.support.net import unasked

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> BuiltModel:
    return make_model(tmp_path_factory.mktemp("m"), size_bytes=300_000, seed=131)


@pytest.fixture
def reg(model: BuiltModel) -> FakeRegistry:
    r = FakeRegistry()
    r.add("library/a", "latest", model)
    return r


@pytest.fixture
def cdn(reg: FakeRegistry) -> Iterator[RegistryServer]:
    """The blobs again, on 127.0.0.2: an internal address."""
    with RegistryServer(reg, host="127.0.0.2") as srv:
        yield srv


def redirecting(reg: FakeRegistry, target: str) -> RegistryServer:
    """The upstream on 127.0.0.1: manifests itself, every blob GET a 307 to *target* (``host:port``)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/blobs/" in request.url.path:
            return httpx.Response(307, headers={"Location": f"http://{target}{request.url.path}"})
        return await reg.handle(request)

    return RegistryServer(handler)


async def fetch(root: Path, upstream: str, model: BuiltModel, **options: object) -> httpx.Response:
    """The model's manifest through the mirror (so the blob is known, no HEAD probe), then its big blob."""
    app = create_app(root, upstream=upstream, connections=2, stall_timeout=2, **options)  # type: ignore[arg-type]
    with anyio.fail_after(20):  # before: retries against a listener that never answers
        async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
            assert (await c.get("/v2/library/a/manifests/latest")).status_code == 200
            return await c.get(f"/v2/library/a/blobs/{model.model_layer.digest}")


@pytest.mark.parametrize("host", ["127.0.0.2", "127.0.0.1"])
async def test_blob_gets_are_not_redirected_to_loopback(
    host: str, reg: FakeRegistry, model: BuiltModel, tmp_path: Path
) -> None:
    with unasked(host) as internal, redirecting(reg, internal) as upstream:
        r = await fetch(tmp_path / "mirror", upstream.url, model)
    assert r.status_code == 502, r.text  # before: the GET went to the internal address
    assert "loopback, link-local or private" in r.text and "--upstream-private-redirects" in r.text
    assert not (tmp_path / "mirror" / "blobs" / f"sha256-{model.model_layer.hex}").exists()


async def test_blob_gets_follow_internal_redirects_when_allowed(
    reg: FakeRegistry, cdn: RegistryServer, model: BuiltModel, tmp_path: Path
) -> None:
    with redirecting(reg, cdn.host) as upstream:
        r = await fetch(tmp_path / "mirror", upstream.url, model, upstream_private_redirects=True)
    assert r.status_code == 200 and r.content == model.model_layer.read_bytes()
    assert any(cdn.host in url for _, url, _ in reg.requests)  # the bytes came from 127.0.0.2


async def test_credentials_do_not_follow_a_plain_http_upstream_to_another_host(
    model: BuiltModel, tmp_path: Path
) -> None:
    with unasked("127.0.0.2") as realm:

        async def handler(request: httpx.Request) -> httpx.Response:
            challenge = f'Bearer realm="https://{realm}/token",service="reg"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})

        with RegistryServer(handler) as upstream:
            app = create_app(
                tmp_path / "mirror", upstream=upstream.url, credentials=lambda host: ("site", "secret"), stall_timeout=2
            )
            async with app, httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as c:
                with anyio.fail_after(20):  # before: a TLS handshake with a listener that never answers
                    r = await c.get("/v2/library/a/manifests/latest")
    # before: the password went (over TLS) to whatever host a plain-http answer named
    assert r.status_code in (401, 502), r.text
    assert "another host than 127.0.0.1" in r.text, r.text


@pytest.mark.parametrize(
    ("asked", "realm", "insecure", "sent"),
    [
        ("https://reg.test/v2/", "https://auth.test/token", False, True),  # the registry vouches over TLS
        ("https://reg.test/v2/", "https://reg.test/token", False, True),
        ("https://reg.test/v2/", "http://reg.test/token", False, False),  # plain http needs --insecure
        ("https://reg.test/v2/", "http://auth.test/token", True, False),  # ... and the registry's own host
        ("http://reg.test:5000/v2/", "http://reg.test:5000/token", True, True),
        ("http://reg.test:5000/v2/", "https://reg.test/token", True, True),
        ("http://reg.test:5000/v2/", "https://auth.test/token", True, False),  # named over plain http
        ("http://reg.test:5000/v2/", "http://auth.test/token", True, False),
    ],
)
def test_where_credentials_may_go(asked: str, realm: str, insecure: bool, sent: bool) -> None:
    assert (credentials_refused(asked, realm, insecure=insecure) is None) is sent
