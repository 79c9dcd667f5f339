"""The ollama-seed config file: which models to ensure, and how to reach their registry.

Where it is, first match wins: ``--config PATH``, ``$OLLAMA_SEED_CONFIG``, then
``config.toml`` in platformdirs' user config directory for ``ollama-seed``
(``~/.config/ollama-seed/config.toml`` on Linux). Every key is optional::

    models = ["gpt-oss:20b", "llama3.2:1b"]   # what `ollama-seed ensure` with no names ensures
    models_dir = "/srv/ollama/models"         # default: $OLLAMA_MODELS, else ~/.ollama/models
    connections = 16                          # range requests per blob (1-256)
    max_connections = 64                      # requests across all blobs (1-4096)
    max_rate = "50M"                          # bytes/s as a number, or "50M", "400Mbit"
    stall_timeout = 30                        # seconds without a byte before a request is retried

    [registry]
    insecure = false                          # plain http, as `ollama pull --insecure`
    mirrors = ["http://mirror.lan:5000"]      # tried in order before the model's own registry

    [[trust]]                                 # signatures models need (first match wins; see core/trustpolicy)
    match = "registry.lan:5000/*"             # a glob over host/namespace/model:tag (or the short name)
    keys = ["site.pub"]                       # public keys (paths relative to this file), and/or
    cas = ["site-ca.pem"]                     # CA certificates a signing certificate must chain to
    mode = "enforce"                          # enforce, warn or off

Unknown keys are errors, so a typo does not silently fall back to a default, and a number out of its
range is refused as the flag and the Python keyword are (``core/bounds``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.bounds import check
from ..core.errors import ConfigError, InvalidName
from ..core.trustpolicy import TrustPolicy, parse_trust_rules
from ..core.units import parse_rate
from ..pulling.options import PullOptions

__all__ = ["CONFIG_ENV", "Config", "default_config_path", "load_config", "parse_config"]

CONFIG_ENV = "OLLAMA_SEED_CONFIG"
_PULL_KEYS = ("connections", "max_connections", "max_rate", "stall_timeout")
_TOP_KEYS = {"models", "models_dir", *_PULL_KEYS, "registry", "trust"}
_REGISTRY_KEYS = {"insecure", "mirrors"}


@dataclass(frozen=True, slots=True)
class Config:
    """A validated config file (or the empty default when there is none)."""

    models: tuple[str, ...] = ()
    models_dir: str | None = None
    modelfiles: tuple[tuple[str, str], ...] = ()
    """(name, Modelfile path) of ``models`` entries written ``{ name = "...", modelfile = "..." }``."""
    connections: int | None = None
    max_rate: float | None = None
    insecure: bool = False
    mirrors: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)
    trust: TrustPolicy = field(default_factory=TrustPolicy)
    """The ``[[trust]]`` rules: which signatures models need (empty: none)."""
    max_connections: int | None = None
    stall_timeout: float | None = None

    def pull_options(self) -> PullOptions:
        """The pull options this file sets, and only those (:class:`~..pulling.options.PullOptions`)."""
        out = PullOptions()
        if self.insecure:
            out["insecure"] = True
        if self.mirrors:
            out["mirrors"] = self.mirrors
        if self.connections is not None:
            out["connections"] = self.connections
        if self.max_connections is not None:
            out["max_connections"] = self.max_connections
        if self.max_rate is not None:
            out["max_rate"] = self.max_rate
        if self.stall_timeout is not None:
            out["stall_timeout"] = self.stall_timeout
        return out


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$OLLAMA_SEED_CONFIG``, else ``<user config dir>/ollama-seed/config.toml``."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = _xdg_config_home(env)
    if xdg is not None:
        return xdg / "ollama-seed" / "config.toml"
    import platformdirs  # only when a config is looked for: keeps `import ollama_seed` light

    # appauthor=False: %LOCALAPPDATA%\\ollama-seed on Windows, not ...\\ollama-seed\\ollama-seed
    return Path(platformdirs.user_config_dir("ollama-seed", appauthor=False)) / "config.toml"


def _xdg_config_home(env: Mapping[str, str]) -> Path | None:
    """platformdirs' user config directory on Linux (the XDG base directory spec: an absolute
    ``$XDG_CONFIG_HOME``, else ``$HOME/.config``), without importing it: its Unix module loads
    tempfile, shutil, random, bz2 and lzma (9 ms of every command that reads the config file).
    None elsewhere, and for what platformdirs decides otherwise (Android, a relative ``$HOME``).
    ``tests/startup/test_config.py`` checks that the two agree."""
    if not sys.platform.startswith("linux") or "ANDROID_ROOT" in env or hasattr(sys, "getandroidapilevel"):
        return None
    xdg = env.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg)
    home = env.get("HOME", "")
    return Path(home) / ".config" if os.path.isabs(home) else None


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    return tomllib.loads(text)


def load_config(path: str | os.PathLike[str] | None = None, *, required: bool = False) -> Config:
    """Read and validate a config file.

    Args:
        path: the file; None looks in the default place (see the module docs).
        required: fail when the file does not exist (an explicit ``--config`` must exist);
            otherwise a missing file is an empty config.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key or wrong type; the message names the
            file and the key.
    """
    target = Path(path).expanduser() if path is not None else default_config_path()
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {target} does not exist; create it, or name another file") from None
        return Config(path=None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {target}: {exc}") from None
    try:
        doc = _toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"config file {target} is not valid TOML: {exc}") from None
    return parse_config(doc, target)


def parse_config(doc: Mapping[str, Any], path: Path | None = None) -> Config:
    """Validate a decoded config document.

    Raises:
        ConfigError: naming the key that is wrong and what it should be.
    """
    where = f"config file {path}" if path else "config"

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{where}: {key} {what}")

    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise bad(unknown[0], f"is not a known key (known: {', '.join(sorted(_TOP_KEYS))})")
    entries = doc.get("models", [])
    if not isinstance(entries, list):
        raise bad("models", 'must be a list of model names, e.g. models = ["llama3.2:1b"]')
    from ..core.reference import ModelName

    models: list[str] = []
    modelfiles: list[tuple[str, str]] = []
    for m in entries:
        if isinstance(m, dict):
            if set(m) != {"name", "modelfile"} or not all(isinstance(v, str) and v for v in m.values()):
                raise bad(
                    "models", 'entries that are tables must be { name = "my-model", modelfile = "/path/Modelfile" }'
                )
            file = Path(m["modelfile"]).expanduser()
            if path is not None and not file.is_absolute():
                file = path.parent / file  # relative to the config file, as a user reading it expects
            modelfiles.append((m["name"], str(file)))
            m = m["name"]
        if not isinstance(m, str):
            raise bad("models", 'must be a list of model names, e.g. models = ["llama3.2:1b"]')
        try:
            ModelName.parse(m)
        except InvalidName as exc:
            raise bad("models", f"has a bad entry: {exc}") from None
        if not any(m == name for name, _ in modelfiles):
            models.append(m)
    models_dir = doc.get("models_dir")
    if models_dir is not None and (not isinstance(models_dir, str) or not models_dir.strip()):
        raise bad("models_dir", "must be a non-empty path string")
    numbers = {key: doc[key] for key in ("connections", "max_connections", "stall_timeout") if key in doc}
    for key, value in numbers.items():
        check(key, value, name=f"{where}: {key}")
    max_rate = _rate(doc.get("max_rate"), where, bad)
    registry = doc.get("registry", {})
    if not isinstance(registry, dict):
        raise bad("registry", "must be a table: [registry]")
    unknown = sorted(set(registry) - _REGISTRY_KEYS)
    if unknown:
        raise bad(f"registry.{unknown[0]}", f"is not a known key (known: {', '.join(sorted(_REGISTRY_KEYS))})")
    insecure = registry.get("insecure", False)
    if not isinstance(insecure, bool):
        raise bad("registry.insecure", "must be true or false")
    mirrors = registry.get("mirrors", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise bad("registry.mirrors", 'must be a list of URLs, e.g. mirrors = ["http://mirror.lan:5000"]')
    from ..pulling.session import normalize_mirror

    normalized = []
    for m in mirrors:
        try:
            normalized.append(normalize_mirror(m))
        except InvalidName as exc:
            raise bad("registry.mirrors", f"has a bad entry: {exc}") from None
    trust = parse_trust_rules(doc["trust"], where, path.parent if path else None) if "trust" in doc else TrustPolicy()
    return Config(
        tuple(models),
        models_dir,
        tuple(modelfiles),
        numbers.get("connections"),
        max_rate,
        insecure,
        tuple(normalized),
        path,
        trust,
        numbers.get("max_connections"),
        numbers.get("stall_timeout"),
    )


def _rate(value: Any, where: str, bad: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_rate(value)
        except ValueError as exc:
            raise bad("max_rate", f"is not a rate: {exc}") from None
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad("max_rate", 'must be a number of bytes/s or a string such as "50M"')
    return float(check("max_rate", value, name=f"{where}: max_rate"))
