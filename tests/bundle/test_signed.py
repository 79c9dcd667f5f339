"""Signed bundles: export --sign, import and bundle verify with trust, and every tampering case refused
before anything is written (the store byte for byte as it was); repacking keeps the signature valid."""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import ollama_seed
from ollama_seed import ModelName
from ollama_seed.bundle.api import export_bundle, import_bundle, inspect_bundle, verify_bundle
from ollama_seed.bundle.format.index import BundleIndex, IndexBlob, IndexModel
from ollama_seed.bundle.format.names import INDEX_MEMBER
from ollama_seed.cli.main import main
from ollama_seed.core.digest import Digest
from ollama_seed.core.errors import SignatureError
from ollama_seed.store.signatures import SignatureStore
from ollama_seed.store.store import ModelStore
from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.oms import sign_models
from ollama_seed.wire.trust import Trust
from tests.support.craft import Model, bundle_members, install, join, member, models, snapshot
from tests.support.model import make_model
from tests.support.pki import certificate, make_pki

Crafted = Callable[[list[Model]], list[bytes]]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, SigningKey]:
    out = {}
    for label in ("site", "other"):
        key = SigningKey.generate("p256")
        key.save(tmp_path / f"{label}.key", tmp_path / f"{label}.pub", None)
        out[label] = key
    return out


@pytest.fixture
def trust(tmp_path: Path, keys: dict[str, SigningKey]) -> Trust:
    return Trust.load([tmp_path / "site.pub"])


@pytest.fixture
def items() -> list[Model]:
    return models(3, 20_000)


def _signature(key: SigningKey, chosen: list[Model]) -> bytes:
    return sign_models(key, [(m.name, m.manifest) for m in chosen])


def _bundle(chosen: list[Model], signatures: tuple[bytes, ...], *, index: BundleIndex | None = None) -> bytes:
    """An honest bundle of *chosen* whose index carries *signatures* (or the *index* given)."""
    if index is None:
        index = BundleIndex.build(
            [(m.name, m.manifest) for m in chosen], created_by="t", created="", signatures=signatures
        )
    return join([member(INDEX_MEMBER, index.encode()), *bundle_members(chosen, index=False)])


def _refused(data: bytes, store: Path, trust: Trust, match: str) -> None:
    before = snapshot(store)
    with pytest.raises(SignatureError, match=match):
        import_bundle(io.BytesIO(data), models_dir=store, trust=trust)
    assert snapshot(store) == before
    with pytest.raises(SignatureError, match=match):
        verify_bundle(io.BytesIO(data), trust=trust)


def test_export_sign_then_import_and_verify(
    tmp_path: Path, store: Path, items: list[Model], keys: dict[str, SigningKey], trust: Trust
) -> None:
    src = tmp_path / "src"
    install(src, items[:2])
    out = tmp_path / "m.bundle"
    result = export_bundle(
        [m.name for m in items[:2]], out, models_dir=src, sign=keys["site"], signature_file=tmp_path / "m.sig"
    )
    assert result.signer == f"key {keys['site'].public_key.fingerprint}"
    assert result.signature_file == str(tmp_path / "m.sig")
    info = inspect_bundle(out)
    assert info.signers == (f"key {keys['site'].public_key.fingerprint}",)
    assert verify_bundle(out, trust=trust).signer == f"key {keys['site'].public_key.fingerprint} (P-256)"
    done = import_bundle(out, models_dir=store, trust=trust)
    assert done.signer is not None and set(done.models) == {m.name for m in items[:2]}
    kept = SignatureStore(ModelStore(store)).records(items[0].manifest.digest)
    assert [r.kind for r in kept] == ["oms"]
    assert json.loads(kept[0].bundle) == json.loads((tmp_path / "m.sig").read_bytes())  # the same signature
    # today's readers: no trust, no change (the signature is an index key they ignore)
    assert import_bundle(out, models_dir=tmp_path / "plain").signer is None


def test_repacked_recompressed_and_split_bundles_keep_their_signature(
    tmp_path: Path, items: list[Model], keys: dict[str, SigningKey], trust: Trust
) -> None:
    src = tmp_path / "src"
    install(src, items[:2])
    plain = tmp_path / "plain.bundle"
    export_bundle([m.name for m in items[:2]], plain, models_dir=src, sign=keys["site"], compress="none")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xf", str(plain), "-C", str(unpacked)], check=True)
    repacked = tmp_path / "repacked.tar"  # GNU tar, its own headers; the index first, manifests before blobs
    subprocess.run(
        ["tar", "-cf", str(repacked), "-C", str(unpacked), ".ollama-seed/bundle.json", "manifests", "blobs"], check=True
    )
    gz = tmp_path / "repacked.tar.gz"
    gz.write_bytes(gzip.compress(repacked.read_bytes()))
    data = gz.read_bytes()
    size = len(data) // 3 + 1
    for i in range(3):
        (tmp_path / f"split.bundle.{i:03d}").write_bytes(data[i * size : (i + 1) * size])
    for source in (repacked, gz, tmp_path / "split.bundle.000"):
        dst = tmp_path / f"dst-{source.name}"
        assert import_bundle(source, models_dir=dst, trust=trust).signer is not None


