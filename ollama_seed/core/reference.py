"""Model names, parsed and validated as Ollama does (``types/model/name.go``).

``gpt-oss:20b`` is ``registry.ollama.ai/library/gpt-oss:20b``; ``user/model`` is
``registry.ollama.ai/user/model:latest``; ``localhost:5000/ns/model:tag`` keeps its port in
the host. As Ollama's pull handler (``internal/modelref``), surrounding white space is trimmed,
``:local`` is dropped and ``:cloud`` becomes Ollama's cloud tag. A trailing ``@sha256:<hex>`` pins
the manifest digest (an ollama_seed extension: the registry must answer with exactly those bytes;
Ollama refuses ``@`` in a name). Names read back from ``manifests/`` paths use
:meth:`ModelName.from_parts`, which takes the four parts as written.
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


def _pull_name(text: str, whole: str) -> str:
    """*text* as Ollama's pull handler passes it on (``internal/modelref``: ``ParseRef`` and
    ``NormalizePullName``): ``:local`` dropped, ``:cloud`` turned into the tag Ollama pulls."""
    base, source = _source_suffix(text)
    if source is None:
        return text
    if _source_suffix(base)[1] is not None:
        raise InvalidName(f"invalid model name {whole!r}: use either :local or :cloud, not both")
    if source == "local":
        return base
    return f"{base}-cloud" if base.rfind(":") > base.rfind("/") else f"{base}:cloud"


def _source_suffix(text: str) -> tuple[str, str | None]:
    """``(base, "local" | "cloud" | None)``: Ollama's ``parseSourceSuffix``. ``:local``, ``:cloud``
    (any case) and a tag ending in ``-cloud`` name the source."""
    i = text.rfind(":")
    if i < 0:
        return text, None
    raw = text[i + 1 :].strip()
    suffix = raw.lower()
    if suffix in ("local", "cloud"):
        return text[:i], suffix
    if "/" not in raw and suffix.endswith("-cloud"):
        return text[: i + 1] + raw[: -len("-cloud")], "cloud"
    return text, None


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
    def of(cls, value: str | ModelName) -> ModelName:
        """*value* itself when it is already a name, else :meth:`parse` of it (as httpx's ``URL(url)``).

        Raises:
            InvalidName: as :meth:`parse`.
        """
        return value if isinstance(value, ModelName) else cls.parse(value)

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse a name as ``ollama pull`` does, filling Ollama's defaults.

        What Ollama's pull handler does to a name before its parser sees it is done here too
        (``internal/modelref``): surrounding white space is trimmed, a ``:local`` suffix is
        dropped and a ``:cloud`` suffix becomes the tag Ollama pulls (``gpt-oss:20b:cloud`` is
        ``gpt-oss:20b-cloud``, ``qwen3:cloud`` is ``qwen3:cloud``). A ``scheme://`` before the
        host is kept apart from it (only ``http`` and ``https`` can be pulled from). A trailing
        ``@sha256:<hex>`` pins the manifest: an ollama_seed extension.

        Raises:
            InvalidName: naming the part that is wrong and why.
        """
        if not isinstance(text, str):
            raise InvalidName(f"a model name must be a string, not {type(text).__name__}")
        whole = text
        text = text.strip()
        if text == "":
            raise InvalidName(f"invalid model name {whole!r}: the name is empty")
        digest: Digest | None = None
        if "@" in text:
            text, _, pin = text.partition("@")
            try:
                digest = Digest.parse(pin)
            except InvalidName as exc:
                raise InvalidName(f"invalid model name {whole!r}: the pinned digest {exc}") from None
        text = _pull_name(text, whole)
        tag = DEFAULT_TAG
        if text.rfind(":") > text.rfind("/"):
            text, _, tag = text.rpartition(":")
            if tag == "":
                raise InvalidName(f"invalid model name {whole!r}: the tag after ':' is empty")
        host, namespace, scheme = DEFAULT_HOST, DEFAULT_NAMESPACE, "https"
        rest, sep, model = text.rpartition("/")
        if sep:
            if rest == "":
                raise InvalidName(f"invalid model name {whole!r}: the namespace before '/' is empty")
            hrest, hsep, namespace = rest.rpartition("/")
            if hsep:
                if hrest == "":
                    raise InvalidName(f"invalid model name {whole!r}: the host before '/' is empty")
                written, found, host = hrest.partition("://")
                if not found:
                    host = written
                elif written:  # Ollama keeps any scheme here; base_url() says which can be used
                    scheme = written
        else:
            model = text
        name = cls(host=host, namespace=namespace, model=model, tag=tag, scheme=scheme, digest=digest)
        for kind in ("host", "namespace", "model", "tag"):
            _check(kind, getattr(name, kind), whole)
        return name

    @classmethod
    def from_parts(cls, host: str, namespace: str, model: str, tag: str) -> ModelName:
        """The name stored at ``manifests/<host>/<namespace>/<model>/<tag>``, taken as written (Ollama's
        ``ParseNameFromFilepath``): no default, no ``:local``/``:cloud`` rewrite, every part checked.

        Raises:
            InvalidName: a part that Ollama's rules refuse.
        """
        name = cls(host=host, namespace=namespace, model=model, tag=tag)
        whole = f"{host}/{namespace}/{model}:{tag}"
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
        """``https://host`` (``http://`` when *insecure*, as Ollama's ``--insecure``).

        Raises:
            InvalidName: the name was written with a scheme other than http or https.
        """
        if self.scheme not in ("http", "https"):
            raise InvalidName(
                f"{self.scheme}://{self.host}/{self.repository}:{self.tag}: a registry is reached over "
                f"http:// or https://, not {self.scheme}://; write the name without a scheme (https, or "
                "http with --insecure)"
            )
        scheme = "http" if insecure else self.scheme
        return f"{scheme}://{self.host}"

    @property
    def display(self) -> str:
        """Ollama's shortest display form (what ``/api/tags`` lists); host and namespace compare
        without regard to case, as Ollama's ``DisplayShortest``."""
        default_host = self.host.lower() == DEFAULT_HOST
        if default_host and self.namespace.lower() == DEFAULT_NAMESPACE:
            short = f"{self.model}:{self.tag}"
        elif default_host:
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
