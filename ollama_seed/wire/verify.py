"""A model's signature checked against your trust: what pull, ensure and verify share.

:class:`TrustResolver` turns the ``trust=`` argument of the public API (a :class:`~.trust.Trust`,
which means "enforce, for every model", or a :class:`~ollama_seed.core.trustpolicy.TrustPolicy`
from the config file) into a mode and a loaded :class:`~.trust.Trust` per model name.
:func:`check_record` checks one signature of a model, whatever its kind:

- ``oms``: an OMS signature must list the model's manifest with its digest, under the model's
  ``namespace/model/tag`` (the host may differ: a mirror serves a model under its own address);
- ``cosign``: a cosign v3 statement whose subject is the manifest digest;
- ``cosign-legacy``: a simple-signing payload naming the manifest digest.
"""

from __future__ import annotations

from ..core.coverage import manifest_resource
from ..core.digest import Digest
from ..core.dsse import INTOTO_PAYLOAD_TYPE, parse_bundle
from ..core.errors import SignatureError
from ..core.intoto import parse_cosign_statement, parse_simple_signing
from ..core.manifest import Manifest
from ..core.reference import ModelName
from ..core.sigrecord import StoredSignature
from ..core.trustpolicy import Mode, Subject, TrustPolicy, TrustRule
from .oms import verify_oms
from .trust import Signer, Trust

__all__ = ["TrustLike", "TrustResolver", "check_cosign", "check_record", "first_trusted"]

TrustLike = Trust | TrustPolicy | None


class TrustResolver:
    """Mode and trust per model for a ``trust=`` argument; keys and CAs are loaded once per rule."""

    def __init__(self, trust: TrustLike) -> None:
        self.trust = trust
        self._loaded: dict[TrustRule, Trust] = {}

    @property
    def active(self) -> bool:
        """Some model may need a signature."""
        return isinstance(self.trust, Trust) or bool(self.trust)

    def for_name(self, name: Subject) -> tuple[Mode, Trust | None]:
        """``("enforce" | "warn" | "off", trust)`` for *name* (a model or an image: see ``core.trustpolicy``).

        Raises:
            SigningKeyError: a key or CA file of the matching rule cannot be used.
        """
        if isinstance(self.trust, Trust):
            return "enforce", self.trust
        rule = self.trust.rule_for(name) if self.trust is not None else None
        if rule is None or rule.mode == "off" or not rule.has_trust:
            return "off", None
        loaded = self._loaded.get(rule)
        if loaded is None:
            loaded = self._loaded[rule] = Trust.load(rule.keys, rule.cas)
        return rule.mode, loaded


def _names_match(signed: ModelName, name: ModelName) -> bool:
    return signed.path_parts[1:] == name.path_parts[1:]


def check_record(record: StoredSignature, trust: Trust, name: ModelName, manifest: Manifest) -> Signer:
    """The signer when *record* is a trusted signature over *name*'s *manifest*.

    Raises:
        SignatureError: not trusted, altered, or about another manifest or model.
    """
    if record.kind == "oms":
        verified = verify_oms(record.bundle, trust)
        for signed_name, digest in verified.signed.manifests.items():
            if digest == manifest.digest and _names_match(signed_name, name):
                return verified.signer
        raise SignatureError(
            f"the signature does not cover {manifest_resource(name)} with the digest {manifest.digest} "
            f"(it covers {', '.join(n.display for n in verified.signed.names()[:5]) or 'no model'})"
        )
    return check_cosign(record, trust, manifest.digest)


def check_cosign(record: StoredSignature, trust: Trust, subject: Digest) -> Signer:
    """The signer when *record* is a trusted cosign signature (v3 bundle or v2 simple signing) over the
    manifest or image index *subject*.

    Raises:
        SignatureError: not trusted, altered, about another digest, or an OMS signature (it lists
            model files, not an image: an image is signed with cosign).
    """
    if record.kind == "oms":
        raise SignatureError(
            "the signature is an OpenSSF model signature, which lists model files, not an image's digest"
        )
    if record.kind == "cosign-legacy":
        signer = trust.verify_raw(record.signature, record.payload, record.certificates)
        signed = parse_simple_signing(record.payload)
        if signed != subject:
            raise SignatureError(f"the signature is for the manifest {signed}, not for {subject}")
        return signer
    bundle = parse_bundle(record.bundle)
    if bundle.payload_type != INTOTO_PAYLOAD_TYPE:
        raise SignatureError(f"the signature's payload is {bundle.payload_type[:80]!r}, not an in-toto statement")
    signer = trust.verify(bundle)
    signed = parse_cosign_statement(bundle.payload)
    if signed != subject:
        raise SignatureError(f"the signature is for the manifest {signed}, not for {subject}")
    return signer


def first_trusted(
    records: list[StoredSignature], trust: Trust, name: ModelName, manifest: Manifest
) -> tuple[StoredSignature | None, Signer | None, list[SignatureError]]:
    """The first record that is a trusted signature of the model and its signer, and why the others are not."""
    problems: list[SignatureError] = []
    for record in records:
        try:
            return record, check_record(record, trust, name, manifest), problems
        except SignatureError as exc:
            problems.append(exc)
    return None, None, problems
