"""CLI: ``keygen`` and ``sign``, and the key and trust options of the commands that sign or verify.

Passphrases come from a file (``--key-password-file``) or ``$OLLAMA_SEED_KEY_PASSWORD``, never
from the command line, and are never printed or logged. Trust comes from ``--trust`` and
``--trust-ca`` (every model must then be signed by one of them), else from the config file's
``[[trust]]`` rules; never from a bundle or a registry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError, SigningKeyError

if TYPE_CHECKING:
    from ..core.trustpolicy import TrustPolicy
    from ..startup.config import Config
    from ..wire.keys import SigningKey
    from ..wire.trust import Trust

__all__ = [
    "add_key_options",
    "add_trust_options",
    "load_key",
    "register",
    "trust_from",
]

PASSWORD_HELP = "a file whose first line is the key's passphrase (else $OLLAMA_SEED_KEY_PASSWORD)"


def add_key_options(p: argparse.ArgumentParser, flag: str = "--key", *, required: bool = False) -> None:
    """The signing key (``flag KEY``), its passphrase file, and an optional certificate and chain."""
    p.add_argument(
        flag,
        dest="signing_key",
        metavar="KEY",
        required=required,
        help="sign with this private key (PEM: 'ollama-seed keygen', or 'openssl ecparam -name prime256v1 -genkey')",
    )
    p.add_argument("--key-password-file", metavar="FILE", help=PASSWORD_HELP)
    p.add_argument(
        "--cert",
        metavar="FILE",
        help="sign with the certificate method: the key's certificate (PEM; a chain may follow it in the file)",
    )
    p.add_argument("--cert-chain", metavar="FILE", help="intermediate CA certificates (PEM) to carry with --cert")


def load_key(args: argparse.Namespace) -> SigningKey | None:
    """The key the options name (None when none is given)."""
    path = getattr(args, "signing_key", None)
    if path is None:
        if getattr(args, "cert", None) or getattr(args, "cert_chain", None):
            raise SigningKeyError("--cert and --cert-chain go with the signing key they certify (--key or --sign)")
        return None
    from ..wire.keys import SigningKey, read_passphrase

    secret = read_passphrase(args.key_password_file)
    return SigningKey.load(path, secret, certificate=args.cert, chain=args.cert_chain)


def add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="PUBLIC_KEY",
        help="accept only signatures by this public key (repeatable); overrides the config file's [[trust]] rules",
    )
    p.add_argument(
        "--trust-ca",
        action="append",
        default=[],
        metavar="CA_CERT",
        help="or by a certificate that chains to this CA (PEM; repeatable); the leaf must be valid now and "
        "allow digitalSignature or codeSigning",
    )


def trust_from(
    args: argparse.Namespace, *, require: bool = False, config: Config | None = None
) -> Trust | TrustPolicy | None:
    """``--trust``/``--trust-ca`` as a :class:`Trust`, else the config file's rules, else None.

    With *require* (``--require-signature``), the config's rules all enforce, and having no trust
    at all is an error.
    """
    keys, cas = getattr(args, "trust", []), getattr(args, "trust_ca", [])
    if keys or cas:
        from ..wire.trust import Trust

        return Trust.load(keys, cas)
    if config is None:
        from ..startup.config import load_config

        config_path = getattr(args, "config", None)
        config = load_config(config_path, required=config_path is not None)
    policy = config.trust
    if require:
        if not any(rule.has_trust for rule in policy.rules):
            raise ConfigError(
                "--require-signature needs to know whom to trust: pass --trust PUBLIC_KEY (or --trust-ca CA_CERT), "
                "or add [[trust]] rules to the config file"
            )
        return policy.required()
    return policy if policy else None


def register(sub: Any) -> None:
    p = sub.add_parser(
        "keygen",
        help="make an ECDSA key pair for signing bundles, stores and registry pushes",
        description="Write STEM.key (the private key: PKCS#8 PEM, passphrase-encrypted, mode 0600; keep it on "
        "the signing host) and STEM.pub (the public key: give it to the hosts that verify). The passphrase "
        "comes from --key-password-file or $OLLAMA_SEED_KEY_PASSWORD.",
    )
    p.add_argument(
        "-o",
        "--output",
        default="ollama-seed",
        metavar="STEM",
        help="write STEM.key and STEM.pub (default ollama-seed)",
    )
    p.add_argument("--curve", choices=["p256", "p384"], default="p256", help="ECDSA curve (default p256)")
    p.add_argument("--key-password-file", metavar="FILE", help=PASSWORD_HELP)
    p.add_argument(
        "--no-passphrase", action="store_true", help="write the private key unencrypted (for keys kept in a vault)"
    )
    p.add_argument("--force", action="store_true", help="replace STEM.key and STEM.pub if they exist")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser(
        "sign",
        help="write an OpenSSF Model Signing signature over models already in the store",
        description="Sign each model's manifest and every blob it names, as they lie in the models directory "
        "(nothing is hashed: blob names are digests). Check it with 'ollama-seed verify NAME --signature FILE "
        "--trust KEY.pub', or with the upstream 'model_signing verify key MODELS_DIR --signature FILE "
        "--public_key KEY.pub --ignore_unsigned_files'.",
    )
    p.add_argument("names", nargs="+", metavar="NAME", help="a model in the store (gemma3:270m, ...)")
    add_key_options(p, "--key", required=True)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the signature (- for stdout)")
    from .where import add_store_options

    add_store_options(p, reads_only=True)
    p.set_defaults(func=cmd_sign)


def cmd_keygen(args: argparse.Namespace) -> int:
    from ..wire.keys import SigningKey, read_passphrase

    secret = None if args.no_passphrase else read_passphrase(args.key_password_file)
    if secret is None and not args.no_passphrase:
        raise SigningKeyError(
            "keygen encrypts the private key with a passphrase: put it in a file (--key-password-file FILE) or in "
            "$OLLAMA_SEED_KEY_PASSWORD, or pass --no-passphrase for an unencrypted key"
        )
    stem = Path(args.output)
    key_path, pub_path = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".pub")
    key = SigningKey.generate(args.curve)
    key.save(key_path, pub_path, secret, overwrite=args.force)
    pub = key.public_key
    state = "encrypted" if secret else "NOT encrypted"
    print(f"wrote {key_path} (private key, {state}; keep it on the signing host only)", file=sys.stderr)
    print(f"wrote {pub_path} (public key: give it to the hosts that verify)", file=sys.stderr)
    print(f"{pub.curve} key {pub.fingerprint}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from ..pulling.provenance import sign_models

    key = load_key(args)
    assert key is not None
    raw = sign_models(args.names, key, models_dir=args.models_dir)
    if args.output == "-":
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
    else:
        _write(Path(args.output), raw)
    signer = f"certificate {len(key.certificates)}-long chain" if key.certificates else "key"
    shown = "stdout" if args.output == "-" else args.output
    print(f"signed {len(args.names)} model(s) with {signer} {key.public_key.fingerprint}: {shown}", file=sys.stderr)
    return 0


def _write(path: Path, data: bytes) -> None:
    try:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
