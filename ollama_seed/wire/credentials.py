"""Registry credentials, found the way Docker tools find them.

For a registry host (``registry.example.com:5000``), first match wins:

1. ``OLLAMA_SEED_REGISTRY_USER_<HOST>`` and ``OLLAMA_SEED_REGISTRY_PASSWORD_<HOST>``, where
   ``<HOST>`` is the host in upper case with every other character than A-Z and 0-9 turned into
   ``_`` (``REGISTRY_EXAMPLE_COM_5000``);
2. ``OLLAMA_SEED_REGISTRY_USER`` and ``OLLAMA_SEED_REGISTRY_PASSWORD``, for the hosts listed
   (comma-separated) in ``OLLAMA_SEED_REGISTRY_HOSTS``, or without that list for every registry
   that asks except the public ones (``registry.ollama.ai``, ``ollama.com``, ``hf.co``,
   ``huggingface.co``), so a site password is not offered to them;
3. the ``auths`` section of ``$DOCKER_CONFIG/config.json`` (default ``~/.docker/config.json``),
   as ``docker login`` writes it: ``"auth"`` (base64 of ``user:password``) or ``"username"`` and
   ``"password"``. Keys may be ``host``, ``https://host`` or ``https://host/v1/``.

Credential helpers (``credsStore``, ``credHelpers``) and identity tokens are not run or used;
a warning is logged once. Credentials are only sent after a registry answers 401, and the
registry client sends them only over https (or to an ``--insecure`` registry).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DockerCredentials", "docker_config_path", "env_key"]

log = logging.getLogger("ollama_seed")

USER_ENV = "OLLAMA_SEED_REGISTRY_USER"
PASSWORD_ENV = "OLLAMA_SEED_REGISTRY_PASSWORD"
HOSTS_ENV = "OLLAMA_SEED_REGISTRY_HOSTS"
PUBLIC_HOSTS = frozenset({"registry.ollama.ai", "ollama.com", "hf.co", "huggingface.co"})
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def env_key(host: str) -> str:
    """The suffix of the per-host variables: ``registry.example.com:5000`` -> ``REGISTRY_EXAMPLE_COM_5000``."""
    return re.sub(r"[^A-Z0-9]", "_", host.upper())


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if environ is None else environ
    base = env.get("DOCKER_CONFIG", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".docker") / "config.json"


def _host_of(key: str) -> str:
    text = key.strip()
    if "://" not in text:
        text = "//" + text
    netloc = urllib.parse.urlsplit(text).netloc.lower()
    return "index.docker.io" if netloc in _DOCKER_HUB else netloc


class DockerCredentials:
    """``host -> (user, password) | None`` from the environment and Docker's config file.

    The file is read once, on the first lookup that gets to it. A file that cannot be read or
    parsed is ignored with a warning.

    Args:
        environ: the environment to read (default ``os.environ``).
        config_path: Docker's ``config.json`` (default :func:`docker_config_path`).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, config_path: str | os.PathLike[str] | None = None):
        self.environ = os.environ if environ is None else environ
        self.config_path = Path(config_path) if config_path is not None else docker_config_path(self.environ)
        self._auths: dict[str, tuple[str, str] | None] | None = None
        self._helpers: dict[str, str] = {}
        self._store: str | None = None
        self._warned: set[str] = set()

    def __call__(self, host: str) -> tuple[str, str] | None:
        env = self.environ
        key = env_key(host)
        user, password = env.get(f"{USER_ENV}_{key}"), env.get(f"{PASSWORD_ENV}_{key}")
        if user is not None and password is not None:
            return user, password
        user, password = env.get(USER_ENV), env.get(PASSWORD_ENV)
        if user is not None and password is not None:
            allowed = {h.strip().lower() for h in env.get(HOSTS_ENV, "").split(",") if h.strip()}
            if host.lower() in allowed or (not allowed and host.lower() not in PUBLIC_HOSTS):
                return user, password
        return self._from_config(host)

    def _from_config(self, host: str) -> tuple[str, str] | None:
        if self._auths is None:
            self._auths = self._load()
        wanted = _host_of(host)
        if wanted in self._auths:
            return self._auths[wanted]
        helper = self._helpers.get(wanted) or self._store
        if helper:
            self._warn(
                wanted,
                f"{self.config_path} sends {wanted} to the credential helper "
                f"'docker-credential-{helper}', which ollama-seed does not run; set "
                f"{USER_ENV}_{env_key(host)} and {PASSWORD_ENV}_{env_key(host)} instead",
            )
        return None

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    def _load(self) -> dict[str, tuple[str, str] | None]:
        path = self.config_path
        try:
            doc: Any = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self._warn("config", f"ignoring {path}: {exc}")
            return {}
        if not isinstance(doc, dict):
            self._warn("config", f"ignoring {path}: not a JSON object")
            return {}
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            self._store = store
        helpers = doc.get("credHelpers")
        if isinstance(helpers, dict):
            self._helpers = {_host_of(k): str(v) for k, v in helpers.items()}
        found: dict[str, tuple[str, str] | None] = {}
        auths = doc.get("auths")
        for key, entry in auths.items() if isinstance(auths, dict) else []:
            if isinstance(entry, dict):
                found.setdefault(_host_of(str(key)), self._entry(str(key), entry))
        return {k: v for k, v in found.items() if v is not None}

    def _entry(self, key: str, entry: dict[str, Any]) -> tuple[str, str] | None:
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                user, sep, password = base64.b64decode(auth, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                sep = ""
            if sep:
                return user, password
            self._warn(key, f"{self.config_path}: the 'auth' of {key} is not base64 of user:password; ignored")
            return None
        name, secret = entry.get("username"), entry.get("password")
        if isinstance(name, str) and isinstance(secret, str):
            return name, secret
        if entry.get("identitytoken"):
            self._warn(key, f"{self.config_path}: {key} has only an identity token, which ollama-seed cannot use")
        return None
