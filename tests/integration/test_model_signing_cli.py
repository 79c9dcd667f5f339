"""Interop with the upstream OpenSSF Model Signing CLI (``model_signing`` 1.1.1, pinned in the dev lock).

Both ways: what ollama-seed signs over a models directory, ``model_signing verify key`` accepts
(and refuses once a blob is swapped); what ``model_signing sign key`` and ``sign certificate``
(with a CA, an intermediate and a leaf made here) sign over an Ollama-layout tree, ollama-seed
verifies. The names ``qwen3/...`` and ``qwen3-coder/...`` sort differently by path components
(the upstream signer's order) and by code points (the specification's, ours).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ollama_seed.bundle.api import export_bundle
from ollama_seed.cli.main import main
from ollama_seed.core.dsse import parse_bundle
from ollama_seed.core.errors import SignatureError
from ollama_seed.core.manifest import Manifest
from ollama_seed.core.reference import ModelName
from ollama_seed.pulling.provenance import sign_models, verify_models
from ollama_seed.store.signatures import SignatureStore
from ollama_seed.store.store import ModelStore
from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.trust import Trust
from tests.support.model import make_model
from tests.support.pki import make_pki

pytestmark = pytest.mark.interop
NAMES = ("qwen3:0.6b", "qwen3-coder:30b")


def upstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model_signing", *args], capture_output=True, text=True)


def make_store(root: Path, names: tuple[str, ...] = NAMES) -> list[tuple[ModelName, Manifest]]:
    out = []
    for i, text in enumerate(names):
        name = ModelName.parse(text)
        built = make_model(size_bytes=30_000 + i, seed=40 + i)
        host, ns, model, tag = name.path_parts
        built.expected_store(root, host, f"{ns}/{model}", tag)
        out.append((name, Manifest.parse(built.manifest)))
    return out


def resource_names(signature: Path) -> list[str]:
    statement = json.loads(parse_bundle(signature.read_bytes()).payload)
    return [r["name"] for r in statement["predicate"]["resources"]]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = SigningKey.generate("p256")
    key.save(tmp_path / "site.key", tmp_path / "site.pub", None)
    return tmp_path / "site.key", tmp_path / "site.pub"


def test_ours_verified_by_upstream_on_a_store_and_on_a_tree_of_just_the_models(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    store = tmp_path / "store"
    make_store(store)
    make_store(store, ("unrelated:latest",))  # an unsigned extra model: --ignore_unsigned_files
    sig = tmp_path / "store.sig"
    assert main(["sign", *NAMES, "--key", str(keys[0]), "-o", str(sig), "--models-dir", str(store)]) == 0
    names = resource_names(sig)
    assert names == sorted(names)  # code-point order, as the specification says ...
    components = sorted(names, key=lambda n: tuple(n.split("/")))
    assert names != components  # ... which is not upstream's path-component order for these names
    proc = upstream("verify", "key", str(store), "--signature", str(sig), "--public_key", str(keys[1]))
    assert proc.returncode == 1 and "Extra files" in proc.stderr  # the unrelated model is not signed
    args = ["verify", "key", str(store), "--signature", str(sig), "--public_key", str(keys[1])]
    proc = upstream(*args, "--ignore_unsigned_files")
    assert proc.returncode == 0, proc.stderr
    assert "Verification succeeded" in proc.stdout
    # a tree of exactly the signed models and our state directory: accepted as it is (ignore_paths)
    tree = tmp_path / "tree"
    make_store(tree)
    (tree / ".ollama-seed" / "tmp").mkdir(parents=True)
    (tree / ".ollama-seed" / "tmp" / "leftover").write_bytes(b"state")
    proc = upstream("verify", "key", str(tree), "--signature", str(sig), "--public_key", str(keys[1]))
    assert proc.returncode == 0, proc.stderr
    # a blob swapped: refused by both
    blob = next((tree / "blobs").iterdir())
    blob.write_bytes(b"x" + blob.read_bytes()[1:])
    proc = upstream("verify", "key", str(tree), "--signature", str(sig), "--public_key", str(keys[1]))
    assert proc.returncode == 1 and "Hash mismatch" in proc.stderr
    assert main(["verify", "--models-dir", str(tree), "--signature", str(sig), "--trust", str(keys[1])]) == 5


def test_ours_with_p384_and_a_certificate_verified_by_upstream(tmp_path: Path) -> None:
    store = tmp_path / "store"
    models = make_store(store)
    p384 = SigningKey.generate("p384")
    p384.save(tmp_path / "p384.key", tmp_path / "p384.pub", None)
    (tmp_path / "p384.sig").write_bytes(sign_models(NAMES, p384, models_dir=store))
    args = ["--signature", str(tmp_path / "p384.sig"), "--public_key", str(tmp_path / "p384.pub")]
    assert upstream("verify", "key", str(store), *args).returncode == 0
    pki = make_pki(tmp_path / "pki")
    certified = SigningKey.load(pki.leaf_key, certificate=pki.leaf, chain=pki.chain)
    (tmp_path / "cert.sig").write_bytes(sign_models([n for n, _ in models], certified, models_dir=store))
    args = ["--signature", str(tmp_path / "cert.sig"), "--certificate_chain", str(pki.root)]
    proc = upstream("verify", "certificate", str(store), *args)
    assert proc.returncode == 0, proc.stderr


def test_upstream_key_signature_over_an_ollama_tree_verified_by_us(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    tree = tmp_path / "tree"
    models = make_store(tree)
    (tree / ".ollama-seed").mkdir()
    sig = tmp_path / "upstream.sig"
    proc = upstream(
        "sign",
        "key",
        str(tree),
        "--private_key",
        str(keys[0]),
        "--signature",
        str(sig),
        "--ignore-paths",
        str(tree / ".ollama-seed"),
    )
    assert proc.returncode == 0, proc.stderr
    names = resource_names(sig)
    assert names == sorted(names, key=lambda n: tuple(n.split("/")))  # upstream: path-component order
    assert names != sorted(names)
    result = verify_models(sig, Trust.load([keys[1]]), models_dir=tree)
    assert sorted(n.display for n in result.models) == sorted(NAMES)
    assert result.signer.method == "key"
    kept = SignatureStore(ModelStore(tree)).records(models[0][1].digest)
    assert [r.kind for r in kept] == ["oms"]  # a signature that verified is kept for ensure and serve
    # one model only, by name; and a key we do not trust is refused
    assert verify_models(sig, Trust.load([keys[1]]), ["qwen3:0.6b"], models_dir=tree).models == (models[0][0],)
    other = SigningKey.generate("p256")
    other.save(tmp_path / "other.key", tmp_path / "other.pub", None)
    with pytest.raises(SignatureError, match="not by a key you trust"):
        verify_models(sig, Trust.load([tmp_path / "other.pub"]), models_dir=tree)


def test_upstream_certificate_signature_verified_by_us(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_store(tree)
    pki = make_pki(tmp_path / "pki")
    sig = tmp_path / "cert.sig"
    proc = upstream(
        "sign",
        "certificate",
        str(tree),
        "--private_key",
        str(pki.leaf_key),
        "--signing_certificate",
        str(pki.leaf),
        "--certificate_chain",
        str(pki.intermediate),
        "--signature",
        str(sig),
    )
    assert proc.returncode == 0, proc.stderr
    assert parse_bundle(sig.read_bytes()).method == "certificate"
    code = main(["verify", "--models-dir", str(tree), "--signature", str(sig), "--trust-ca", str(pki.root)])
    assert code == 0
    other = make_pki(tmp_path / "other")
    code = main(["verify", "--models-dir", str(tree), "--signature", str(sig), "--trust-ca", str(other.root)])
    assert code == 13


def test_signed_exports_verified_by_upstream(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """--format dir writes DIR/model.sig over exactly what it wrote: upstream accepts the tree as it is;
    a tar bundle, extracted, is accepted with its detached signature (our index is ignored there)."""
    store = tmp_path / "store"
    make_store(store)
    tree = tmp_path / "tree"
    key = SigningKey.load(keys[0])
    export_bundle(list(NAMES), tree, models_dir=store, format="dir", sign=key)
    proc = upstream("verify", "key", str(tree), "--signature", str(tree / "model.sig"), "--public_key", str(keys[1]))
    assert proc.returncode == 0, proc.stderr
    bundle = tmp_path / "m.bundle"
    export_bundle(list(NAMES), bundle, models_dir=store, sign=key, signature_file=tmp_path / "m.sig", compress="zstd")
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(bundle), "-C", str(extracted)], check=True)
    assert (extracted / ".ollama-seed" / "bundle.json").is_file()
    proc = upstream(
        "verify", "key", str(extracted), "--signature", str(tmp_path / "m.sig"), "--public_key", str(keys[1])
    )
    assert proc.returncode == 0, proc.stderr
    # one model dropped from the extracted tree: refused by upstream too
    (extracted / "manifests" / "registry.ollama.ai" / "library" / "qwen3" / "0.6b").unlink()
    proc = upstream(
        "verify", "key", str(extracted), "--signature", str(tmp_path / "m.sig"), "--public_key", str(keys[1])
    )
    assert proc.returncode == 1 and "Missing files" in proc.stderr
