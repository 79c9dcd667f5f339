"""Container image references: ``[host[:port]/]path[:tag][@sha256:<hex>]``, as Docker parses them. Pure.

Unlike a model name (:mod:`core.reference`), an image repository may have one path component
(``busybox``) or many (``ghcr.io/org/team/models``). A reference without a registry host is on
Docker Hub (its API host ``registry-1.docker.io`` is kept as the host), with ``library/`` for one component.
The first component is a host when it holds a ``.`` or a ``:``, or is ``localhost``.

The attributes match the ones the registry client reads from a :class:`ModelName` (``host``,
``repository``, ``tag``, ``scheme``, ``base_url``, ``display``), so the same client serves both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import Digest
from .errors import InvalidName

__all__ = ["DOCKER_HUB", "ImageRef"]

DOCKER_HUB = "registry-1.docker.io"
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?")
MAX_REPOSITORY = 255


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed image reference. *tag* is ``latest`` when neither a tag nor a digest was given."""

    host: str
    repository: str
    tag: str = "latest"
    digest: Digest | None = None
    scheme: str = "https"

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse *text*; ``http://`` in front means a plain-http registry (as ``--insecure``).

        Raises:
            InvalidName: naming what is wrong.
        """
        whole = text
        if not isinstance(text, str) or not text or text.strip() != text:
            raise InvalidName(f"invalid image reference {whole!r}: empty, or surrounded by white space")
        scheme = "https"
        if "://" in text:
            scheme, _, text = text.partition("://")
            if scheme not in ("http", "https"):
                raise InvalidName(f"invalid image reference {whole!r}: unknown scheme {scheme!r}")
        digest = None
        if "@" in text:
            text, _, pin = text.partition("@")
            try:
                digest = Digest.parse(pin)
            except InvalidName as exc:
                raise InvalidName(f"invalid image reference {whole!r}: {exc}") from None
        tag = "latest"
        if text.rfind(":") > text.rfind("/"):
            text, _, tag = text.rpartition(":")
            if not _TAG.fullmatch(tag):
                raise InvalidName(
                    f"invalid image reference {whole!r}: the tag {tag!r} may hold letters, digits, '_', '.', '-' "
                    "(at most 128, not starting with '.' or '-')"
                )
        first, sep, rest = text.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            host, path = first, rest
            if not _HOST.fullmatch(host):
                raise InvalidName(f"invalid image reference {whole!r}: {host!r} is not a registry host")
            if host in ("docker.io", "index.docker.io"):
                host = DOCKER_HUB
        else:
            host, path = DOCKER_HUB, text
        if host == DOCKER_HUB and "/" not in path:
            path = f"library/{path}"
        parts = path.split("/")
        if not path or len(path) > MAX_REPOSITORY or not all(_COMPONENT.fullmatch(p) for p in parts):
            raise InvalidName(
                f"invalid image reference {whole!r}: the repository {path!r} must be lowercase letters, digits "
                "and separators ('.', '_', '-') between '/'"
            )
        return cls(host, path, tag, digest, scheme)

    def base_url(self, *, insecure: bool = False) -> str:
        scheme = "http" if insecure else self.scheme
        return f"{scheme}://{self.host}"

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return str(self.digest) if self.digest is not None else self.tag

    @property
    def display(self) -> str:
        text = f"{self.host}/{self.repository}:{self.tag}"
        return f"{text}@{self.digest}" if self.digest is not None else text

    def with_tag(self, tag: str) -> ImageRef:
        return replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        return self.display