def test_tampering_is_refused_before_anything_is_written(
    tmp_path: Path, store: Path, items: list[Model], keys: dict[str, SigningKey], trust: Trust
) -> None:
    m0, m1, m2 = items
    sig = _signature(keys["site"], [m0, m1])
    # a model's weights swapped and every digest re-computed (blob, manifest, index), the signature kept
    evil = Model(m0.name, make_model(size_bytes=20_000, seed=4242))
    _refused(_bundle([evil, m1], (sig,)), store, trust, "is not the signed one")
    # a manifest edited (one byte of JSON whitespace), its digest re-computed in the index
    edited = Model(m0.name, dataclasses.replace(m0.built, manifest=m0.built.manifest.replace(b"{", b"{ ", 1)))
    _refused(_bundle([edited, m1], (sig,)), store, trust, "is not the signed one")
    # a model added, dropped, renamed
    _refused(_bundle([m0, m1, m2], (sig,)), store, trust, r"m2:latest in the bundle is not covered by the signature")
    _refused(_bundle([m0], (sig,)), store, trust, r"covers m1:latest, which the bundle lacks")
    renamed = Model(ModelName.parse("evil:latest"), m0.built)
    _refused(_bundle([renamed, m1], (sig,)), store, trust, "evil:latest in the bundle is not covered")
    # by another key; for another bundle; none at all
    _refused(_bundle([m0, m1], (_signature(keys["other"], [m0, m1]),)), store, trust, "not by a key you trust")
    _refused(_bundle([m0, m1], (_signature(keys["site"], [m2]),)), store, trust, "not covered by the signature")
    _refused(_bundle([m0, m1], ()), store, trust, "the bundle is not signed")
    # truncated and garbled signatures
    doc = json.loads(sig)
    truncated = json.dumps(
        {**doc, "dsseEnvelope": {**doc["dsseEnvelope"], "payload": doc["dsseEnvelope"]["payload"][:40]}}
    )
    _refused(_bundle([m0, m1], (truncated.encode(),)), store, trust, "signature cannot be trusted")
    flipped = doc["dsseEnvelope"]["signatures"][0]["sig"]
    flipped = ("A" if flipped[0] != "A" else "B") + flipped[1:]
    garbled = {**doc, "dsseEnvelope": {**doc["dsseEnvelope"], "signatures": [{"sig": flipped, "keyid": ""}]}}
    _refused(_bundle([m0, m1], (json.dumps(garbled).encode(),)), store, trust, "does not verify")
    _refused(_bundle([m0, m1], (b'{"mediaType": "nonsense"}',)), store, trust, "not a usable signature")
    # the index lists a blob the signature lacks
    index = BundleIndex.build([(m.name, m.manifest) for m in (m0, m1)], created_by="t", created="", signatures=(sig,))
    extra = m2.built.model_layer.digest
    digest = Digest.parse(extra)
    first = index.models[0]
    listed = BundleIndex(
        (IndexModel(first.name, first.manifest_digest, first.manifest_size, (*first.blobs, digest)), *index.models[1:]),
        (*index.blobs, IndexBlob(digest, m2.built.model_layer.size)),
        signatures=(sig,),
    )
    _refused(
        _bundle([m0, m1], (sig,), index=listed), store, trust, f"blob {extra} of m0:latest in the bundle is not covered"
    )


def test_certificates_expired_or_wrongly_used_are_refused(tmp_path: Path, store: Path, items: list[Model]) -> None:
    pki = make_pki(tmp_path / "pki")
    trust = Trust.load(cas=[pki.root])
    now = datetime.datetime.now(datetime.timezone.utc)
    chain = x509.load_pem_x509_certificate(pki.intermediate.read_bytes()).public_bytes(serialization.Encoding.DER)
    good = SigningKey.load(pki.leaf_key, certificate=pki.leaf, chain=pki.chain)
    assert verify_bundle(io.BytesIO(_bundle(items[:1], (_signature(good, items[:1]),))), trust=trust).signer
    for options, match in (
        ({"not_before": now - datetime.timedelta(days=9), "not_after": now - datetime.timedelta(days=1)}, "expired on"),
        ({"eku": [ExtendedKeyUsageOID.SERVER_AUTH]}, "does not include codeSigning"),
    ):
        leaf = certificate("Model Release", pki.leaf_private, ("Site Intermediate CA", pki.inter_key), **options)
        bad = SigningKey(pki.leaf_private, certificates=(leaf.public_bytes(serialization.Encoding.DER), chain))
        _refused(_bundle(items[:1], (_signature(bad, items[:1]),)), store, trust, match)


