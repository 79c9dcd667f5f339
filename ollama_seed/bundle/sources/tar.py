"""Walk the members of a tar stream one by one, validating each header; never extract anything.

:class:`TarMembers` reads headers itself (with :mod:`..format.tar`), folds pax and GNU
long-name headers into the member that follows, refuses every type but regular files and
directories, and validates each name with :func:`..format.names.classify_member`. The
caller reads a member's data with :meth:`readinto` (or :meth:`skip`) before asking for the next.
"""

from __future__ import annotations

from collections.abc import Callable

from ...core.errors import BundleError
from ..format.names import MemberRef, classify_member
from ..format.tar import BLOCK, DIR, GLOBAL_PAX, LONGNAME, PAX, padding, parse_header, parse_pax, pax_size
from .base import Member
from .streams import ByteSource, TruncatedBundle, read_exact

__all__ = ["TarMembers"]

MAX_MEMBERS = 1_000_000


class TarMembers:
    """Members of a tar stream, in order."""

    def __init__(self, src: ByteSource, classify: Callable[..., MemberRef] = classify_member) -> None:
        self.src = src
        self.classify = classify  # an image layer's members sit under its models path (bundle.image.read)
        self.left = 0  # data bytes of the current member not yet read
        self.pad = 0
        self.count = 0
        self.current: Member | None = None

    def _data(self, size: int) -> bytes:
        data = read_exact(self.src, size)
        read_exact(self.src, padding(size))
        return data

    def next(self) -> Member | None:
        """The next member, or None at the end-of-archive marker.

        Raises:
            BundleError: a refused type or name, a damaged header.
            TruncatedBundle: the stream ended without an end-of-archive marker.
        """
        if self.left or self.pad:
            self.skip()
        pax: dict[str, str] = {}
        longname: str | None = None
        while True:
            block = read_exact(self.src, BLOCK, allow_short=True)
            if not block:
                raise TruncatedBundle("the bundle ends without tar's end-of-archive marker")
            if self.count == 0 and not pax and longname is None:
                _first_block(block)
            header = parse_header(block)
            if header is None:
                return None
            self.count += 1
            if self.count > MAX_MEMBERS:
                raise BundleError(f"more than {MAX_MEMBERS} tar members; refusing the bundle")
            if header.kind == PAX:
                pax.update(parse_pax(self._data(header.size)))
                continue
            if header.kind == GLOBAL_PAX:
                self._data(header.size)  # bounded by MAX_PAX; nothing in it concerns us
                continue
            if header.kind == LONGNAME:
                raw = self._data(header.size).rstrip(b"\x00")
                try:
                    longname = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise BundleError("a GNU long name that is not UTF-8; refusing the bundle") from None
                continue
            name = pax.get("path") or longname or header.name
            if header.refused:
                raise BundleError(
                    f"refusing bundle member {name[:200]!r}: it is {header.kind}; "
                    "a bundle holds only regular files and directories"
                )
            size = pax_size(pax, header.size)
            is_dir = header.kind == DIR
            ref = self.classify(name, is_dir=is_dir)
            if is_dir and size:
                raise BundleError(f"refusing bundle member {name[:200]!r}: a directory with {size} data bytes")
            self.left, self.pad = size, padding(size)
            self.current = Member(ref, size, header.mode)
            return self.current

    def readinto(self, view: memoryview) -> int:
        """Data of the current member into *view*; 0 once it is all read (its padding is then consumed).

        Raises:
            TruncatedBundle: the stream ended inside the data.
        """
        if not self.left:
            if self.pad:
                read_exact(self.src, self.pad)
                self.pad = 0
            return 0
        n = self.src.readinto(view[: self.left] if len(view) > self.left else view)
        if not n:
            raise TruncatedBundle("the bundle ends inside a member's data")
        self.left -= n
        return n

    def skip(self) -> None:
        """Discard the rest of the current member's data."""
        buf = memoryview(bytearray(64 * 1024))
        while self.readinto(buf):
            pass


def _first_block(block: bytes) -> None:
    """Refuse, saying what it is, a source that is plainly something else (a text file, a GGUF,
    safetensors, a few bytes): "truncated" or "damaged" would send the user looking for a better
    copy of the wrong file. Anything else goes on to the header checks and their own words."""
    what = _looks_like(block)
    if what is not None:
        raise BundleError(
            f"this is not a bundle: it is {what}. import reads ollama-seed bundles (tar, zstd or gzip, as "
            "'ollama-seed export' writes them), tars of a models directory, ollamazip archives, OCI layouts "
            "and models directories"
        )


def _looks_like(block: bytes) -> str | None:
    if block[257:262] == b"ustar":
        return None  # a tar header, if a damaged one
    if block.startswith(b"GGUF"):
        return (
            "a GGUF model file; make a model of it with a Modelfile: "
            "echo 'FROM ./FILE.gguf' > Modelfile && ollama-seed create NAME -f Modelfile"
        )
    if len(block) >= 9 and block[8:9] == b"{" and int.from_bytes(block[:8], "little") < 100_000_000:
        return (
            "safetensors weights; convert them to GGUF (llama.cpp's convert_hf_to_gguf.py), then 'ollama-seed create'"
        )
    text = block.rstrip(b"\x00")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        decoded = ""
    if decoded and all(c.isprintable() or c in "\n\r\t" for c in decoded):
        return f"a text file ({' '.join(decoded.split())[:60]!r})"
    if len(block) < BLOCK:
        return f"{len(block)} bytes, fewer than one tar header"
    return None
