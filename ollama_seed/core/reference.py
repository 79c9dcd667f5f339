"""Model names, parsed and validated as Ollama does (``types/model/name.go``).

``gpt-oss:20b`` is ``registry.ollama.ai/library/gpt-oss:20b``; ``user/model`` is
``registry.ollama.ai/user/model:latest``; ``localhost:5000/ns/model:tag`` keeps its port in
the host. A trailing ``@sha256:<hex>`` pins the manifest digest (an ollama_seed extension:
the registry must answer with exactly those bytes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import Digest
from .errors import InvalidName

__all__ = ["DEFAULT_HOST", "DEFAULT_NAMESPACE", "DEFAULT_TAG", "ModelName", "windows_path_problem"]

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_RULES: dict[str, tuple[re.Pattern[str], int, str]] = {
    "host": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*"), 350, "letters, digits, '_', '-', '.', ':'"),
    "namespace": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*"), 80, "letters, digits, '_', '-'"),
    "model": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), 80, "letters, digits, '_', '-', '.'"),
    "tag": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), 80, "letters, digits, '_', '-', '.'"),
}


_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))]
)


def windows_path_problem(name: ModelName) -> str | None:
    """Why *name*'s manifest path cannot exist on Windows (None if it can), as a message that says
    what to do. Ollama has no escaped spelling for these either: its Windows build fails on them
    (ollama/ollama#4088), and it skips a manifest directory it cannot parse back into a name.
    """
    if ":" in name.host:
        return (
            f"{name.display}: a registry host with a port ({name.host}) cannot be a folder name on Windows "
            "(':' is not allowed), and Ollama on Windows cannot store or load such a model either; "
            "serve the registry under a host name without a port (a reverse proxy on 443), or import the "
            "model on Linux or macOS"
        )
    for kind, part in zip(("host", "namespace", "model", "tag"), name.path_parts, strict=True):
        if part.split(".", 1)[0].upper() in _WINDOWS_RESERVED:
            return (
                f"{name.display}: the {kind} {part!r} is a reserved device name on Windows and cannot be a "
                "file or folder name there; use another name"
            )
        if part.endswith("."):
            return (
                f"{name.display}: the {kind} {part!r} ends with '.', which Windows drops from file names; "
                "use a name that does not"
            )
    return None


def _check(kind: str, value: str, whole: str) -> None:
    pattern, limit, allowed = _RULES[kind]
    if value == "":
        raise InvalidName(f"invalid model name {whole!r}: the {kind} is empty")
    if len(value) > limit:
        raise InvalidName(f"invalid model name {whole!r}: the {kind} is longer than {limit} characters")
    if not pattern.fullmatch(value):
        raise InvalidName(
            f"invalid model name {whole!r}: the {kind} {value!r} may only hold {allowed} "
            "and must start with a letter, digit or '_'"
        )


@dataclass(frozen=True, slots=True)
class ModelName:
    """A fully qualified model name: host, namespace, model, tag, and an optional pinned digest."""

    host: str = DEFAULT_HOST
    namespace: str = DEFAULT_NAMESPACE
    model: str = ""
    tag: str = DEFAULT_TAG
    scheme: str = "https"
    digest: Digest | None = None

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse a name as ``ollama pull`` does, filling Ollama's defaults.

        Raises:
            InvalidName: naming the part that is wrong and why.
        """
        if not isinstance(text, str):
            raise InvalidName(f"a model name must be a string, not {type(text).__name__}")
        whole = text
        if text.strip() != text or text == "":
            raise InvalidName(f"invalid model name {whole!r}: empty, or surrounded by white space")
        digest: Digest | None = None
        if "@" in text:
            text, _, pin = text.partition("@")
            try:
                digest = Digest.parse(pin)
            except InvalidName as exc:
                raise InvalidName(f"invalid model name {whole!r}: the pinned digest {exc}") from None
        scheme = "https"
        if "://" in text:
            scheme, _, text = text.partition("://")
            if scheme not in ("http", "https"):
                raise InvalidName(f"invalid model name {whole!r}: unknown scheme {scheme!r}")
        tag = DEFAULT_TAG
        if text.rfind(":") > text.rfind("/"):
            text, _, tag = text.rpartition(":")
            if tag == "":
                raise InvalidName(f"invalid model name {whole!r}: the tag after ':' is empty")
        host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
        rest, sep, model = text.rpartition("/")
        if sep:
            if rest == "":
                raise InvalidName(f"invalid model name {whole!r}: the namespace before '/' is empty")
            hrest, hsep, namespace = rest.rpartition("/")
            if hsep:
                if hrest == "":
                    raise InvalidName(f"invalid model name {whole!r}: the host before '/' is empty")
                host = hrest
        else:
            model = text
        name = cls(host=host, namespace=namespace, model=model, tag=tag, scheme=scheme, digest=digest)
        for kind in ("host", "namespace", "model", "tag"):
            _check(kind, getattr(name, kind), whole)
        return name

    @property
    def repository(self) -> str:
        """``namespace/model``, the repository part of registry URLs."""
        return f"{self.namespace}/{self.model}"

    @property
    def path_parts(self) -> tuple[str, str, str, str]:
        """The four directory levels under ``manifests/``."""
        return (self.host, self.namespace, self.model, self.tag)

    def base_url(self, *, insecure: bool = False) -> str:
        """``https://host`` (``http://`` when *insecure*, as Ollama's ``--insecure``)."""
        scheme = "http" if insecure else self.scheme
        return f"{scheme}://{self.host}"

    @property
    def display(self) -> str:
        """Ollama's shortest display form (what ``/api/tags`` lists)."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            short = f"{self.model}:{self.tag}"
        elif self.host == DEFAULT_HOST:
            short = f"{self.namespace}/{self.model}:{self.tag}"
        else:
            short = f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        return short

    def unpinned(self) -> ModelName:
        """The same name without a pinned digest."""
        return replace(self, digest=None)

    def __str__(self) -> str:
        text = f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text
