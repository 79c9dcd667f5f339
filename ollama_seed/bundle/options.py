"""What export's options mean: the compression (``--compress``) and the size of split parts (``--split-size``).

Pure: the CLI and the Python API parse the same spellings here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.units import parse_size

__all__ = ["DEFAULT_GZIP_LEVEL", "DEFAULT_ZSTD_LEVEL", "MIN_SPLIT", "Compression", "parse_compress", "parse_split_size"]


@dataclass(frozen=True, slots=True)
class Compression:
    """``auto``, ``none``, ``zstd`` at a level (1..22) or ``gzip`` at a level (1..9)."""

    kind: str
    level: int = 0

    def __str__(self) -> str:
        return f"{self.kind}:{self.level}" if self.kind in ("zstd", "gzip") else self.kind


DEFAULT_ZSTD_LEVEL = 1
DEFAULT_GZIP_LEVEL = 1  # weights barely shrink at any level; 1 is several times faster than gzip's own 6
_LEVELS = {"zstd": (DEFAULT_ZSTD_LEVEL, 22), "gzip": (DEFAULT_GZIP_LEVEL, 9)}


def parse_compress(text: str | Compression) -> Compression:
    """``auto``, ``none``, ``zstd`` (level 1), ``zstd:LEVEL`` (1..22), ``gzip`` (level 1) or ``gzip:LEVEL`` (1..9).

    Raises:
        ValueError: anything else.
    """
    if isinstance(text, Compression):
        return text
    value = text.strip().lower()
    if value in ("auto", "none"):
        return Compression(value)
    kind, _, level = value.partition(":")
    if kind in _LEVELS:
        default, top = _LEVELS[kind]
        if not level:
            return Compression(kind, default)
        if level.isdigit() and 1 <= int(level) <= top:
            return Compression(kind, int(level))
    raise ValueError(f"not a compression: {text!r} (want auto, none, zstd[:1-22] or gzip[:1-9])")


MIN_SPLIT = 4096


def parse_split_size(text: str | int) -> int:
    """The most bytes one part of a split bundle holds: ``4G`` (4 * 10**9, fits FAT32), ``4GiB``, ``700M``.

    Raises:
        ValueError: not a size (:func:`~ollama_seed.core.units.parse_size`), or less than 4096 bytes.
    """
    value = parse_size(text)
    if value < MIN_SPLIT:
        raise ValueError(f"a part size must be at least {MIN_SPLIT} bytes, not {text!r}")
    return value
