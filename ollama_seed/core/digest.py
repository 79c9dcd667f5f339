"""Content digests: ``sha256:<64 lowercase hex>``, the only algorithm Ollama stores."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import InvalidName

__all__ = ["Digest"]

_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-f]{64})")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A sha256 content digest.

    ``str(d)`` is the wire form ``sha256:<hex>``; :attr:`filename` is Ollama's blob
    file name ``sha256-<hex>``.
    """

    hex: str

    def __post_init__(self) -> None:
        if len(self.hex) != 64 or any(c not in "0123456789abcdef" for c in self.hex):
            raise InvalidName(f"not a sha256 digest: {self.hex!r} (want 64 lowercase hex characters)")

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> Digest:
        """The digest of *data*."""
        return cls(hashlib.sha256(data).hexdigest())

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<hex>`` (or the file form ``sha256-<hex>``).

        Raises:
            InvalidName: if *text* is not a lowercase sha256 digest.
        """
        m = _DIGEST_RE.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            shown = text if isinstance(text, str) and len(text) < 100 else repr(text)[:100]
            raise InvalidName(f"not a sha256 digest: {shown!r} (want 'sha256:' and 64 lowercase hex characters)")
        return cls(m.group(1))

    @classmethod
    def from_filename(cls, name: str) -> Digest | None:
        """The digest a blob file name stands for, or None if the name is not ``sha256-<hex>``."""
        m = _DIGEST_RE.fullmatch(name)
        if m is None or name[6] != "-":
            return None
        return cls(m.group(1))

    @property
    def filename(self) -> str:
        """Ollama's blob file name: ``sha256-<hex>``."""
        return f"sha256-{self.hex}"

    @property
    def short(self) -> str:
        """The 12 hex characters Ollama shows in ``pulling <short>``."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"sha256:{self.hex}"
