"""Registry signatures on a real Docker Distribution 2.8 (no referrers API): push --sign, pull --trust,
the cosign documents checked field by field against cosign's specifications, and every refusal."""

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
from ollama_seed.core.dsse import encode_bundle, pae
from ollama_seed.core.errors import SignatureError
from ollama_seed.core.intoto import cosign_statement
from ollama_seed.core.ocidoc import Descriptor
from ollama_seed.core.ociref import OCI_MANIFEST, bundle_referrer, entry_for, referrers_index
from ollama_seed.core.reference import ModelName
from ollama_seed.mirror.app import MirrorApp
from ollama_seed.mirror.push import apush
from ollama_seed.store.signatures import SignatureStore
from ollama_seed.store.store import ModelStore
from ollama_seed.wire.cosign_attach import _attach_legacy
from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.registry import RegistryClient
from ollama_seed.wire.trust import Trust
from ollama_seed.wire.upload import Uploader
from tests.support.model import BuiltModel, make_model
from tests.support.registry import DockerRegistry

pytestmark = pytest.mark.registry
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label in ("site", "other"):
        key = SigningKey.generate("p256")
        key.save(tmp_path / f"{label}.key", tmp_path / f"{label}.pub", None)
        out[label] = key
        out[f"{label}.pub"] = tmp_path / f"{label}.pub"
    return out


@pytest.fixture
def model() -> BuiltModel:
    return make_model(size_bytes=50_001, seed=61)


@pytest.fixture
def store_dir(tmp_path: Path, model: BuiltModel) -> Path:
    root = tmp_path / "store"
    model.expected_store(root, "registry.ollama.ai", "library/tiny", "latest")
    make_model(size_bytes=40_003, seed=62).expected_store(root, "registry.ollama.ai", "library/other", "latest")
    return root


def _repo() -> str:
    return f"p{uuid.uuid4().hex[:8]}/tiny"


