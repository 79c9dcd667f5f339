"""A GGUF header reader: the metadata and tensor table ``ollama create`` derives a model's config from.

Only the header is read (magic, version, counts, metadata, tensor infos), through a bounded buffer from
a seekable binary file the caller opened; tensor data is never read. The file may be hostile or
truncated: every count and length is checked against what is left of the file before anything is
allocated, arrays nest at most :data:`MAX_NESTING` deep, and every refusal is a :class:`GGUFError` that
says what is wrong and where.

Strings are kept as Go keeps them (bytes that need not be UTF-8): decoded with ``surrogateescape``.
Arrays longer than :data:`KEEP_ARRAY_ITEMS` (token lists, merges) are skipped over and kept as their
type and length only, as Ollama's own decoder does for the model it reads at create time.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import BinaryIO, TypeAlias

from .sniff import describe_non_gguf, sniff

__all__ = [
    "GGUFArray",
    "GGUFError",
    "GGUFInfo",
    "GGUFValue",
    "KEEP_ARRAY_ITEMS",
    "MAX_NESTING",
    "TYPE_ARRAY",
    "TYPE_BOOL",
    "TYPE_STRING",
    "TYPE_UINT32",
    "read_gguf",
]


class GGUFError(ValueError):
    """A file that is not a GGUF we can read: wrong magic, unsupported version, truncated, or hostile."""


TYPE_UINT8, TYPE_INT8, TYPE_UINT16, TYPE_INT16, TYPE_UINT32, TYPE_INT32, TYPE_FLOAT32 = range(7)
TYPE_BOOL, TYPE_STRING, TYPE_ARRAY, TYPE_UINT64, TYPE_INT64, TYPE_FLOAT64 = range(7, 13)
_FIXED: dict[int, tuple[str, int]] = {
    TYPE_UINT8: ("B", 1),
    TYPE_INT8: ("b", 1),
    TYPE_UINT16: ("H", 2),
    TYPE_INT16: ("h", 2),
    TYPE_UINT32: ("I", 4),
    TYPE_INT32: ("i", 4),
    TYPE_FLOAT32: ("f", 4),
    TYPE_BOOL: ("?", 1),
    TYPE_UINT64: ("Q", 8),
    TYPE_INT64: ("q", 8),
    TYPE_FLOAT64: ("d", 8),
}
_TYPE_NAMES = {
    TYPE_UINT8: "uint8",
    TYPE_INT8: "int8",
    TYPE_UINT16: "uint16",
    TYPE_INT16: "int16",
    TYPE_UINT32: "uint32",
    TYPE_INT32: "int32",
    TYPE_FLOAT32: "float32",
    TYPE_BOOL: "bool",
    TYPE_STRING: "string",
    TYPE_ARRAY: "array",
    TYPE_UINT64: "uint64",
    TYPE_INT64: "int64",
    TYPE_FLOAT64: "float64",
}

# ggml tensor types: (elements per block, bytes per block), to check that tensor data fits in the file
_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
}

MAX_KEY_BYTES = 65_535  # the GGUF spec's limit on key length
MAX_STRING_BYTES = 16 << 20  # a metadata string (chat templates are tens of KiB)
MAX_KV_COUNT = 1 << 20
MAX_TENSOR_COUNT = 1 << 22
MAX_DIMS = 4  # GGML_MAX_DIMS; Ollama refuses more too
MAX_NESTING = 3  # arrays of arrays of arrays
KEEP_ARRAY_ITEMS = 1024
_BUFFER = 1 << 20
# Compatibility tensors: a GGUF holding one is stored as-is by Ollama v0.30+, not rewritten
_COMPAT_PREFIXES = ("a.", "mm.", "mtp.", "s.", "v.")


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """A metadata array: its item type and length; the items unless there are too many to keep."""

    item_type: int
    count: int
    items: tuple[GGUFValue, ...] | None


GGUFValue: TypeAlias = "int | float | bool | str | GGUFArray"


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What a GGUF's header says. ``types`` holds each key's GGUF value type (Ollama reads some keys
    only when stored with one exact type, e.g. ``general.file_type`` as uint32)."""

    version: int
    size: int
    metadata: Mapping[str, GGUFValue] = field(repr=False)
    types: Mapping[str, int] = field(repr=False)
    tensor_count: int
    parameter_count: int
    """Sum over all tensors of the product of their dimensions (Ollama's count, modulo 2**64)."""
    has_compat_tensors: bool
    """A tensor named ``a.*``, ``mm.*``, ``mtp.*``, ``s.*`` or ``v.*`` (Ollama v0.30+ keeps such a GGUF)."""
    data_offset: int

    def get(self, key: str, gguf_type: int) -> GGUFValue | None:
        """The value of *key* if it is stored with type *gguf_type*, else None (Ollama's rule)."""
        return self.metadata.get(key) if self.types.get(key) == gguf_type else None

    def string(self, key: str) -> str | None:
        value = self.get(key, TYPE_STRING)
        return value if isinstance(value, str) else None

    def uint32(self, key: str) -> int | None:
        value = self.get(key, TYPE_UINT32)
        return value if isinstance(value, int) else None

    def boolean(self, key: str) -> bool | None:
        value = self.get(key, TYPE_BOOL)
        return value if isinstance(value, bool) else None

    @property
    def architecture(self) -> str:
        """``general.architecture``, or ``"unknown"`` as Ollama says when it is missing or not a string."""
        arch = self.string("general.architecture")
        return "unknown" if arch is None else arch

    @property
    def file_type(self) -> int | None:
        """``general.file_type`` when stored as uint32 and > 0, else None (Ollama then says ``unknown``)."""
        value = self.uint32("general.file_type")
        return value if value else None

    @property
    def chat_template(self) -> str | None:
        """``tokenizer.chat_template`` if it is a non-empty string (what template auto-detection reads)."""
        return self.string("tokenizer.chat_template") or None


