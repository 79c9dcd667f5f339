"""serve hands on the signatures its store keeps: the referrers API, the referrers tag and cosign's .sig tag."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ollama_seed.core.digest import Digest
from ollama_seed.core.dsse import BUNDLE_MEDIA_TYPE, INTOTO_PAYLOAD_TYPE, encode_bundle, pae
from ollama_seed.core.intoto import COSIGN_PREDICATE_TYPE, OMS_PREDICATE_TYPE, cosign_statement, simple_signing_payload
from ollama_seed.core.manifest import Manifest
from ollama_seed.core.ocidoc import Descriptor
from ollama_seed.core.ociref import (
    INDEX_MEDIA_TYPE,
    OCI_MANIFEST,
    SIMPLE_SIGNING_MEDIA_TYPE,
    bundle_referrer,
    parse_referrers,
    read_simple_signing,
)
from ollama_seed.core.reference import ModelName
from ollama_seed.core.sigrecord import StoredSignature
from ollama_seed.mirror.app import MirrorApp
from ollama_seed.store.signatures import SignatureStore
from ollama_seed.store.store import ModelStore
from ollama_seed.wire.keys import SigningKey
from tests.support.model import BuiltModel, make_model

pytestmark = pytest.mark.anyio
REPO = "library/tiny"


@pytest.fixture
def built() -> BuiltModel:
    return make_model(size_bytes=20_001, seed=7)


@pytest.fixture
def signed_store(tmp_path: Path, built: BuiltModel) -> tuple[ModelStore, Manifest, SigningKey]:
    root = tmp_path / "store"
    built.expected_store(root, "registry.ollama.ai", REPO, "latest")
    other = make_model(size_bytes=10_003, seed=8)
    other.expected_store(root, "registry.ollama.ai", "library/other", "latest")
    store = ModelStore(root)
    manifest = Manifest.parse(built.manifest)
    key = SigningKey.generate("p256")
    subject = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw), {})
    statement = cosign_statement(manifest.digest)
    cosign = encode_bundle(
        statement, key.sign(pae(INTOTO_PAYLOAD_TYPE, statement)), key_hint=key.public_key.cosign_hint
    )
    artifact = bundle_referrer(cosign, subject, COSIGN_PREDICATE_TYPE, created="2026-01-02T03:04:05Z")
    records = SignatureStore(store)
    assert records.add(manifest.digest, StoredSignature("cosign", bundle=cosign, artifact=artifact))
    assert not records.add(manifest.digest, StoredSignature("cosign", bundle=cosign, artifact=artifact))  # kept once
    oms = encode_bundle(b'{"_type":"x"}', b"sig", key_hint="ab" * 32)
    assert records.add(manifest.digest, StoredSignature("oms", bundle=oms))
    payload = simple_signing_payload(f"registry.example/{REPO}", manifest.digest)
    assert records.add(manifest.digest, StoredSignature("cosign-legacy", payload=payload, signature=key.sign(payload)))
    return store, manifest, key


@pytest.fixture
async def client(signed_store: tuple[ModelStore, Manifest, SigningKey]) -> AsyncIterator[httpx.AsyncClient]:
    app = MirrorApp(signed_store[0])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://mirror.test") as c:
        yield c


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_referrers_api_lists_every_kept_signature(
    client: httpx.AsyncClient, signed_store: tuple[ModelStore, Manifest, SigningKey]
) -> None:
    manifest = signed_store[1]
    resp = await client.get(f"/v2/{REPO}/referrers/{manifest.digest}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == INDEX_MEDIA_TYPE
    entries = parse_referrers(resp.content)
    assert len(entries) == 2
    kinds = sorted(e.annotations["dev.sigstore.bundle.predicateType"] for e in entries)
    assert kinds == sorted([COSIGN_PREDICATE_TYPE, OMS_PREDICATE_TYPE])
    assert all(e.artifact_type == BUNDLE_MEDIA_TYPE and e.media_type == OCI_MANIFEST for e in entries)
    for entry in entries:  # each referrer manifest, then its bundle blob, by digest, with matching digests
        got = await client.get(f"/v2/{REPO}/manifests/{entry.digest}")
        assert got.status_code == 200
        assert _sha(got.content) == str(entry.digest) == got.headers["docker-content-digest"]
        assert len(got.content) == entry.size
        doc = json.loads(got.content)
        assert doc["subject"]["digest"] == str(manifest.digest)
        assert doc["subject"]["size"] == len(manifest.raw)
        layer = doc["layers"][0]
        blob = await client.get(f"/v2/{REPO}/blobs/{layer['digest']}")
        assert blob.status_code == 200
        assert _sha(blob.content) == layer["digest"]
        assert json.loads(blob.content)["mediaType"] == BUNDLE_MEDIA_TYPE
    filtered = await client.get(
        f"/v2/{REPO}/referrers/{manifest.digest}", params={"artifactType": "application/example"}
    )
    assert parse_referrers(filtered.content) == []
    assert filtered.headers["oci-filters-applied"] == "artifactType"


async def test_fallback_tag_and_legacy_sig_tag(
    client: httpx.AsyncClient, signed_store: tuple[ModelStore, Manifest, SigningKey]
) -> None:
    manifest, key = signed_store[1], signed_store[2]
    api = await client.get(f"/v2/{REPO}/referrers/{manifest.digest}")
    tag = await client.get(f"/v2/{REPO}/manifests/sha256-{manifest.digest.hex}")
    assert tag.status_code == 200
    assert tag.headers["content-type"] == INDEX_MEDIA_TYPE
    assert tag.content == api.content
    sig = await client.get(f"/v2/{REPO}/manifests/sha256-{manifest.digest.hex}.sig")
    assert sig.status_code == 200
    assert json.loads(sig.content)["mediaType"] == OCI_MANIFEST
    ((payload_digest, size, signature, certs),) = read_simple_signing(sig.content)
    payload = await client.get(f"/v2/{REPO}/blobs/{payload_digest}")
    assert len(payload.content) == size
    assert key.public_key.verify(signature, payload.content)
    assert certs == ()
    layer = json.loads(sig.content)["layers"][0]
    assert layer["mediaType"] == SIMPLE_SIGNING_MEDIA_TYPE
    config = json.loads(sig.content)["config"]
    assert (await client.get(f"/v2/{REPO}/blobs/{config['digest']}")).status_code == 200


async def test_signatures_stay_with_their_repository(
    client: httpx.AsyncClient, signed_store: tuple[ModelStore, Manifest, SigningKey]
) -> None:
    manifest = signed_store[1]
    listed = parse_referrers((await client.get(f"/v2/{REPO}/referrers/{manifest.digest}")).content)
    assert (await client.get(f"/v2/library/other/referrers/{manifest.digest}")).status_code == 404
    assert (await client.get(f"/v2/library/other/manifests/sha256-{manifest.digest.hex}")).status_code == 404
    assert (await client.get(f"/v2/library/other/manifests/{listed[0].digest}")).status_code == 404
    other = signed_store[0].get(ModelName.parse("other")).manifest
    empty = await client.get(f"/v2/library/other/referrers/{other.digest}")
    assert empty.status_code == 200
    assert parse_referrers(empty.content) == []
    assert (await client.get(f"/v2/library/other/manifests/sha256-{other.digest.hex}")).status_code == 404
    assert (await client.get(f"/v2/{REPO}/referrers/sha256:{'0' * 64}")).status_code == 404
    assert (await client.get(f"/v2/{REPO}/referrers/not-a-digest")).status_code == 400


async def test_a_damaged_record_is_passed_over(
    client: httpx.AsyncClient, signed_store: tuple[ModelStore, Manifest, SigningKey]
) -> None:
    store, manifest, _ = signed_store
    folder = store.layout.signatures(manifest.digest)
    (folder / f"{'f' * 64}.json").write_bytes(b"{not json")
    (folder / f"{'e' * 64}.json").symlink_to("/etc/passwd")
    resp = await client.get(f"/v2/{REPO}/referrers/{manifest.digest}")
    assert len(parse_referrers(resp.content)) == 2
    assert StoredSignature.decode(b'{"kind": "cosign", "bundle": "%%%"}') is None
    assert Digest.from_filename(folder.name) == manifest.digest


async def test_a_signed_bundle_imported_into_a_mirror_verifies_on_pull(tmp_path: Path) -> None:
    """An air-gapped site imports a signed bundle into the mirror's store; its hosts pull through the
    mirror with trust: the OMS signature is served as a referrer and checked, under any mirror address."""
    import ollama_seed
    from ollama_seed.core.errors import SignatureError
    from ollama_seed.wire.trust import Trust
    from tests.support.craft import install, models

    key, other = SigningKey.generate("p256"), SigningKey.generate("p256")
    key.save(tmp_path / "k.key", tmp_path / "k.pub", None)
    other.save(tmp_path / "o.key", tmp_path / "o.pub", None)
    src, site = tmp_path / "src", tmp_path / "site"
    items = models(2, 5_000)
    install(src, items)
    bundle = tmp_path / "m.bundle"
    await ollama_seed.aexport_bundle([m.name for m in items], bundle, models_dir=src, sign=key)
    await ollama_seed.aimport_bundle(bundle, models_dir=site, trust=Trust.load([tmp_path / "k.pub"]))
    transport = httpx.ASGITransport(MirrorApp(ModelStore(site)))
    pulled = await ollama_seed.apull(
        "m0:latest",
        models_dir=tmp_path / "host",
        trust=Trust.load([tmp_path / "k.pub"]),
        mirrors=["http://mirror.test"],
        transport=transport,
    )
    assert pulled.signer is not None
    direct = await ollama_seed.apull(  # the mirror's own address as the name's host
        "mirror.test/library/m1:latest",
        models_dir=tmp_path / "host2",
        insecure=True,
        trust=Trust.load([tmp_path / "k.pub"]),
        transport=transport,
    )
    assert direct.signer is not None
    with pytest.raises(SignatureError, match="not by a key you trust"):
        await ollama_seed.apull(
            "m0:latest",
            models_dir=tmp_path / "host3",
            trust=Trust.load([tmp_path / "o.pub"]),
            mirrors=["http://mirror.test"],
            transport=transport,
        )
