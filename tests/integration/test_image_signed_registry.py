"""Signed model images through a real Docker Distribution 2.8 (no referrers API: the fallback tag), and
OCI archives written by skopeo: ``image verify``/``image extract`` with ``--trust`` and ``--oci-archive``."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import anyio
import pytest

from ollama_seed.bundle.image.api import build_image, extract_image, verify_image
from ollama_seed.cli.main import main
from ollama_seed.core.digest import Digest
from ollama_seed.core.errors import SignatureError
from ollama_seed.core.imageref import ImageRef
from ollama_seed.core.ocidoc import Descriptor
from ollama_seed.core.ociref import entry_for, referrers_index
from ollama_seed.wire.cosign_attach import attach_signature
from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.registry import RegistryClient
from ollama_seed.wire.trust import Trust
from ollama_seed.wire.upload import Uploader
from tests.support.images import models_of, skopeo_copy
from tests.support.registry import DockerRegistry

pytestmark = pytest.mark.registry
INDEX = "application/vnd.oci.image.index.v1+json"


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_a_signed_image_extracts_with_trust_and_every_forgery_is_refused(
    docker_registry: DockerRegistry, image_store: tuple[Path, list[str]], signing_keys: dict[str, Path], tmp_path: Path
) -> None:
    repo = f"s{uuid.uuid4().hex[:8]}/models"
    ref = f"{docker_registry.host}/{repo}:v1"
    site = SigningKey.load(signing_keys["site.key"], None)
    pushed = build_image(image_store[1], push=ref, models_dir=image_store[0], insecure=True, sign=site)
    trust = Trust.load([signing_keys["site.pub"]])
    assert verify_image(ref, insecure=True, trust=trust).signer is not None
    out = tmp_path / "out"
    report = extract_image(ref, insecure=True, models_dir=out, trust=trust)
    assert report.signer is not None and models_of(out) == models_of(image_store[0])
    # a platform's manifest by digest is signed too (image build signs what cosign sign --recursive does)
    amd = dict(pushed.platforms)["linux/amd64"]
    assert verify_image(f"{ref.rsplit(':', 1)[0]}@{amd}", insecure=True, trust=trust).signer is not None

    def refused(target: str, match: str) -> None:
        fresh = tmp_path / f"refused-{uuid.uuid4().hex[:6]}"
        code = main(
            [
                "image",
                "extract",
                target,
                "--insecure",
                "--models-dir",
                str(fresh),
                "--trust",
                str(signing_keys["site.pub"]),
            ]
        )
        assert code == SignatureError.exit_code
        with pytest.raises(SignatureError, match=match):
            verify_image(target, insecure=True, trust=trust)
        assert _tree(fresh) == []  # nothing fetched, not even the models directory made

    # 1. signed with another key
    other = f"{docker_registry.host}/{repo}:other"
    build_image(
        image_store[1][:1],
        push=other,
        models_dir=image_store[0],
        insecure=True,
        sign=SigningKey.load(signing_keys["other.key"], None),
    )
    refused(other, "not by a key you trust")
    # 2. the fallback tag of the signed index replaced by a list of one signature, over that index, by another key
    anyio.run(_forge, ref, pushed.digest, SigningKey.load(signing_keys["other.key"], None))
    refused(ref, "no signature there is by a key or CA you trust")
    # 3. an unsigned image pushed under the signed tag
    build_image(image_store[1][:1], push=ref, models_dir=image_store[0], insecure=True, mtime=7)
    refused(ref, "no signature of its manifest")


async def _forge(ref: str, digest: Digest, key: SigningKey) -> None:
    async with RegistryClient(insecure=True) as client:
        up = Uploader(client, ImageRef.parse(ref))
        subject = Descriptor(INDEX, digest, 0, {})
        (record,) = await attach_signature(up, subject, key)
        assert record.artifact is not None
        index = referrers_index([entry_for(record.artifact)])
        await up.manifest(f"sha256-{digest.hex}", INDEX, index, Digest(hashlib.sha256(index).hexdigest()))


@pytest.mark.interop
def test_skopeo_oci_archives_verify_and_extract(
    docker_registry: DockerRegistry, image_store: tuple[Path, list[str]], tmp_path: Path
) -> None:
    layout = tmp_path / "img"
    built = build_image(image_store[1], oci_layout=f"{layout}:v1", models_dir=image_store[0])
    ref = f"{docker_registry.host}/a{uuid.uuid4().hex[:8]}/models:v1"
    skopeo_copy(f"oci:{layout}:v1", f"oci-archive:{tmp_path / 'from-layout.tar'}:v1", "--all")
    skopeo_copy(f"oci:{layout}:v1", f"docker://{ref}", "--all", "--dest-tls-verify=false")
    skopeo_copy(
        f"docker://{ref}", f"oci-archive:{tmp_path / 'from-registry.tar'}:v1", "--all", "--src-tls-verify=false"
    )
    ours = tmp_path / "ours.tar"
    build_image(image_store[1], oci_archive=ours, models_dir=image_store[0])
    for archive in ("from-layout.tar", "from-registry.tar", "ours.tar"):
        path = tmp_path / archive
        report = verify_image(oci_archive=path)
        assert report.digest == built.digest
        out = tmp_path / f"out-{archive}"
        extract_image(oci_archive=f"{path}:latest" if archive == "ours.tar" else f"{path}:v1", models_dir=out)
        assert models_of(out) == models_of(image_store[0])
    # skopeo reads what image build --oci-archive writes, compressed layers too
    for compression in ("gzip", "zstd"):
        packed = tmp_path / f"{compression}.tar"
        build_image(image_store[1], oci_archive=packed, models_dir=image_store[0], compression=compression)
        skopeo_copy(f"oci-archive:{packed}:latest", f"oci:{tmp_path / compression}:x", "--all")
        assert verify_image(oci_layout=f"{tmp_path / compression}:x").digest == verify_image(oci_archive=packed).digest
    assert json.loads((tmp_path / "gzip" / "index.json").read_text())["manifests"]