def _get(reg: DockerRegistry, path: str, accept: str = "*/*") -> httpx.Response:
    return httpx.get(f"{reg.url}/v2/{path}", headers={"Accept": accept})


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.anyio
async def test_push_sign_then_pull_trust_and_the_cosign_documents(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path, keys: dict[str, Any], model: BuiltModel
) -> None:
    repo = _repo()
    target = f"{docker_registry.host}/{repo}:v1"
    result = await apush("tiny", target, models_dir=store_dir, insecure=True, sign=keys["site"], cosign_legacy=True)
    digest = result.manifest_digest
    raw_manifest = model.manifest
    assert len(result.signatures) == 2
    # Docker Distribution 2.8 has no referrers API: the fallback tag carries the list
    assert _get(docker_registry, f"{repo}/referrers/{digest}").status_code == 404
    index = _get(docker_registry, f"{repo}/manifests/sha256-{digest.hex}", "application/vnd.oci.image.index.v1+json")
    assert index.status_code == 200
    doc = index.json()
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (entry,) = doc["manifests"]
    assert entry["mediaType"] == OCI_MANIFEST and entry["artifactType"] == BUNDLE
    assert set(entry["annotations"]) == {
        "dev.sigstore.bundle.content",
        "dev.sigstore.bundle.predicateType",
        "org.opencontainers.image.created",
    }
    assert entry["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert entry["annotations"]["dev.sigstore.bundle.predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    # the referrer manifest, as cosign's WriteReferrer writes it (BUNDLE_SPEC.md)
    referrer = _get(docker_registry, f"{repo}/manifests/{entry['digest']}", OCI_MANIFEST)
    assert "sha256:" + hashlib.sha256(referrer.content).hexdigest() == entry["digest"]
    assert len(referrer.content) == entry["size"]
    ref = referrer.json()
    assert set(ref) == {"schemaVersion", "mediaType", "config", "layers", "annotations", "subject", "artifactType"}
    assert ref["schemaVersion"] == 2 and ref["mediaType"] == OCI_MANIFEST and ref["artifactType"] == BUNDLE
    assert ref["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "size": 2,
        "digest": EMPTY_DIGEST,
        "artifactType": BUNDLE,
    }
    assert ref["subject"] == {"mediaType": DOCKER_V2, "size": len(raw_manifest), "digest": str(digest)}
    assert ref["annotations"] == entry["annotations"]
    (layer,) = ref["layers"]
    assert set(layer) == {"mediaType", "size", "digest"} and layer["mediaType"] == BUNDLE
    assert _get(docker_registry, f"{repo}/blobs/{EMPTY_DIGEST}").content == b"{}"
    bundle = _get(docker_registry, f"{repo}/blobs/{layer['digest']}").json()
    assert bundle["mediaType"] == BUNDLE
    der_hash = hashlib.sha256(base64.b64decode("".join(keys["site"].public_key.pem.decode().splitlines()[1:-1])))
    assert bundle["verificationMaterial"] == {
        "publicKey": {"hint": base64.b64encode(der_hash.digest()).decode()},
        "tlogEntries": [],
    }
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert [set(s) for s in envelope["signatures"]] == [{"sig", "keyid"}]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": digest.hex}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }
    signed = pae("application/vnd.in-toto+json", base64.b64decode(envelope["payload"]))
    assert keys["site"].public_key.verify(base64.b64decode(envelope["signatures"][0]["sig"]), signed)
    # cosign v2's legacy tag (SIGNATURE_SPEC.md): simple signing, the signature in an annotation
    sig = _get(docker_registry, f"{repo}/manifests/sha256-{digest.hex}.sig", OCI_MANIFEST).json()
    assert sig["mediaType"] == OCI_MANIFEST and sig["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = _get(docker_registry, f"{repo}/blobs/{sig['config']['digest']}").json()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sig["layers"][0]["digest"]]}
    (ss,) = sig["layers"]
    assert ss["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert set(ss["annotations"]) == {"dev.cosignproject.cosign/signature"}
    payload = _get(docker_registry, f"{repo}/blobs/{ss['digest']}").content
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"' + f"{docker_registry.host}/{repo}".encode() + b'"},'
        b'"image":{"docker-manifest-digest":"' + str(digest).encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert keys["site"].public_key.verify(
        base64.b64decode(ss["annotations"]["dev.cosignproject.cosign/signature"]), payload
    )
    # the pushing store keeps what it wrote; the pulling one what it verified
    assert {r.kind for r in SignatureStore(ModelStore(store_dir)).records(digest)} == {"cosign", "cosign-legacy"}
    out = tmp_path / "pulled"
    pulled = await ollama_seed.apull(target, models_dir=out, insecure=True, trust=Trust.load([keys["site.pub"]]))
    assert pulled.signer is not None and pulled.signer.fingerprint == keys["site"].public_key.fingerprint
    assert [r.kind for r in SignatureStore(ModelStore(out)).records(digest)] == ["cosign"]
    # a second push of the same signature is not duplicated in the fallback list
    await apush("tiny", target, models_dir=store_dir, insecure=True, sign=keys["site"])
    again = _get(docker_registry, f"{repo}/manifests/sha256-{digest.hex}", "application/vnd.oci.image.index.v1+json")
    assert len(again.json()["manifests"]) == 2  # another signing time: another referrer, both listed


@pytest.mark.anyio
async def test_refusals_leave_the_store_unchanged(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path, keys: dict[str, Any]
) -> None:
    trust = Trust.load([keys["site.pub"]])
    repo = _repo()
    target = f"{docker_registry.host}/{repo}:v1"
    result = await apush("tiny", target, models_dir=store_dir, insecure=True, sign=keys["site"])
    out = tmp_path / "pulled"

    async def refused(name: str, match: str) -> None:
        with pytest.raises(SignatureError, match=match):
            await ollama_seed.apull(name, models_dir=out, insecure=True, trust=trust)
        assert [f for f in _files(out) if not f.startswith(".ollama-seed/")] == []

    # 1. the fallback tag replaced by one listing a signature by another key
    manifest = ModelStore(store_dir).get(ModelName.parse("tiny")).manifest
    subject = Descriptor(DOCKER_V2, manifest.digest, len(manifest.raw), {})
    async with RegistryClient(insecure=True) as client:
        up = Uploader(client, ModelName.parse(target))
        statement = cosign_statement(manifest.digest)
        by_other = encode_bundle(
            statement,
            keys["other"].sign(pae("application/vnd.in-toto+json", statement)),
            key_hint=keys["other"].public_key.cosign_hint,
        )
        forged = bundle_referrer(by_other, subject, "https://sigstore.dev/cosign/sign/v1", created=None)
        other_sig = await ollama_seed.apush(
            "tiny", f"{docker_registry.host}/{repo}-other:v1", models_dir=store_dir, insecure=True, sign=keys["other"]
        )
        assert other_sig.signatures
        for digest, data in forged.blobs.items():

            async def body(start: int, n: int, data: bytes = data) -> Any:
                yield data[start : start + n]

            if not await up.exists(digest):
                await up.upload(digest, len(data), body)
        await up.manifest(str(forged.digest), OCI_MANIFEST, forged.manifest, forged.digest)
        index = referrers_index([entry_for(forged)])
        await up.manifest(
            f"sha256-{result.manifest_digest.hex}",
            "application/vnd.oci.image.index.v1+json",
            index,
            ollama_seed.Digest(hashlib.sha256(index).hexdigest()),
        )
    await refused(target, "no signature there is by a key or CA you trust .the signature is not by a key you trust")
    # 2. signed with another key
    await refused(f"{docker_registry.host}/{repo}-other:v1", "not by a key you trust")
    # 3. an unsigned model pushed under the same tag
    await apush("other", target, models_dir=store_dir, insecure=True)
    await refused(target, "no signature of its manifest")
    # warn: pulled anyway, with a warning; off for other names
    policy = ollama_seed.TrustPolicy.trusting([str(keys["site.pub"])], mode="warn")
    warned = await ollama_seed.apull(target, models_dir=out, insecure=True, trust=policy)
    assert warned.signer is None and warned.manifest_digest != result.manifest_digest


@pytest.mark.anyio
async def test_legacy_sig_only(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path, keys: dict[str, Any]
) -> None:
    repo = _repo()
    target = f"{docker_registry.host}/{repo}:v1"
    await apush("tiny", target, models_dir=store_dir, insecure=True)
    digest = ModelStore(store_dir).get(ModelName.parse("tiny")).manifest.digest
    async with RegistryClient(insecure=True) as client:
        await _attach_legacy(Uploader(client, ModelName.parse(target)), digest, keys["site"])
    pulled = await ollama_seed.apull(
        target, models_dir=tmp_path / "a", insecure=True, trust=Trust.load([keys["site.pub"]])
    )
    assert pulled.signer is not None
    async with RegistryClient(insecure=True) as client:  # a second signature joins the first in the .sig manifest
        await _attach_legacy(Uploader(client, ModelName.parse(target)), digest, keys["other"])
    sig = _get(docker_registry, f"{repo}/manifests/sha256-{digest.hex}.sig", OCI_MANIFEST).json()
    assert len(sig["layers"]) == 2
    pulled = await ollama_seed.apull(
        target, models_dir=tmp_path / "b", insecure=True, trust=Trust.load([keys["other.pub"]])
    )
    assert pulled.signer is not None and pulled.signer.fingerprint == keys["other"].public_key.fingerprint


@pytest.mark.anyio
async def test_serve_passes_signatures_on(
    docker_registry: DockerRegistry, store_dir: Path, tmp_path: Path, keys: dict[str, Any]
) -> None:
    repo = _repo()
    target = f"{docker_registry.host}/{repo}:v1"
    await apush("tiny", target, models_dir=store_dir, insecure=True, sign=keys["site"], cosign_legacy=True)
    site = tmp_path / "site"
    trust = Trust.load([keys["site.pub"]])
    await ollama_seed.apull(target, models_dir=site, insecure=True, trust=trust)
    # a host pulls from the site's mirror (the name keeps the registry's host): verified from what serve keeps
    app = MirrorApp(ModelStore(site))
    transport = httpx.ASGITransport(app)
    pulled = await ollama_seed.apull(
        f"mirror.test/{repo}:v1",
        models_dir=tmp_path / "host",
        insecure=True,
        trust=trust,
        transport=transport,
    )
    assert pulled.signer is not None


@pytest.mark.anyio
async def test_registry_ollama_ai_fails_closed(tmp_path: Path, keys: dict[str, Any]) -> None:
    model = make_model(size_bytes=1000, seed=63)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/library/tiny/manifests/latest":
            return httpx.Response(200, content=model.manifest, headers={"content-type": DOCKER_V2})
        return httpx.Response(404, json={"errors": [{"code": "NOT_FOUND"}]})

    with pytest.raises(SignatureError, match=r"registry\.ollama\.ai hosts no signatures") as info:
        await ollama_seed.apull(
            "tiny",
            models_dir=tmp_path / "m",
            trust=Trust.load([keys["site.pub"]]),
            transport=httpx.MockTransport(handler),
        )
    assert "nothing was written" in str(info.value)
    assert not (tmp_path / "m" / "manifests").exists() or not any((tmp_path / "m" / "manifests").rglob("*"))


def test_cli_push_sign_and_pull_trust(
    docker_registry: DockerRegistry,
    store_dir: Path,
    tmp_path: Path,
    keys: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = f"{docker_registry.host}/{_repo()}:v1"
    assert (
        main(
            ["push", "tiny", target, "--models-dir", str(store_dir), "--insecure", "--sign", str(tmp_path / "site.key")]
        )
        == 0
    )
    assert "signed by sha256:" in capsys.readouterr().err
    out = str(tmp_path / "cli")
    assert (
        main(
            ["pull", target, "--models-dir", out, "--insecure", "--trust", str(keys["other.pub"]), "--progress", "none"]
        )
        == 13
    )
    assert "not by a key you trust" in capsys.readouterr().err
    assert (
        main(
            ["pull", target, "--models-dir", out, "--insecure", "--trust", str(keys["site.pub"]), "--progress", "none"]
        )
        == 0
    )
    assert "signed by key sha256:" in capsys.readouterr().err
    assert main(["push", "tiny", target, "--models-dir", str(store_dir), "--insecure", "--cosign-legacy"]) == 2


@pytest.mark.anyio
async def test_image_build_sign_signs_the_index_and_each_platform(
    docker_registry: DockerRegistry, tmp_path: Path, keys: dict[str, Any]
) -> None:
    from ollama_seed.bundle.image.api import abuild_image
    from ollama_seed.core.dsse import parse_bundle
    from ollama_seed.core.imageref import ImageRef
    from ollama_seed.core.intoto import parse_cosign_statement
    from ollama_seed.core.ociimage import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
    from ollama_seed.wire.cosign_fetch import fetch_signatures
    from tests.support.images import store_models

    store = tmp_path / "store"
    names = store_models(store, 1, 50_000)
    ref = f"{docker_registry.host}/img{uuid.uuid4().hex[:6]}/signed:v1"
    built = await abuild_image(names, push=ref, models_dir=store, insecure=True, sign=keys["site"], cosign_legacy=True)
    trust = Trust.load([keys["site.pub"]])
    subjects = [(INDEX_MEDIA_TYPE, built.digest), *((MANIFEST_MEDIA_TYPE, d) for _, d in built.platforms)]
    assert len(subjects) == 3
    async with RegistryClient(insecure=True) as client:
        for media_type, digest in subjects:
            raw = _get(docker_registry, f"{ImageRef.parse(ref).repository}/manifests/{digest}", media_type).content
            records = await fetch_signatures(client, ImageRef.parse(ref), Descriptor(media_type, digest, len(raw), {}))
            assert sorted(r.kind for r in records) == ["cosign", "cosign-legacy"]
            (bundle,) = [parse_bundle(r.bundle) for r in records if r.kind == "cosign"]
            assert trust.verify(bundle).fingerprint == keys["site"].public_key.fingerprint
            assert parse_cosign_statement(bundle.payload) == digest


def test_image_build_cosign_legacy_needs_a_registry(
    tmp_path: Path, keys: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """--sign also signs a layout (tests/bundle/test_image_trust.py); the legacy .sig tags need a registry."""
    argv = ["image", "build", "tiny", "--oci-layout", str(tmp_path / "lay"), "--sign", str(tmp_path / "site.key")]
    assert main([*argv, "--cosign-legacy", "--models-dir", str(tmp_path / "none"), "--offline"]) == 2
    assert "--cosign-legacy writes registry tags" in capsys.readouterr().err
    assert not (tmp_path / "lay").exists()
