"""The bytes of Go's ``json.NewEncoder(w).Encode(v)``, for the values ``ollama create`` writes.

Every JSON blob Ollama stores (config, params, messages, manifest) comes from that call, and a blob's
name is the sha256 of its bytes, so a byte-exact copy of the encoder is what makes our blobs the same
blobs. Python's ``json.dumps`` is not it: it writes ``10.0``, ``1e-05`` and a literal ``<``.

Values map to Go like this:

- :class:`Struct`: a Go struct; fields in the order given (declaration order), all of them written
  (``omitempty`` is the caller's choice: leave the field out).
- ``dict``: a Go ``map[string]T``; keys sorted by their UTF-8 bytes.
- ``str``: a Go string. Lone surrogates stand for bytes that were not UTF-8 (Python's
  ``surrogateescape``): each becomes ``\\ufffd``, as Go writes each invalid byte. ``bytes`` are a Go
  string of those bytes.
- ``int``: an integer (int64 or uint64 range); ``float``: a float64; :class:`Float32`: a float32.
- ``bool``, ``None`` (null), ``list``/``tuple`` (a slice).

Strings are escaped as the Encoder does with HTML escaping on: ``"`` ``\\`` and the short escapes
``\\b \\f \\n \\r \\t``, other control bytes as ``\\u00xx``, ``< > &`` as ``\\u003c \\u003e \\u0026``,
U+2028/U+2029 as ``\\u2028``/``\\u2029``; everything else literal UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .gofloat import format_json_float, to_float32

__all__ = ["Float32", "GoValue", "Struct", "decode_object", "encode", "go_bytes", "go_text", "marshal"]


@dataclass(frozen=True, slots=True)
class Float32:
    """A Go ``float32``: rounded to float32 on creation, written with float32's shortest digits."""

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", to_float32(float(self.value)))


@dataclass(frozen=True, slots=True, init=False)
class Struct:
    """A Go struct value: its JSON fields in declaration order."""

    fields: tuple[tuple[str, GoValue], ...]

    def __init__(self, fields: Mapping[str, GoValue] | Sequence[tuple[str, GoValue]]) -> None:
        items = tuple(fields.items()) if isinstance(fields, Mapping) else tuple(fields)
        object.__setattr__(self, "fields", items)


GoValue: TypeAlias = (
    "bool | int | float | Float32 | str | bytes | Struct | Mapping[str, GoValue] | Sequence[GoValue] | None"
)

_SHORT = {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\b"): "\\b",
    ord("\f"): "\\f",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}
_ESCAPES: dict[int, str] = {
    **{c: f"\\u{c:04x}" for c in range(0x20)},
    **_SHORT,
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    **dict.fromkeys(range(0xD800, 0xE000), "\\ufffd"),  # lone surrogates: bytes that were not UTF-8
}

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def go_text(data: bytes) -> str:
    """Bytes as a Go string is held here: UTF-8, each invalid byte kept as a lone surrogate."""
    return data.decode("utf-8", "surrogateescape")


def go_bytes(text: str) -> bytes:
    """The bytes of a Go string held as *text*: the inverse of :func:`go_text`.

    A lone surrogate that does not stand for a byte (outside U+DC80-U+DCFF) becomes U+FFFD's bytes.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        fixed = "".join("\ufffd" if 0xD800 <= ord(c) < 0xE000 and not 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)
        return fixed.encode("utf-8", "surrogateescape")


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def _sort_key(key: str) -> bytes:
    return go_bytes(key)


def _chunks(value: GoValue, depth: int) -> Iterator[str]:
    if depth > 200:
        raise ValueError("json: value nested more than 200 levels deep")
    if value is None:
        yield "null"
    elif value is True:
        yield "true"
    elif value is False:
        yield "false"
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValueError(f"json: integer {value} does not fit in a Go int64 or uint64")
        yield str(value)
    elif isinstance(value, float):
        yield format_json_float(value, 64)
    elif isinstance(value, Float32):
        if math.isnan(value.value) or math.isinf(value.value):
            raise ValueError(f"json: unsupported value: {'NaN' if math.isnan(value.value) else value.value}")
        yield format_json_float(value.value, 32)
    elif isinstance(value, str):
        yield _string(value)
    elif isinstance(value, (bytes, bytearray)):
        yield _string(go_text(bytes(value)))
    elif isinstance(value, Struct):
        yield "{"
        for i, (key, item) in enumerate(value.fields):
            yield ("," if i else "") + _string(key) + ":"
            yield from _chunks(item, depth + 1)
        yield "}"
    elif isinstance(value, Mapping):
        bad = next((key for key in value if not isinstance(key, str)), None)
        if bad is not None:
            raise TypeError(f"json: map keys must be strings, not {type(bad).__name__}")
        yield "{"
        for i, key in enumerate(sorted(value, key=_sort_key)):
            yield ("," if i else "") + _string(key) + ":"
            yield from _chunks(value[key], depth + 1)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _chunks(item, depth + 1)
        yield "]"
    else:
        raise TypeError(f"json: cannot encode a {type(value).__name__}")


def marshal(value: GoValue) -> bytes:
    """``json.Marshal(value)``: compact, HTML-escaped, no trailing newline.

    Raises:
        ValueError: NaN or an infinity (Go's ``json: unsupported value: NaN``), an integer out of
            Go's range, or nesting deeper than 200.
        TypeError: a value with no Go counterpart here.
    """
    return go_bytes("".join(_chunks(value, 0)))


def encode(value: GoValue) -> bytes:
    """``json.NewEncoder(w).Encode(value)``: :func:`marshal` plus one ``\\n``."""
    return marshal(value) + b"\n"


def _no_constant(name: str) -> float:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _go_strings(value: object) -> GoValue:
    """Lone surrogates (from ``\\ud800`` escapes) become U+FFFD, as Go's decoder makes them."""
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [_go_strings(v) for v in value]
    if isinstance(value, dict):
        return {str(_go_strings(k)): _go_strings(v) for k, v in value.items()}
    if isinstance(value, float) and math.isinf(value):
        raise ValueError("a number is too large for a float64")
    return value  # type: ignore[return-value]


def decode_object(data: bytes) -> dict[str, GoValue]:
    """``json.Unmarshal(data, &map[string]any{})``: every number a float64, invalid UTF-8 -> U+FFFD.

    Raises:
        ValueError: not JSON, not an object, or a number past float64's range.
    """
    text = re.sub("[\udc80-\udcff]", "\ufffd", data.decode("utf-8", "surrogateescape"))
    value = json.loads(text, parse_int=float, parse_constant=_no_constant)
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", float: "number", bool: "boolean"}.get(type(value), "null")
        raise ValueError(f"a JSON {kind} where an object belongs")
    result = _go_strings(value)
    assert isinstance(result, dict)
    return result
