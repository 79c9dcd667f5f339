"""Sizes and rates as people write them (``4G``, ``4GiB``, ``700M``, ``50M``, ``400Mbit``). Pure.

One grammar for both: a number, then an optional prefix (``k``, ``M``, ``G``, ``T``: powers of
1000, as disk makers and FAT32's 4 GB limit count; ``Ki``, ``Mi``, ``Gi``, ``Ti``: powers of 1024),
then an optional unit: ``B`` (bytes). A rate may also be written in bits (``bit``, ``bps``,
``bit/s``: divided by 8) or as ``B/s``. Letters in any case; ``b`` alone means bytes.
"""

from __future__ import annotations

import re

__all__ = ["parse_rate", "parse_size"]

_QUANTITY = re.compile(
    r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?))?\s*(b|bytes?|b/s|bytes?/s|bit|bits|bps|bit/s|bits/s)?\s*", re.IGNORECASE
)
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}


def _quantity(text: str) -> tuple[float, str] | None:
    """(bytes, unit as written, lower case) or None when *text* does not follow the grammar."""
    m = _QUANTITY.fullmatch(text)
    if not m:
        return None
    value = float(m.group(1))
    if m.group(2):
        value *= (1024 if m.group(3) else 1000) ** _POWERS[m.group(2).lower()]
    unit = (m.group(4) or "").lower()
    if unit.startswith("bit") or unit == "bps":
        value /= 8
    return value, unit


def parse_size(text: str | int) -> int:
    """Bytes from ``4G`` (4 * 10**9, fits FAT32), ``4GiB`` (4 * 2**30), ``700M``, ``65536``.

    Raises:
        ValueError: not a size (a rate's units such as ``bit`` or ``/s`` included).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    found = _quantity(str(text))
    if found is None or found[1].startswith("bit") or found[1] == "bps" or found[1].endswith("/s"):
        raise ValueError(f"not a size: {text!r} (examples: 4G, 4GiB, 700M, 65536)")
    return int(found[0])


def parse_rate(text: str | float) -> float:
    """Bytes per second from ``50M`` (50 MB/s), ``10MiB``, ``800Mbit`` (100 MB/s), ``1.5G``, or a number.

    Raises:
        ValueError: not a rate, or not positive.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        found = _quantity(str(text))
        if found is None:
            raise ValueError(f"not a rate: {text!r} (examples: 50M, 10MiB, 800Mbit)")
        value = found[0]
    if value <= 0:
        raise ValueError(f"a rate must be positive: {text!r}")
    return value
