"""Tar headers of bundles, decoded with hostile input in mind. Pure, no I/O.

Decoding accepts what GNU tar, bsdtar and Python's tarfile write for regular files and
directories: ustar/v7/GNU headers, pax extended headers (``path``, ``size``) and GNU long
names. Extended headers are bounded in size, so a header cannot make us hold much memory.
Links, devices, FIFOs, sparse files and anything else are refused by the caller, which gets
their type here. Bundles are written with :func:`ollama_seed.core.ociimage.tar_header`, the
encoder image layers use (ustar, pax records where needed), which every tar reads.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass

from ...core.errors import BundleError
from ...core.manifest import MAX_BLOB_SIZE
from ...core.ociimage import BLOCK, END_OF_ARCHIVE, padding

__all__ = ["BLOCK", "END_OF_ARCHIVE", "TarHeader", "padding", "parse_header", "parse_pax"]

MAX_PAX = 64 * 1024
MAX_LONGNAME = 4096

FILE, DIR, PAX, GLOBAL_PAX, LONGNAME = "file", "dir", "pax", "global-pax", "longname"
_KINDS = {b"0": FILE, b"\x00": FILE, b"5": DIR, b"x": PAX, b"g": GLOBAL_PAX, b"L": LONGNAME}
_TYPE_NAMES = {
    b"1": "a hard link",
    b"2": "a symbolic link",
    b"3": "a character device",
    b"4": "a block device",
    b"6": "a FIFO",
    b"7": "a contiguous file",
    b"K": "a GNU long link",
    b"S": "a GNU sparse file",
    b"M": "a multi-volume continuation",
    b"V": "a volume label",
    b"D": "a GNU dump directory",
}


@dataclass(frozen=True, slots=True)
class TarHeader:
    """One decoded 512-byte header. *kind* is ``file``, ``dir``, ``pax``, ``global-pax``,
    ``longname``, or a description of a refused type (``a symbolic link``, ...)."""

    name: str
    size: int
    kind: str
    mode: int = 0o644

    @property
    def refused(self) -> bool:
        return self.kind not in (FILE, DIR, PAX, GLOBAL_PAX, LONGNAME)


def parse_header(block: bytes) -> TarHeader | None:
    """Decode one header block; None for an all-zero block (end of archive).

    Raises:
        BundleError: a bad checksum, a negative or absurd size, or an undecodable name.
    """
    if len(block) != BLOCK:
        raise BundleError("the bundle ends inside a tar header: it is truncated")
    if block == bytes(BLOCK):
        return None
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
    except (tarfile.HeaderError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"not a valid tar header ({exc}); this is not a bundle, or it is damaged") from None
    typeflag = block[156:157]
    kind = _KINDS.get(typeflag) or _TYPE_NAMES.get(typeflag) or f"an unknown member type {typeflag!r}"
    if kind == FILE and info.name.endswith("/"):
        kind = DIR  # old tars mark directories with a trailing slash only
    size = info.size
    if not 0 <= size <= MAX_BLOB_SIZE:
        raise BundleError(f"tar member {info.name[:200]!r} claims {size} bytes; refusing it")
    if kind in (PAX, GLOBAL_PAX) and size > MAX_PAX:
        raise BundleError(f"a pax extended header of {size} bytes (at most {MAX_PAX} allowed); refusing the bundle")
    if kind == LONGNAME and size > MAX_LONGNAME:
        raise BundleError(f"a GNU long name of {size} bytes (at most {MAX_LONGNAME} allowed); refusing the bundle")
    return TarHeader(info.name, size, kind, info.mode)


def parse_pax(data: bytes) -> dict[str, str]:
    """Records of a pax extended header (``"<len> <key>=<value>\\n"`` each).

    Raises:
        BundleError: a malformed record.
    """
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:] == bytes(len(data) - pos):
            break  # trailing NUL padding
        space = data.find(b" ", pos, pos + 20)
        if space < 0 or not data[pos:space].isdigit():
            raise BundleError("a malformed pax extended header; refusing the bundle")
        length = int(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= space - pos or pos + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise BundleError("a malformed pax extended header; refusing the bundle")
        key, _, value = record[:-1].partition(b"=")
        try:
            out[key.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError("a pax extended header that is not UTF-8; refusing the bundle") from None
        pos += length
    return out


def pax_size(records: dict[str, str], fallback: int) -> int:
    """The ``size`` record of a pax header, else *fallback*.

    Raises:
        BundleError: a size record that is not a whole number in range.
    """
    text = records.get("size")
    if text is None:
        return fallback
    if not text.isdigit() or int(text) > MAX_BLOB_SIZE:
        raise BundleError(f"a pax size record of {text[:40]!r}; refusing the bundle")
    return int(text)
