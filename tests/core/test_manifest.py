"""Manifest parsing: real shapes accepted byte for byte, hostile ones refused with a reason."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from ollama_seed import Manifest, RegistryProtocolError
from ollama_seed.core.manifest import MAX_MANIFEST_BYTES

A, B, C = "a" * 64, "b" * 64, "c" * 64


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": f"sha256:{C}", "size": 10},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{A}", "size": 1000},
            {"mediaType": "application/vnd.ollama.image.license", "digest": f"sha256:{B}", "size": 5},
        ],
    }
    base.update(over)
    return base


def raw(d: dict[str, Any]) -> bytes:
    return json.dumps(d).encode()


def test_parse_keeps_exact_bytes_and_digest() -> None:
    body = b'{"schemaVersion":2,"config":{"digest":"sha256:' + C.encode() + b'","mediaType":"x","size":1},"layers":[]}'
    m = Manifest.parse(body)
    assert m.raw == body
    assert m.digest.hex == hashlib.sha256(body).hexdigest()
    assert m.config is not None and m.config.size == 1
    assert m.layers == ()


def test_blobs_dedupe_and_config_last() -> None:
    d = doc()
    d["layers"].append(dict(d["layers"][1]))  # the same license listed twice, as Ollama models do
    m = Manifest.parse(raw(d))
    assert [b.digest.hex for b in m.blobs] == [A, B, C]
    assert m.total_size == 1015
    assert [layer.kind for layer in m.blobs] == ["model", "license", "config"]


def test_cloud_model_without_layers() -> None:
    m = Manifest.parse(raw(doc(layers=None)))
    assert m.layers == ()
    assert len(m.blobs) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (raw(doc(schemaVersion=1)), "schemaVersion"),
        (raw(doc(layers={"a": 1})), "layers is not a list"),
        (raw(doc(layers=[{"digest": "sha256:xyz", "size": 1}])), "layers[0].digest"),
        (raw(doc(layers=[{"digest": f"md5:{A}", "size": 1}])), "layers[0].digest"),
        (raw(doc(layers=[{"digest": f"sha256:{A.upper()}", "size": 1}])), "layers[0].digest"),
        (raw(doc(layers=[{"digest": f"sha256:{A}", "size": -1}])), "layers[0].size"),
        (raw(doc(layers=[{"digest": f"sha256:{A}", "size": 2**60}])), "layers[0].size"),
        (raw(doc(layers=[{"digest": f"sha256:{A}", "size": "12"}])), "layers[0].size"),
        (raw(doc(layers=[{"digest": f"sha256:{A}", "size": True}])), "layers[0].size"),
        (raw(doc(layers=[{"digest": f"sha256:{A}", "size": 1.5}])), "layers[0].size"),
        (raw(doc(layers=[{"digest": f"sha256:{A}/../../x", "size": 1}])), "layers[0].digest"),
        (raw(doc(layers=[{"mediaType": "a\nb", "digest": f"sha256:{A}", "size": 1}])), "mediaType"),
        (raw(doc(layers=[{"digest": f"sha256:{A}", "size": 1}, {"digest": f"sha256:{A}", "size": 2}])), "two sizes"),
        (raw(doc(mediaType="application/vnd.oci.image.index.v1+json")), "index of manifests"),
        (raw(doc(config="x")), "config is not an object"),
        (b"[" * 100000 + b"]" * 100000, "not"),
        (b" " * (MAX_MANIFEST_BYTES + 1), "allowed"),
    ],
)
def test_hostile_manifests_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(RegistryProtocolError) as info:
        Manifest.parse(body, source="test manifest")
    assert reason in str(info.value)
    assert "test manifest" in str(info.value)