def test_detached_signatures_and_sources_without_an_index(
    tmp_path: Path, store: Path, items: list[Model], keys: dict[str, SigningKey], trust: Trust
) -> None:
    m0, m1, m2 = items
    src = tmp_path / "src"
    install(src, [m0, m1])
    sig = tmp_path / "store.sig"
    sig.write_bytes(ollama_seed.sign_models([m0.name, m1.name], keys["site"], models_dir=src))
    # an unsigned bundle, signed afterwards: the detached signature
    unsigned = tmp_path / "unsigned.bundle"
    export_bundle([m0.name, m1.name], unsigned, models_dir=src)
    assert import_bundle(unsigned, models_dir=tmp_path / "a", trust=trust, signature=sig).signer is not None
    # a plain tar of a store (no index), and another models directory
    tarball = tmp_path / "store.tar"
    subprocess.run(["tar", "-cf", str(tarball), "-C", str(src), "manifests", "blobs"], check=True)
    assert import_bundle(tarball, models_dir=tmp_path / "b", trust=trust, signature=sig).signer is not None
    assert import_bundle(src, models_dir=tmp_path / "c", trust=trust, signature=sig).signer is not None
    assert import_bundle(src, names=[m0.name], models_dir=tmp_path / "d", trust=trust, signature=sig).signer is not None
    # with a model more, or one less, than signed
    install(src, [m2])
    more = tmp_path / "more.tar"
    subprocess.run(["tar", "-cf", str(more), "-C", str(src), "manifests", "blobs"], check=True)
    before = snapshot(store)
    with pytest.raises(SignatureError, match=r"m2:latest in member .* is not covered"):
        import_bundle(more, models_dir=store, trust=trust, signature=sig)
    assert {p for p in snapshot(store) if p.startswith("manifests")} == {p for p in before if p.startswith("manifests")}
    only = tmp_path / "only"
    install(only, [m0])
    fewer = tmp_path / "fewer.tar"
    subprocess.run(["tar", "-cf", str(fewer), "-C", str(only), "manifests", "blobs"], check=True)
    with pytest.raises(SignatureError, match=r"covers m1:latest, which .* lacks"):
        verify_bundle(fewer, trust=trust, signature=sig)
    # without trust a signature means nothing to check against
    with pytest.raises(ValueError, match="give trust="):
        import_bundle(unsigned, models_dir=tmp_path / "e", signature=sig)


def test_dir_export_writes_model_sig_that_import_finds(
    tmp_path: Path, items: list[Model], keys: dict[str, SigningKey], trust: Trust
) -> None:
    src = tmp_path / "src"
    install(src, items[:2])
    tree = tmp_path / "tree"
    result = export_bundle([m.name for m in items[:2]], tree, models_dir=src, format="dir", sign=keys["site"])
    assert result.signature_file == str(tree / "model.sig")
    assert sorted(p.name for p in (tree / ".ollama-seed").iterdir()) == ["signatures"]
    assert import_bundle(tree, models_dir=tmp_path / "dst", trust=trust).signer is not None
    assert inspect_bundle(tree).signers == (f"key {keys['site'].public_key.fingerprint}",)
    with pytest.raises(ValueError, match="OCI layout has no place"):
        export_bundle([items[0].name], tmp_path / "lay", models_dir=src, format="oci", sign=keys["site"])
    layout = tmp_path / "lay"
    export_bundle(
        [items[0].name], layout, models_dir=src, format="oci", sign=keys["site"], signature_file=tmp_path / "l.sig"
    )
    assert import_bundle(layout, models_dir=tmp_path / "oci", trust=trust, signature=tmp_path / "l.sig").signer


def test_cli_export_sign_import_trust_and_exit_codes(
    tmp_path: Path,
    items: list[Model],
    keys: dict[str, SigningKey],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "src"
    install(src, items[:2])
    out = tmp_path / "m.bundle"
    names = [m.name.display for m in items[:2]]
    assert main(["export", *names, "-o", str(out), "--models-dir", str(src), "--sign", str(tmp_path / "site.key")]) == 0
    assert main(["bundle", "ls", str(out)]) == 0
    assert f"signed by key {keys['site'].public_key.fingerprint}" in capsys.readouterr().out
    args = ["--progress", "none"]
    assert main(["bundle", "verify", str(out), "--trust", str(tmp_path / "other.pub"), *args]) == 13
    assert (
        main(["import", str(out), "--models-dir", str(tmp_path / "d"), "--trust", str(tmp_path / "site.pub"), *args])
        == 0
    )
    config = tmp_path / "c.toml"
    config.write_text(f'[[trust]]\nmatch = "m*"\nkeys = ["{tmp_path / "other.pub"}"]\n')
    monkeypatch.setenv("OLLAMA_SEED_CONFIG", str(config))
    assert main(["import", str(out), "--models-dir", str(tmp_path / "e"), *args]) == 13  # the config's rule applies
    assert not (tmp_path / "e" / "manifests").exists() or not any((tmp_path / "e" / "manifests").rglob("*"))
    monkeypatch.delenv("OLLAMA_SEED_CONFIG")
    assert main(["export", names[0], "-o", str(tmp_path / "x"), "--models-dir", str(src), "--signature", "s"]) == 2
    assert main(["import", str(out), "--models-dir", str(tmp_path / "f"), "--signature", str(out), *args]) == 2
