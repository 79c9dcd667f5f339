"""ensure with trust: a model on disk by the signatures the store keeps (no network), else its registry's;
a model pulled checked before it is written; the config file's [[trust]] rules; exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import ollama_seed
from ollama_seed.cli.main import main
from ollama_seed.core.errors import ConfigError, SignatureError
from ollama_seed.core.trustpolicy import TrustPolicy, TrustRule
from ollama_seed.mirror.push import push
from ollama_seed.store.signatures import SignatureStore
from ollama_seed.store.store import ModelStore
from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.trust import Trust
from tests.support.model import make_model
from tests.support.registry import DockerRegistry

HOST = "registry.ollama.ai"


@pytest.fixture
def site(tmp_path: Path) -> tuple[SigningKey, Path, Path]:
    key = SigningKey.generate("p256")
    key.save(tmp_path / "site.key", tmp_path / "site.pub", None)
    other = SigningKey.generate("p256")
    other.save(tmp_path / "other.key", tmp_path / "other.pub", None)
    return key, tmp_path / "site.pub", tmp_path / "other.pub"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    make_model(size_bytes=6000, seed=71).expected_store(root, HOST, "library/tiny", "latest")
    return root


def test_present_model_needs_a_kept_signature_offline(
    store: Path, tmp_path: Path, site: tuple[SigningKey, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, pub, other = site
    args = ["ensure", "tiny", "--models-dir", str(store), "--offline", "--require-signature"]
    assert main([*args, "--trust", str(pub)]) == 13
    assert "no signature by a key or CA you trust is kept with it" in capsys.readouterr().err
    assert main(["ensure", "tiny", "--models-dir", str(store), "--require-signature"]) == 2  # whom to trust?
    assert "--require-signature needs to know whom to trust" in capsys.readouterr().err
    sig = tmp_path / "tiny.sig"
    assert main(["sign", "tiny", "--key", str(tmp_path / "site.key"), "-o", str(sig), "--models-dir", str(store)]) == 0
    assert main(["verify", "tiny", "--signature", str(sig), "--trust", str(pub), "--models-dir", str(store)]) == 0
    capsys.readouterr()
    assert main([*args, "--trust", str(pub), "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["models"]
    assert report["status"] == "present" and report["signer"] == f"key {key.public_key.fingerprint} (P-256)"
    assert main([*args, "--trust", str(other)]) == 13  # kept, but not by a key trusted now
    # the library: a Trust means every model; a policy only the ones it matches
    with pytest.raises(SignatureError):
        ollama_seed.ensure("tiny", models_dir=store, offline=True, trust=Trust.load([other]))
    narrow = TrustPolicy((TrustRule("registry.lan/*", (str(other),)),))  # does not match tiny
    (report2,) = ollama_seed.ensure("tiny", models_dir=store, offline=True, trust=narrow)
    assert report2.signer is None and report2.status == "present"


_KEPT_CHILD = """
import json, sys
import ollama_seed
from ollama_seed.wire.trust import Trust
(report,) = ollama_seed.ensure("tiny", models_dir=sys.argv[1], trust=Trust.load([sys.argv[2]]))
print(json.dumps([report.status, report.signer, sorted(m for m in ("anyio", "asyncio", "httpx") if m in sys.modules)]))
"""


def test_a_kept_signature_is_checked_without_an_event_loop(
    store: Path, tmp_path: Path, site: tuple[SigningKey, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Online as well: a trusted signature the store keeps settles a present model, so the blocking
    ensure() checks it on its cheap path (no event loop, no network stack, no registry asked)."""
    key, pub, _ = site
    sig = tmp_path / "tiny.sig"
    assert main(["sign", "tiny", "--key", str(tmp_path / "site.key"), "-o", str(sig), "--models-dir", str(store)]) == 0
    assert main(["verify", "tiny", "--signature", str(sig), "--trust", str(pub), "--models-dir", str(store)]) == 0
    capsys.readouterr()
    child = subprocess.run(
        [sys.executable, "-c", _KEPT_CHILD, str(store), str(pub)], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    status, signer, loaded = json.loads(child.stdout)
    assert (status, signer, loaded) == ("present", f"key {key.public_key.fingerprint} (P-256)", [])


def test_config_rules_enforce_and_warn(
    store: Path, tmp_path: Path, site: tuple[SigningKey, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, pub, _ = site
    config = tmp_path / "config.toml"
    config.write_text(f'[[trust]]\nmatch = "registry.ollama.ai/library/*"\nkeys = ["{pub.name}"]\nmode = "warn"\n')
    base = ["ensure", "tiny", "--models-dir", str(store), "--offline", "--config", str(config)]
    assert main(base) == 0  # warn: no kept signature, logged, ready anyway
    config.write_text(f'[[trust]]\nmatch = "tiny:*"\nkeys = ["{pub.name}"]\n')  # enforce by default
    assert main(base) == 13
    config.write_text('[[trust]]\nmatch = "other:*"\nmode = "off"\n')
    assert main(base) == 0
    config.write_text(f'[[trust]]\nmatch = "other:*"\nkeys = ["{pub.name}"]\n')
    assert main([*base, "--require-signature"]) == 2  # required, but no rule says whom to trust for tiny
    assert "no trust is configured for it" in capsys.readouterr().err
    config.write_text('[[trust]]\nmatch = "*"\nmode = "enforce"\n')  # enforce with nobody to trust
    assert main(base) == 2
    assert "no keys or cas to trust" in capsys.readouterr().err
    config.write_text('[[trust]]\nmatch = "*"\nkey = ["x"]\n')
    assert main(base) == 2
    assert "trust[0].key is not a known key" in capsys.readouterr().err


def test_via_server_with_trust_is_refused(store: Path, site: tuple[SigningKey, Path, Path]) -> None:
    with pytest.raises(ConfigError, match="with via_server the Ollama server pulls"):
        ollama_seed.ensure(
            "tiny", models_dir=store, via_server=True, server="http://127.0.0.1:9", trust=Trust.load([site[1]])
        )


@pytest.mark.registry
def test_pulled_and_present_models_from_a_signed_registry(
    docker_registry: DockerRegistry, store: Path, tmp_path: Path, site: tuple[SigningKey, Path, Path]
) -> None:
    key, pub, other = site
    signed = f"{docker_registry.host}/e{uuid.uuid4().hex[:8]}/tiny:v1"
    plain = f"{docker_registry.host}/e{uuid.uuid4().hex[:8]}/tiny:v1"
    push("tiny", signed, models_dir=store, insecure=True, sign=key)
    push("tiny", plain, models_dir=store, insecure=True)
    host = tmp_path / "host"
    trust = Trust.load([pub])
    (pulled,) = ollama_seed.ensure(signed, models_dir=host, insecure=True, trust=trust)
    assert pulled.status == "pulled" and pulled.signer is not None
    (present,) = ollama_seed.ensure(signed, models_dir=host, offline=True, trust=trust)  # the kept signature
    assert present.status == "present" and present.signer == pulled.signer
    with pytest.raises(SignatureError, match="no signature of its manifest"):
        ollama_seed.ensure(plain, models_dir=tmp_path / "h2", insecure=True, trust=trust)
    assert not (tmp_path / "h2" / "manifests").exists() or not any((tmp_path / "h2" / "manifests").rglob("*"))
    # a model present without a kept signature: its registry's is fetched, checked and kept
    bare = tmp_path / "bare"
    ollama_seed.ensure(signed, models_dir=bare, insecure=True)
    digest = ModelStore(bare).list_models()[0].manifest.digest
    assert SignatureStore(ModelStore(bare)).records(digest) == []
    (checked,) = ollama_seed.ensure(signed, models_dir=bare, insecure=True, trust=trust)
    assert checked.status == "present" and checked.signer is not None
    assert [r.kind for r in SignatureStore(ModelStore(bare)).records(digest)] == ["cosign"]
    with pytest.raises(SignatureError, match="not by a key you trust"):
        ollama_seed.ensure(signed, models_dir=bare, insecure=True, trust=Trust.load([other]))
