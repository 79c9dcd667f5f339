"""An image's model layers read as one member stream for the importer, each layer checked as it goes by.

For every model layer, in order: its bytes (a file: a layout's blob, or a registry's layer
downloaded into scratch space) are hashed against the layer digest and counted against its size,
decompressed (gzip, zstd) and hashed against the config's diff_id, and walked as tar members by
:class:`~.sources.tar.TarMembers` with names under the image's models path mapped onto a
models directory (``models/blobs/sha256-<hex>`` -> ``blobs/sha256-<hex>``). Anything else is
refused: a member outside the models path, a link, a device, ``..``. When a layer's tar ends, the
rest of its bytes must be zeros, and both digests must match before the next layer is read; the
importer holds every blob in staging until the last layer has passed (``hold``), so a bad layer
anywhere leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import zstandard

from ...core.digest import Digest
from ...core.errors import BundleError
from ...core.ocidoc import Descriptor
from ...store import oscalls
from ...store.fsutil import open_regular
from ..format.names import MemberKind, MemberRef, classify_member
from ..sources.base import Member
from ..sources.streams import CHUNK, TruncatedBundle
from ..sources.tar import TarMembers

__all__ = ["ImageLayer", "LayerFile", "LayerMembers", "image_classifier"]

MAX_TRAILER = 1 << 20  # zeros allowed after a tar's end-of-archive marker (record padding)


def image_classifier(root: str) -> Callable[..., MemberRef]:
    """Classify a layer member's name: *root* (``models``) and its parents are directories to skip;
    below it, the names a models directory may hold; anything else is refused."""
    parts = root.split("/")
    above = {"/".join(parts[:i]) for i in range(1, len(parts))}

    def classify(raw: str, *, is_dir: bool = False) -> MemberRef:
        name = raw
        while name.startswith("./"):
            name = name[2:]
        bare = name.rstrip("/") if is_dir else name
        if is_dir and bare in ("", ".", root, *above):
            return MemberRef(MemberKind.DIR, ".")
        if not bare.startswith(root + "/"):
            shown = raw if len(raw) <= 200 else raw[:200] + "..."
            raise BundleError(
                f"refusing image layer member {shown!r}: it is outside the models path /{root}; "
                "a model layer holds only the models directory"
            )
        ref = classify_member(bare[len(root) + 1 :], is_dir=is_dir)
        if ref.kind not in (MemberKind.BLOB, MemberKind.MANIFEST, MemberKind.DIR):
            raise BundleError(f"refusing image layer member {raw[:200]!r}: only blobs/ and manifests/ belong there")
        return ref

    return classify


class LayerFile(NamedTuple):
    """Where a layer's bytes are: *path* (from *offset*: a member of an OCI archive), a clean-up to run
    once it is read, and whether its digest was checked already (a registry's, by the pull engine)."""

    path: Path
    release: Callable[[], None]
    checked: bool
    offset: int = 0


def open_layer(file: LayerFile, desc: Descriptor) -> int:
    """A descriptor open on the layer's first byte; it must hold exactly *desc*'s size from there.

    Raises:
        BundleError: unreadable, not a regular file, or a size other than the manifest's.
    """
    try:
        found = open_regular(file.path)  # a FIFO is refused, not waited on
    except OSError as exc:
        raise BundleError(f"cannot read layer {desc.digest} ({file.path}): {exc.strerror or exc}") from None
    if found is None:
        raise BundleError(f"layer {desc.digest} ({file.path}) is not a regular file")
    fd = found
    st = os.fstat(fd)
    if (st.st_size != desc.size) if file.offset == 0 else (st.st_size < file.offset + desc.size):
        os.close(fd)
        raise BundleError(
            f"layer {desc.digest} is {st.st_size - file.offset} bytes, but the manifest says {desc.size}: "
            "the image is damaged or was tampered with"
        )
    if file.offset:
        os.lseek(fd, file.offset, os.SEEK_SET)
    return fd


@dataclass(frozen=True, slots=True)
class ImageLayer:
    """A model layer to read: its descriptor, its diff_id, and whether its digest was already checked."""

    desc: Descriptor
    diff_id: Digest
    checked: bool = False


class _Counted:
    """A layer's bytes: exactly its size, hashed unless the digest was checked already."""

    def __init__(self, file: LayerFile, desc: Descriptor, checked: bool) -> None:
        self.desc = desc
        self.fd = open_layer(file, desc)
        self.hasher = None if checked else hashlib.sha256()
        self.left = desc.size

    def readinto(self, view: memoryview) -> int:
        if not self.left:
            return 0
        n = oscalls.host.readinto(self.fd, view[: self.left] if len(view) > self.left else view)
        if not n:
            raise TruncatedBundle(f"layer {self.desc.digest} ended {self.left} bytes early")
        if self.hasher is not None:
            self.hasher.update(view[:n])
        self.left -= n
        return n

    def read(self, size: int = -1) -> bytes:  # for the decompressors' stream readers
        buf = bytearray(CHUNK if size < 0 else min(size, CHUNK))
        n = self.readinto(memoryview(buf))
        return bytes(buf[:n])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Unpacked:
    """What comes out of a layer's decompressor, hashed for its diff_id."""

    def __init__(self, raw: _Counted, compression: str) -> None:
        self.raw = raw
        self.hasher = hashlib.sha256() if compression != "none" or raw.hasher is None else None
        self.gzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if compression == "gzip" else None
        self.zstd = (
            zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[arg-type]
            if compression == "zstd"
            else None
        )
        self.pending = b""

    def readinto(self, view: memoryview) -> int:
        if self.zstd is not None:
            try:
                n = self.zstd.readinto(view)
            except zstandard.ZstdError as exc:
                raise BundleError(f"layer {self.raw.desc.digest} is not valid zstd ({exc})") from None
        elif self.gzip is not None:
            n = self._gunzip(view)
        else:
            n = self.raw.readinto(view)
        if self.hasher is not None and n:
            self.hasher.update(view[:n])
        return n

    def _gunzip(self, view: memoryview) -> int:
        assert self.gzip is not None
        while not self.pending:
            if self.gzip.eof:
                return 0
            data = self.gzip.unconsumed_tail or self.raw.read(CHUNK)
            if not data:
                raise TruncatedBundle(f"layer {self.raw.desc.digest}: the gzip stream ends early")
            try:
                self.pending = self.gzip.decompress(data, CHUNK)
            except zlib.error as exc:
                raise BundleError(f"layer {self.raw.desc.digest} is not valid gzip ({exc})") from None
        n = min(len(view), len(self.pending))
        view[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


class LayerMembers:
    """The members of *layers* in order, as one stream; *fetch* gives where a layer's bytes are."""

    def __init__(
        self,
        layers: Sequence[ImageLayer],
        fetch: Callable[[ImageLayer], LayerFile],
        root: str,
    ) -> None:
        self.layers = list(layers)
        self.fetch = fetch
        self.classify = image_classifier(root)
        self.i = -1
        self.raw: _Counted | None = None
        self.unpacked: _Unpacked | None = None
        self.tar: TarMembers | None = None
        self.release: Callable[[], None] | None = None
        self.modes: list[tuple[str, int, bool]] = []  # (path, mode, is_dir) of every member, for image verify

    def next(self) -> Member | None:
        while True:
            if self.tar is None:
                self.i += 1
                if self.i >= len(self.layers):
                    return None
                self._open(self.layers[self.i])
            assert self.tar is not None
            member = self.tar.next()
            if member is not None:
                self.modes.append((member.ref.path, member.mode, member.ref.kind is MemberKind.DIR))
                return member
            self._finish_layer()

    def readinto(self, view: memoryview) -> int:
        assert self.tar is not None
        return self.tar.readinto(view)

    def skip(self) -> None:
        assert self.tar is not None
        self.tar.skip()

    def _open(self, layer: ImageLayer) -> None:
        file = self.fetch(layer)
        self.release = file.release
        self.raw = _Counted(file, layer.desc, file.checked or layer.checked)
        self.unpacked = _Unpacked(self.raw, layer.desc.compression)
        self.tar = TarMembers(self.unpacked, classify=self.classify)

    def _finish_layer(self) -> None:
        """The tar ended: the rest must be zeros, the layer must end here, and both digests must match."""
        assert self.raw is not None and self.unpacked is not None
        layer = self.layers[self.i]
        buf = memoryview(bytearray(64 * 1024))
        extra = 0
        while n := self.unpacked.readinto(buf):
            extra += n
            if extra > MAX_TRAILER or any(buf[:n]):
                raise BundleError(f"layer {layer.desc.digest} holds data after the end of its tar archive")
        raw_left = self.raw.left
        if raw_left:
            raise BundleError(
                f"layer {layer.desc.digest} holds {raw_left} bytes after its compressed stream; refusing it"
            )
        actual = self.raw.hasher.hexdigest() if self.raw.hasher is not None else layer.desc.digest.hex
        if actual != layer.desc.digest.hex:
            raise BundleError(
                f"layer {layer.desc.digest} hashes to sha256:{actual}: the layer's bytes are not the ones "
                "the manifest names (damaged or tampered with); nothing was installed"
            )
        diff = self.unpacked.hasher.hexdigest() if self.unpacked.hasher is not None else actual
        if diff != layer.diff_id.hex:
            raise BundleError(
                f"layer {layer.desc.digest}: its uncompressed tar hashes to sha256:{diff}, but the image "
                f"config's diff_id says {layer.diff_id}; containerd and umoci refuse such an image"
            )
        self.close()

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()
            self.raw = None
        self.unpacked = self.tar = None
        if self.release is not None:
            with contextlib.suppress(OSError):
                self.release()
            self.release = None
