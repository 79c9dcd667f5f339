"""pull with trust against registries that cannot answer for a signature: fail closed, say why, write nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import ollama_seed
from ollama_seed.core.errors import SignatureError
from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.trust import Trust
from tests.support.model import make_model

pytestmark = pytest.mark.anyio
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def trust(tmp_path: Path) -> Trust:
    SigningKey.generate("p256").save(tmp_path / "k.key", tmp_path / "k.pub", None)
    return Trust.load([tmp_path / "k.pub"])


@pytest.mark.parametrize(
    ("failure", "match"),
    [
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)), "could not be read"),
        (lambda r: httpx.Response(503, text="down"), "could not be read"),
        (
            lambda r: httpx.Response(
                200, content=b"{not json", headers={"content-type": "application/vnd.oci.image.index.v1+json"}
            ),
            "referrers list is not JSON",
        ),
    ],
)
async def test_signature_lookup_failures_fail_closed(tmp_path: Path, trust: Trust, failure: object, match: str) -> None:
    model = make_model(size_bytes=2000, seed=91)
    blobs = {b.digest: b.read_bytes() for b in model.blobs}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v2/ns/tiny/manifests/v1":
            return httpx.Response(200, content=model.manifest, headers={"content-type": DOCKER_V2})
        if "/blobs/" in path and path.rsplit("/", 1)[1] in blobs:
            return httpx.Response(200, content=blobs[path.rsplit("/", 1)[1]])
        if "/referrers/" in path:
            return failure(request)  # type: ignore[operator,no-any-return]
        return httpx.Response(404)

    out = tmp_path / "m"
    with pytest.raises(SignatureError, match=match) as info:
        await ollama_seed.apull(
            "registry.lan/ns/tiny:v1", models_dir=out, trust=trust, transport=httpx.MockTransport(handler)
        )
    assert "nothing was written" in str(info.value)
    assert not (out / "manifests").exists() or not any((out / "manifests").rglob("*"))
    assert not (out / "blobs").exists() or not any((out / "blobs").iterdir())
