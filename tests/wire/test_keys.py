"""Keys and trust for provenance: keygen, the key files OpenSSL makes, passphrases, certificates, and
every key mistake answered with a clear message and its own exit code, no traceback and no secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ollama_seed.cli.main import main
from ollama_seed.core.dsse import INTOTO_PAYLOAD_TYPE, encode_bundle, pae, parse_bundle
from ollama_seed.core.errors import SignatureError, SigningKeyError
from ollama_seed.wire.keys import KEY_PASSWORD_ENV, PublicKey, SigningKey, read_passphrase
from ollama_seed.wire.trust import Trust
from tests.support.pki import DAY, NOW, make_pki, private_pem, public_pem

SECRET = "correct horse battery staple 7421"


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    path = tmp_path / "pw"
    path.write_text(SECRET + "\n")
    return path


def _signed(key: SigningKey, payload: bytes = b'{"_type":"test"}') -> bytes:
    sig = key.sign(pae(INTOTO_PAYLOAD_TYPE, payload))
    return encode_bundle(payload, sig, key_hint=key.public_key.oms_hint, certificates=key.certificates)


@pytest.mark.parametrize(("curve", "shown"), [("p256", "P-256"), ("p384", "P-384")])
def test_keygen_writes_an_encrypted_pkcs8_key_openssl_reads(
    tmp_path: Path, pwfile: Path, curve: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stem = tmp_path / "site"
    assert main(["keygen", "-o", str(stem), "--curve", curve, "--key-password-file", str(pwfile)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"{shown} key sha256:")
    key_file, pub_file = tmp_path / "site.key", tmp_path / "site.pub"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert pub_file.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    if os.name == "posix":
        assert key_file.stat().st_mode & 0o777 == 0o600
    text = subprocess.run(
        ["openssl", "pkey", "-in", str(key_file), "-passin", f"file:{pwfile}", "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{shown[2:]} bit" in text  # "256 bit" / "384 bit"
    key = SigningKey.load(key_file, SECRET)
    assert key.public_key.pem == pub_file.read_bytes()
    assert SECRET not in out.out + out.err
    # an existing key is never replaced without --force
    assert main(["keygen", "-o", str(stem), "--key-password-file", str(pwfile)]) == 14
    assert "exists" in capsys.readouterr().err


def test_openssl_ecparam_keys_are_accepted(tmp_path: Path) -> None:
    with_params = tmp_path / "ecparam.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-out", str(with_params)], check=True
    )  # an EC PARAMETERS block, then the SEC 1 key
    assert with_params.read_bytes().startswith(b"-----BEGIN EC PARAMETERS-----")
    pub = tmp_path / "ecparam.pub"
    subprocess.run(
        ["openssl", "ec", "-in", str(with_params), "-pubout", "-out", str(pub)], check=True, capture_output=True
    )
    key = SigningKey.load(with_params)
    signer = Trust.load([pub]).verify(parse_bundle(_signed(key)))
    assert signer.method == "key" and signer.curve == "P-256"
    # a passphrase given for a plain key is no problem
    assert SigningKey.load(with_params, "unused").public_key.pem == PublicKey.load(pub).pem


def test_passphrase_sources(tmp_path: Path, pwfile: Path) -> None:
    assert read_passphrase(pwfile, environ={}) == SECRET.encode()
    assert read_passphrase(None, environ={KEY_PASSWORD_ENV: "from-env"}) == b"from-env"
    assert read_passphrase(None, environ={}) is None
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SigningKeyError, match="is empty"):
        read_passphrase(empty)
    with pytest.raises(SigningKeyError, match="cannot read the passphrase file"):
        read_passphrase(tmp_path / "nope")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k, p: p, "is a public key; signing needs the private key"),
        (lambda k, p: private_pem(k, b"other"), "wrong passphrase"),
        (lambda k, p: private_pem(k, SECRET.encode()), None),
        (lambda k, p: b"garbage", "is not a PEM private key"),
        (
            lambda k, p: ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "Ed25519 private key; provenance signatures use ECDSA P-256 or P-384",
        ),
        (
            lambda k, p: rsa.generate_private_key(65537, 2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "RSA private key",
        ),
        (
            lambda k, p: ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            ),
            "OpenSSH key",
        ),
    ],
)
def test_signing_key_mistakes(tmp_path: Path, make: object, message: str | None) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(make(key, public_pem(key)))  # type: ignore[operator]
    if message is None:
        assert SigningKey.load(path, SECRET).public_key.pem == public_pem(key)
        with pytest.raises(SigningKeyError, match=r"is encrypted: give its passphrase in a file \(--key-password-file"):
            SigningKey.load(path)
        return
    with pytest.raises(SigningKeyError, match=message) as info:
        SigningKey.load(path, "wrong")
    assert SECRET not in str(info.value) and "wrong" not in str(info.value).replace("wrong passphrase", "")


def test_trust_file_mistakes(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "private.pem"
    private.write_bytes(private_pem(key))
    public = tmp_path / "public.pem"
    public.write_bytes(public_pem(key))
    with pytest.raises(SigningKeyError, match="is a private key; trust the public key instead"):
        Trust.load([private])
    with pytest.raises(SigningKeyError, match="is a public key, not a certificate; a key is trusted with --trust"):
        Trust.load(cas=[public])  # a P-256 key where a certificate is required
    pki = make_pki(tmp_path / "pki")
    with pytest.raises(SigningKeyError, match="is a certificate; give a certificate authority with --trust-ca"):
        Trust.load([pki.root])
    with pytest.raises(SigningKeyError, match="cannot read the public key"):
        Trust.load([tmp_path / "missing.pub"])
    with pytest.raises(ValueError, match="at least one"):
        Trust.load()


def test_trust_verify_keys(tmp_path: Path) -> None:
    ours, theirs = SigningKey.generate("p256"), SigningKey.generate("p384")
    (tmp_path / "ours.pub").write_bytes(ours.public_key.pem)
    trust = Trust.load([tmp_path / "ours.pub"])
    bundle = parse_bundle(_signed(ours))
    assert trust.verify(bundle).fingerprint == ours.public_key.fingerprint
    with pytest.raises(SignatureError, match="not by a key you trust"):
        trust.verify(parse_bundle(_signed(theirs)))
    tampered = encode_bundle(b'{"_type":"tampered"}', bundle.signatures[0], key_hint=ours.public_key.oms_hint)
    with pytest.raises(SignatureError, match=r"names your trusted key .* but does not verify"):
        trust.verify(parse_bundle(tampered))
    unhinted = encode_bundle(bundle.payload, bundle.signatures[0])  # no hint: every trusted key is tried
    assert trust.verify(parse_bundle(unhinted)).method == "key"
    cosign_hinted = encode_bundle(bundle.payload, bundle.signatures[0], key_hint=ours.public_key.cosign_hint)
    assert trust.verify(parse_bundle(cosign_hinted)).method == "key"


def test_certificate_method(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    key = SigningKey.load(pki.leaf_key, certificate=pki.leaf, chain=pki.chain)
    assert len(key.certificates) == 2
    bundle = parse_bundle(_signed(key))
    assert bundle.method == "certificate" and bundle.key_hint is None
    signer = Trust.load(cas=[pki.root]).verify(bundle)
    assert signer.method == "certificate"
    assert "CN=Model Release" in str(signer) and "CN=Site Intermediate CA" in str(signer)
    # the signer's own key trusted directly also accepts it
    (tmp_path / "leaf.pub").write_bytes(key.public_key.pem)
    assert Trust.load([tmp_path / "leaf.pub"]).verify(bundle).method == "key"
    other = make_pki(tmp_path / "other")
    with pytest.raises(SignatureError, match="does not chain to a CA you trust"):
        Trust.load(cas=[other.root]).verify(bundle)
    with pytest.raises(SignatureError, match="trust the CA that issued it with --trust-ca"):
        Trust.load([tmp_path / "leaf.pub"]).verify(parse_bundle(_signed(_other_leaf(other))))
    # without the intermediate in the signature the path cannot be built
    short = SigningKey.load(pki.leaf_key, certificate=pki.leaf)
    with pytest.raises(SignatureError, match="does not chain"):
        Trust.load(cas=[pki.root]).verify(parse_bundle(_signed(short)))


def _other_leaf(pki: object) -> SigningKey:
    return SigningKey.load(pki.leaf_key, certificate=pki.leaf, chain=pki.chain)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"not_before": NOW - 10 * DAY, "not_after": NOW - DAY}, "expired on"),
        ({"not_before": NOW + DAY, "not_after": NOW + 10 * DAY}, "not valid before"),
        ({"eku": [ExtendedKeyUsageOID.SERVER_AUTH]}, "does not include codeSigning"),
        ({"key_usage": False}, "no KeyUsage or ExtendedKeyUsage"),
    ],
)
def test_wrong_certificates_are_refused_for_signing_and_verifying(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    pki = make_pki(tmp_path / "pki")
    bad = pki.issue(tmp_path / "bad.pem", **options)
    with pytest.raises(SigningKeyError, match=f"cannot sign: .*{message}"):
        SigningKey.load(pki.leaf_key, certificate=bad, chain=pki.chain)
    good = SigningKey.load(pki.leaf_key, certificate=pki.leaf, chain=pki.chain)
    sig = good.sign(pae(INTOTO_PAYLOAD_TYPE, b"{}"))
    from cryptography import x509

    ders = (
        x509.load_pem_x509_certificate(bad.read_bytes()).public_bytes(serialization.Encoding.DER),
        good.certificates[1],
    )
    forged = parse_bundle(encode_bundle(b"{}", sig, certificates=ders))
    with pytest.raises(SignatureError, match=message):
        Trust.load(cas=[pki.root]).verify(forged)


def test_cert_for_another_key_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    stray = tmp_path / "stray.key"
    stray.write_bytes(private_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(SigningKeyError, match="certificate of another key"):
        SigningKey.load(stray, certificate=pki.leaf)


def test_cli_key_errors_exit_14_with_no_traceback_and_no_secret(tmp_path: Path, pwfile: Path) -> None:
    key = SigningKey.generate("p256")
    key.save(tmp_path / "site.key", tmp_path / "site.pub", SECRET.encode())
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA")}
    env[KEY_PASSWORD_ENV] = SECRET + "x"
    runs = [
        (["sign", "x:1", "--key", str(tmp_path / "site.key"), "--key-password-file", str(wrong)], "wrong passphrase"),
        (["sign", "x:1", "--key", str(tmp_path / "site.pub")], "is a public key"),
        (["sign", "x:1", "--key", str(tmp_path / "site.key")], "wrong passphrase"),  # from the environment
        (
            ["verify", "--signature", str(tmp_path / "site.pub"), "--trust-ca", str(tmp_path / "site.pub")],
            "not a certificate",
        ),
    ]
    for args, message in runs:
        proc = subprocess.run(
            [sys.executable, "-m", "ollama_seed", "-vv", *args, "-o", str(tmp_path / "out.sig")]
            if args[0] == "sign"
            else [sys.executable, "-m", "ollama_seed", "-vv", *args, "--models-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert proc.returncode == 14, (args, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr
        assert SECRET not in proc.stderr + proc.stdout
        assert "not the passphrase" not in proc.stderr + proc.stdout


def test_without_the_signing_extra_the_error_says_what_to_install(tmp_path: Path) -> None:
    """cryptography stays optional (the extra 'signing'): without it, signing and verifying say so."""
    blocked = (
        "import sys; sys.modules['cryptography'] = None; "
        "sys.argv = ['ollama-seed', *sys.argv[1:]]; from ollama_seed.cli.main import main; raise SystemExit(main())"
    )
    for argv in (
        ["keygen", "--no-passphrase", "-o", str(tmp_path / "k")],
        ["verify", "--signature", "x", "--trust", "y"],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", blocked, *argv, *(["--models-dir", str(tmp_path)] if argv[0] == "verify" else [])],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, proc.stderr
        assert "needs the 'cryptography' package: pip install 'ollama-seed[signing]'" in proc.stderr
        assert "pip install '.[signing]'" in proc.stderr
        assert "Traceback" not in proc.stderr
