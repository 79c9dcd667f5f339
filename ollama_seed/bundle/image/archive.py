"""``image verify --oci-archive FILE`` and ``image extract --oci-archive FILE``: an image in a tar of an OCI layout.

What ``image build --oci-archive`` writes, and ``skopeo copy ... oci-archive:FILE[:TAG]``. The
archive is read where it lies, never unpacked or copied: one pass over its tar headers (seeking
past each member's data) finds where every member is, then ``index.json``, the manifests and
configs are read from their places and each layer is streamed from its offset into the same
checks a layout's layers get (digest, size, diff_id, members; :mod:`.members`).

Refused while the headers are read, before anything is used: links, devices and other special
members; a name that is absolute or holds ``..``; two members with the same name (which one
would count?); a member that claims more bytes than the file holds (a lying size); more than
:data:`MAX_MEMBERS` members; a compressed archive (decompress it first: layers are read by offset).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...core.digest import Digest
from ...core.errors import BundleError
from ...core.manifest import MAX_MANIFEST_BYTES
from ...core.ocidoc import Descriptor
from ...core.sigrecord import StoredSignature
from ...core.trustpolicy import Subject
from ...store import oscalls
from ...store.fsutil import open_regular
from ..format.oci import parse_layout
from ..format.tar import BLOCK, FILE, GLOBAL_PAX, LONGNAME, PAX, padding, parse_header, parse_pax, pax_size
from .members import LayerFile
from .source import checked_small, pick_ref

__all__ = ["MAX_MEMBERS", "ArchiveSource", "scan_members"]

MAX_MEMBERS = 100_000
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2", b"\xfd7zXZ": "xz"}


def _pread(fd: int, n: int, at: int) -> bytes:
    data = oscalls.host.pread(fd, n, at)
    if len(data) != n:
        raise BundleError(f"the archive ends inside a member (at byte {at + len(data)}): it is truncated")
    return data


def _name(raw: str) -> str:
    name = raw
    while name.startswith("./"):
        name = name[2:]
    parts = name.rstrip("/").split("/")
    if name.startswith("/") or ".." in parts or "\\" in name or "\x00" in name:
        raise BundleError(f"refusing archive member {raw[:200]!r}: an absolute path or '..' has no place in an image")
    return name.rstrip("/")


def scan_members(fd: int, size: int, label: str) -> dict[str, tuple[int, int]]:
    """``name -> (offset, size)`` of every regular file of the tar open on *fd* (*size* bytes long).

    Raises:
        BundleError: a hostile or damaged archive (see the module's text).
    """
    head = oscalls.host.pread(fd, 6, 0)
    kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
    if kind is not None:
        raise BundleError(f"{label} is a {kind}-compressed file; decompress it first (an OCI archive is a plain tar)")
    members: dict[str, tuple[int, int]] = {}
    pos, pax, long_name, count = 0, {}, None, 0
    while pos + BLOCK <= size:
        try:
            header = parse_header(_pread(fd, BLOCK, pos))
        except BundleError:
            raise BundleError(
                f"{label}: no valid tar header at byte {pos}; it is not an OCI archive (a tar of an image "
                "layout), or it is damaged"
            ) from None
        pos += BLOCK
        if header is None:
            return members
        count += 1
        if count > MAX_MEMBERS:
            raise BundleError(f"{label} holds more than {MAX_MEMBERS} members; it is not an image archive")
        if header.kind in (PAX, GLOBAL_PAX, LONGNAME):
            data = _pread(fd, header.size, pos)
            pos += header.size + padding(header.size)
            if header.kind == PAX:
                pax = parse_pax(data)
            elif header.kind == LONGNAME:
                long_name = data.rstrip(b"\x00").decode("utf-8", "replace")
            continue
        raw_name = pax.get("path") or long_name or header.name
        length = pax_size(pax, header.size)
        pax, long_name = {}, None
        if header.refused:
            raise BundleError(f"refusing archive member {raw_name[:200]!r}: it is {header.kind}")
        name = _name(raw_name)
        if pos + length > size:
            raise BundleError(
                f"archive member {name[:200]!r} claims {length} bytes but {label} ends {pos + length - size} "
                "bytes before that: it is truncated, or the size lies"
            )
        if header.kind == FILE:
            if name in members:
                raise BundleError(f"{label} holds two members named {name[:200]!r}; refusing an ambiguous archive")
            members[name] = (pos, length)
        pos += length + padding(length)
    raise BundleError(f"{label} ends without the end of its tar archive: it is truncated")


class ArchiveSource:
    """An OCI layout in a tar file; *tag* picks the ref (default: the only one, else ``latest``)."""

    def __init__(self, path: Path, tag: str | None) -> None:
        self.path = path
        try:
            found = open_regular(path)  # a FIFO is refused, not waited on
        except OSError as exc:
            raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
        if found is None:
            raise BundleError(
                f"{path} is not a regular file; --oci-archive reads a tar file (not a pipe: its index comes last)"
            )
        self.fd = found
        try:
            st = os.fstat(self.fd)
            self.members = scan_members(self.fd, st.st_size, str(path))
            if "oci-layout" not in self.members:
                raise BundleError(f"{path} is not an OCI image archive (no oci-layout member)")
            parse_layout(self._member("oci-layout", 4096))
            self.entry, self.entries, tag = pick_ref(self._member("index.json", MAX_MANIFEST_BYTES), tag, path)
        except BaseException:
            os.close(self.fd)
            raise
        self.label = f"{path}:{tag}"
        self.trust_name: Subject = f"oci-archive:{path.resolve()}:{tag}"

    def _member(self, name: str, limit: int) -> bytes:
        if name not in self.members:
            raise BundleError(f"{self.path} has no {name} member; it is not an OCI image archive")
        at, length = self.members[name]
        if length > limit:
            raise BundleError(f"{self.path}: {name} is {length} bytes, more than the {limit} allowed")
        return _pread(self.fd, length, at)

    def _blob(self, digest: Digest) -> tuple[int, int] | None:
        return self.members.get(f"blobs/sha256/{digest.hex}")

    async def resolve(self) -> tuple[Descriptor, bytes]:
        from ...core.ocidoc import parse_descriptor

        desc = parse_descriptor(self.entry, f"{self.path} index.json entry")
        return desc, await self.small(desc)

    async def small(self, desc: Descriptor) -> bytes:
        found = self._blob(desc.digest)
        if found is None:
            raise BundleError(f"{self.label}: blob {desc.digest} is not in the archive; it is incomplete")
        if found[1] != desc.size or desc.size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{self.label}: blob {desc.digest} is {found[1]} bytes, not the {desc.size} named")
        return checked_small(_pread(self.fd, desc.size, found[0]), desc, self.label)

    async def layer(self, desc: Descriptor) -> LayerFile:
        """Where the layer lies in the archive (its digest is checked as it is read)."""
        found = self._blob(desc.digest)
        if found is None:
            raise BundleError(f"{self.label}: layer {desc.digest} is not in the archive; it is incomplete")
        if found[1] != desc.size:
            raise BundleError(
                f"{self.label}: layer {desc.digest} is {found[1]} bytes in the archive, but the manifest says "
                f"{desc.size}: the image is damaged or was tampered with"
            )
        return LayerFile(self.path, lambda: None, False, found[0])

    async def signatures(self, subject: Descriptor) -> list[StoredSignature]:
        """The cosign signatures of *subject* the archive's ``index.json`` lists (see :mod:`.trusted`)."""
        from .trusted import checked_blob, layout_signatures

        async def read(digest: Digest, limit: int) -> bytes | None:
            found = self._blob(digest)
            if found is None or found[1] > limit:
                return None
            return checked_blob(_pread(self.fd, found[1], found[0]), digest, self.label)

        return await layout_signatures(self.entries, subject.digest, read)

    async def aclose(self, *, done: bool = True) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
