"""Hand-made GGUF bytes for tests: the layout Ollama's Go test writer produces (no padding when there
are no tensors), and deliberately broken variants the llama.cpp writer refuses to make."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import cast

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", I64: "q", F64: "d"}


def gstr(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return struct.pack("<Q", len(raw)) + raw


def value(kind: int, v: object) -> bytes:
    if kind == STR:
        assert isinstance(v, (str, bytes))
        return gstr(v)
    if kind == ARR:
        item_kind, items = cast("tuple[int, list[object]]", v)
        return struct.pack("<IQ", item_kind, len(items)) + b"".join(value(item_kind, i) for i in items)
    return struct.pack("<" + _FMT[kind], v)


def kv(key: str | bytes, kind: int, v: object) -> bytes:
    return gstr(key) + struct.pack("<I", kind) + value(kind, v)


def tensor_info(name: str, dims: Sequence[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def gguf(
    kvs: Sequence[bytes] = (),
    tensors: Sequence[bytes] = (),
    *,
    version: int = 3,
    kv_count: int | None = None,
    tensor_count: int | None = None,
    magic: bytes = b"GGUF",
) -> bytes:
    """Header + metadata + tensor infos, with counts that may lie."""
    return (
        magic
        + struct.pack(
            "<IQQ",
            version,
            len(tensors) if tensor_count is None else tensor_count,
            len(kvs) if kv_count is None else kv_count,
        )
        + b"".join(kvs)
        + b"".join(tensors)
    )


def arch(name: str = "test") -> bytes:
    return kv("general.architecture", STR, name)