class _Reader:
    """Sequential reads through a 1 MiB window; nothing past the file's end is ever asked for."""

    def __init__(self, f: BinaryIO, size: int, name: str) -> None:
        self.f, self.size, self.name = f, size, name
        self.pos = 0
        self.buf = b""
        self.buf_start = 0

    def fail(self, what: str) -> GGUFError:
        return GGUFError(f"{self.name}: {what}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                f"truncated or corrupt GGUF: {what} at byte {self.pos} needs {n} bytes, but the file "
                f"has {self.size}; the file is incomplete (re-download or re-convert it)"
            )

    def read(self, n: int, what: str) -> bytes:
        self.need(n, what)
        offset = self.pos - self.buf_start
        if offset + n > len(self.buf):
            if n > _BUFFER:
                self.f.seek(self.pos)
                data = self.f.read(n)
                if len(data) != n:
                    raise self.fail(f"the file shrank while being read ({what} at byte {self.pos})")
                self.pos += n
                return data
            self.f.seek(self.pos)
            self.buf = self.f.read(_BUFFER)
            self.buf_start, offset = self.pos, 0
            if len(self.buf) < n:
                raise self.fail(f"the file shrank while being read ({what} at byte {self.pos})")
        self.pos += n
        return self.buf[offset : offset + n]

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def skip_strings(self, count: int, what: str) -> None:
        """Step over *count* strings without keeping them (token lists: hundreds of thousands)."""
        length = struct.Struct("<Q").unpack_from
        for i in range(count):
            offset = self.pos - self.buf_start
            if offset >= 0 and offset + 8 <= len(self.buf):
                (n,) = length(self.buf, offset)
                self.pos += 8
            else:
                n = self.u64(f"the length of {what}[{i}]")
            if n > self.size - self.pos:
                raise self.fail(
                    f"corrupt GGUF: {what}[{i}] at byte {self.pos - 8} claims {n} bytes, past the end of "
                    f"the file ({self.size} bytes)"
                )
            self.pos += n

    def unpack(self, fmt: str, size: int, what: str) -> int | float | bool:
        value: int | float | bool = struct.unpack("<" + fmt, self.read(size, what))[0]
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("I", 4, what))

    def u64(self, what: str) -> int:
        return int(self.unpack("Q", 8, what))

    def string(self, what: str, limit: int = MAX_STRING_BYTES, keep: bool = True) -> str:
        start = self.pos
        n = self.u64(f"the length of {what}")
        if n > self.size - self.pos:
            raise self.fail(
                f"corrupt GGUF: {what} at byte {start} claims {n} bytes, past the end of the file ({self.size} bytes)"
            )
        if n > limit:
            raise self.fail(f"{what} at byte {start} is {n} bytes long, more than the {limit} this reader accepts")
        if not keep:
            self.skip(n, what)
            return ""
        return self.read(n, what).decode("utf-8", "surrogateescape")


def _min_size(value_type: int) -> int:
    if value_type == TYPE_STRING:
        return 8
    if value_type == TYPE_ARRAY:
        return 12
    return _FIXED[value_type][1]


def _value(r: _Reader, value_type: int, what: str, depth: int, keep: bool) -> GGUFValue:
    if value_type in _FIXED:
        fmt, size = _FIXED[value_type]
        if not keep:
            r.skip(size, what)
            return 0
        return r.unpack(fmt, size, what)
    if value_type == TYPE_STRING:
        return r.string(what, keep=keep)
    if value_type != TYPE_ARRAY:
        raise r.fail(f"corrupt GGUF: {what} has unknown value type {value_type} at byte {r.pos - 4}")
    if depth >= MAX_NESTING:
        raise r.fail(f"{what} nests arrays more than {MAX_NESTING} deep; a GGUF never needs that")
    item_type = r.u32(f"the item type of {what}")
    if item_type not in _FIXED and item_type not in (TYPE_STRING, TYPE_ARRAY):
        raise r.fail(f"corrupt GGUF: {what} is an array of unknown type {item_type}")
    count = r.u64(f"the length of {what}")
    if count * _min_size(item_type) > r.size - r.pos:
        raise r.fail(
            f"corrupt GGUF: {what} claims {count} items of type {_TYPE_NAMES[item_type]}, more than "
            f"the {r.size - r.pos} bytes left in the file can hold"
        )
    if keep and count <= KEEP_ARRAY_ITEMS:
        items = tuple(_value(r, item_type, f"{what}[{i}]", depth + 1, True) for i in range(count))
        return GGUFArray(item_type, count, items)
    if item_type in _FIXED:
        r.skip(count * _FIXED[item_type][1], what)
    elif item_type == TYPE_STRING:
        r.skip_strings(count, what)
    else:
        for i in range(count):
            _value(r, item_type, f"{what}[{i}]", depth + 1, False)
    return GGUFArray(item_type, count, None)


