"""A trust policy: which signatures each model needs, by name pattern, from local configuration only. Pure.

In the config file (``[[trust]]`` tables, first match wins)::

    [[trust]]
    match = "registry.lan:5000/models/*"   # a glob over the full name (host/namespace/model:tag)
    keys = ["/etc/ollama-seed/site.pub"]   # public keys whose signatures are accepted
    cas = ["/etc/ollama-seed/site-ca.pem"] # or CA certificates a signing certificate must chain to
    mode = "enforce"                       # enforce (refuse), warn (log and go on) or off

    [[trust]]
    match = "*"                            # everything else
    mode = "off"

``match`` is matched (``fnmatch``, case-sensitive; ``*`` also crosses ``/``) against the full name
``registry.ollama.ai/library/gemma3:270m`` and against the short form ``gemma3:270m``; a container
image (``image verify``/``image extract``) by ``host/repository:tag``, or, read from disk, by
``oci:/abs/dir:tag`` or ``oci-archive:/abs/file.tar``. A model no
rule matches needs no signature: without any rule nothing changes for anyone. Keys and CAs never
come from a bundle or a registry, only from files this policy (or a ``--trust`` option) names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .imageref import ImageRef
from .reference import ModelName

__all__ = ["MODES", "Mode", "Subject", "TrustPolicy", "TrustRule", "parse_trust_rules"]

Mode = Literal["enforce", "warn", "off"]
Subject = ModelName | ImageRef | str  # a model, an image in a registry, or an image on disk (``oci:DIR:TAG``)
MODES: tuple[Mode, ...] = ("enforce", "warn", "off")
_KEYS = {"match", "keys", "cas", "mode"}


def _forms(name: Subject) -> tuple[str, ...]:
    """The names a rule's pattern is matched against: a model's full and short names, an image's
    ``host/repository:tag``, or the text given (``oci:/abs/dir:tag`` for an image on disk)."""
    if isinstance(name, ModelName):
        return str(name.unpinned()), name.unpinned().display
    if isinstance(name, ImageRef):
        return (f"{name.host}/{name.repository}:{name.tag}",)
    return (name,)


@dataclass(frozen=True, slots=True)
class TrustRule:
    """One rule: the models it covers, whom to trust for them, and what to do without a trusted signature."""

    match: str = "*"
    keys: tuple[str, ...] = ()
    cas: tuple[str, ...] = ()
    mode: Mode = "enforce"

    def matches(self, name: Subject) -> bool:
        return any(fnmatch.fnmatchcase(form, self.match) for form in _forms(name))

    @property
    def has_trust(self) -> bool:
        return bool(self.keys or self.cas)


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Rules in order; the first whose pattern matches a model's name applies to it."""

    rules: tuple[TrustRule, ...] = ()

    @classmethod
    def trusting(cls, keys: Sequence[str] = (), cas: Sequence[str] = (), mode: Mode = "enforce") -> TrustPolicy:
        """One rule for every model: these keys and CAs (what ``--trust``/``--trust-ca`` mean)."""
        return cls((TrustRule("*", tuple(keys), tuple(cas), mode),))

    def __bool__(self) -> bool:
        return any(rule.mode != "off" for rule in self.rules)

    def rule_for(self, name: Subject) -> TrustRule | None:
        """The rule that applies to *name*, or None (no signature needed)."""
        return next((rule for rule in self.rules if rule.matches(name)), None)

    def required(self) -> TrustPolicy:
        """The same rules with every mode ``enforce`` (``--require-signature``)."""
        return TrustPolicy(tuple(replace(rule, mode="enforce") for rule in self.rules))

    def require_for(self, name: ModelName) -> TrustRule:
        """The rule that makes a signature mandatory for *name*.

        Raises:
            ConfigError: no rule with keys or CAs matches *name*.
        """
        rule = self.rule_for(name)
        if rule is None or not rule.has_trust:
            raise ConfigError(
                f"a signature is required for {name.display}, but no trust is configured for it: pass "
                "--trust PUBLIC_KEY (or --trust-ca CA_CERT), or add a [[trust]] rule that matches it to the config file"
            )
        return rule


def parse_trust_rules(value: Any, where: str, base: Path | None = None) -> TrustPolicy:
    """The ``trust`` entries of a config document (a list of tables).

    Relative key and CA paths are taken from *base* (the config file's folder).

    Raises:
        ConfigError: naming the entry and the key that is wrong.
    """
    if not isinstance(value, list):
        raise ConfigError(f"{where}: trust must be a list of tables: [[trust]]")
    rules = []
    for i, entry in enumerate(value):
        what = f"{where}: trust[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{what} must be a table with match, keys, cas and mode")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise ConfigError(f"{what}.{unknown[0]} is not a known key (known: {', '.join(sorted(_KEYS))})")
        match = entry.get("match", "*")
        if not isinstance(match, str) or not match:
            raise ConfigError(f'{what}.match must be a name pattern such as "registry.lan:5000/*"')
        mode = entry.get("mode", "enforce")
        if mode not in MODES:
            raise ConfigError(f"{what}.mode must be one of {', '.join(MODES)}, not {mode!r}")
        paths: dict[str, tuple[str, ...]] = {}
        for key in ("keys", "cas"):
            items = entry.get(key, [])
            if not isinstance(items, list) or not all(isinstance(p, str) and p for p in items):
                raise ConfigError(f"{what}.{key} must be a list of file paths")
            paths[key] = tuple(_path(p, base) for p in items)
        if mode != "off" and not (paths["keys"] or paths["cas"]):
            raise ConfigError(f"{what} has mode {mode!r} but no keys or cas to trust; name at least one")
        rules.append(TrustRule(match, paths["keys"], paths["cas"], mode))
    return TrustPolicy(tuple(rules))


def _path(text: str, base: Path | None) -> str:
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return str(path)