def _header(r: _Reader) -> int:
    """Magic and version: little-endian GGUF v2 or v3 (big-endian ones Ollama cannot run are refused)."""
    if r.size < 4:
        raise r.fail(f"not a GGUF file: it is only {r.size} bytes long")
    head = r.read(min(r.size, 8), "the magic and version")
    r.pos = 4
    if sniff(head) != "gguf":
        raise r.fail(describe_non_gguf(head))
    version = r.u32("the GGUF version")
    if version == 1:
        raise r.fail("GGUF version 1 (2023) is not supported: re-convert the model with a current llama.cpp")
    if version not in (2, 3):
        raise r.fail(
            f"unsupported GGUF version {version} (this reader knows versions 2 and 3); it may be newer "
            "than this ollama-seed, or not a GGUF file"
        )
    return version


def read_gguf(f: BinaryIO, *, name: str = "GGUF file") -> GGUFInfo:
    """Read the header of the GGUF in the seekable binary file *f* (from its start).

    *name* is how messages refer to the file (its path, say).

    Raises:
        GGUFError: wrong magic (the message names the format if it recognises it: safetensors, PyTorch,
            legacy GGML, ...), unsupported version, truncated header, counts or lengths that cannot fit in
            the file, nesting too deep, a tensor with more than 4 dimensions or data past the end.
    """
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    r = _Reader(f, size, name)
    version = _header(r)
    tensor_count = r.u64("the tensor count")
    kv_count = r.u64("the metadata count")
    if kv_count > MAX_KV_COUNT or kv_count * 13 > size - r.pos:
        raise r.fail(f"corrupt GGUF: it claims {kv_count} metadata entries, more than the file can hold")
    if tensor_count > MAX_TENSOR_COUNT or tensor_count * 24 > size - r.pos:
        raise r.fail(f"corrupt GGUF: it claims {tensor_count} tensors, more than the file can hold")
    metadata: dict[str, GGUFValue] = {}
    types: dict[str, int] = {}
    for i in range(kv_count):
        key = r.string(f"metadata key #{i}", limit=MAX_KEY_BYTES)
        value_type = r.u32(f"the type of metadata {key!r}")
        metadata[key] = _value(r, value_type, f"metadata {key!r}", 0, True)
        types[key] = value_type
    alignment = metadata.get("general.alignment") if types.get("general.alignment") == TYPE_UINT32 else 32
    if not isinstance(alignment, int) or alignment == 0:
        raise r.fail("invalid GGUF alignment: 0 (general.alignment must be above 0)")
    total = 0
    compat = False
    tensors: list[tuple[str, int, int]] = []
    for i in range(tensor_count):
        tname = r.string(f"the name of tensor #{i}", limit=MAX_KEY_BYTES)
        n_dims = r.u32(f"the dimension count of tensor {tname!r}")
        if n_dims > MAX_DIMS:
            raise r.fail(f"tensor {tname!r} dimensions {n_dims} exceeds maximum {MAX_DIMS}")
        elements = 1
        for d in range(n_dims):
            elements *= r.u64(f"dimension {d} of tensor {tname!r}")
        ggml_type = r.u32(f"the type of tensor {tname!r}")
        offset = r.u64(f"the data offset of tensor {tname!r}")
        total += elements
        compat = compat or tname.startswith(_COMPAT_PREFIXES)
        if ggml_type in _BLOCKS:
            per_block, block_bytes = _BLOCKS[ggml_type]
            tensors.append((tname, offset, -(-elements // per_block) * block_bytes))
    data_offset = -(-r.pos // alignment) * alignment
    for tname, offset, nbytes in tensors:
        if data_offset + offset + nbytes > size:
            raise r.fail(
                f"truncated GGUF: tensor {tname!r} offset+size ({data_offset + offset + nbytes}) exceeds "
                f"file size ({size}); the file is incomplete (re-download or re-convert it)"
            )
    return GGUFInfo(
        version=version,
        size=size,
        metadata=MappingProxyType(metadata),
        types=MappingProxyType(types),
        tensor_count=tensor_count,
        parameter_count=total % (1 << 64),
        has_compat_tensors=compat,
        data_offset=data_offset,
    )
