"""Where a built image goes on disk: an OCI layout directory (``--oci-layout DIR[:TAG]``) or a tar of one.

Both take blobs as streams whose digest is known only at their end:

* a directory writes each blob to a temporary file in ``blobs/sha256/`` and renames it to its
  digest when it is complete (fsynced); ``index.json`` is replaced last and atomically, keeping
  the other tags of an existing layout. A failed build removes what it added (the whole
  directory if it made it);
* an archive writes each blob as a tar member with a placeholder name and rewrites that header
  in place once the digest (and, for a compressed layer, the size) is known, so it needs a file,
  not a pipe. It is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...core.digest import Digest
from ...core.errors import BundleError, StoreError
from ...core.ociimage import ANNOTATION_REF, END_OF_ARCHIVE, INDEX_MEDIA_TYPE, encode_json, padding, tar_header
from ...store import oscalls
from ...store.fsutil import atomic_write, ensure_dir, fsync_dir, raise_os_error
from ..format.oci import encode_layout, parse_layout
from ..sinks import FileSink
from ..sources.files import read_small

__all__ = ["ArchiveTarget", "LayoutTarget", "compressed_bound", "ref_name", "split_layout_arg"]

MAX_INDEX = 4 * 1024 * 1024
USTAR_MAX_SIZE = 0o77777777777  # the largest size a ustar header holds without a pax record


def compressed_bound(size: int) -> int:
    """At most how many bytes gzip or zstd make of *size* bytes (incompressible data grows by under
    0.4 %: zstd's ZSTD_COMPRESSBOUND; gzip's stored blocks add less)."""
    return size + size // 128 + (1 << 20)


def split_layout_arg(text: str, default_tag: str = "latest") -> tuple[Path, str]:
    """``DIR[:TAG]`` -> (DIR, TAG), as skopeo's ``oci:DIR:TAG`` (``C:\\img`` is a Windows path, not a tag)."""
    path, sep, tag = text.rpartition(":")
    if sep and tag and "/" not in tag and "\\" not in tag and path:
        return Path(path), tag
    return Path(text), default_tag


def ref_name(entry: Any) -> str | None:
    """The ref name (``org.opencontainers.image.ref.name``) of an ``index.json`` entry; None for an
    untagged one, or one whose annotations are not a JSON object of strings."""
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(ANNOTATION_REF) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


class LayoutTarget:
    """An OCI layout directory receiving one image (several refs in ``index.json``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.created_root = not root.exists()
        self.added: list[Path] = []
        self.index: dict[str, Any] = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        if root.exists():
            if not root.is_dir() or root.is_symlink():
                raise StoreError(f"{root} exists and is not a directory; give a directory for --oci-layout")
            if (root / "oci-layout").exists():
                parse_layout(read_small(root / "oci-layout", 4096))
                doc = json.loads(read_small(root / "index.json", MAX_INDEX)) if (root / "index.json").exists() else {}
                if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
                    raise BundleError(f"{root}/index.json is not an OCI image index; give a new directory")
                self.index.update(doc)
            elif any(root.iterdir()):
                raise StoreError(f"{root} is neither empty nor an OCI layout; give a new or empty directory")
        ensure_dir(self.blob_dir)
        if not (root / "oci-layout").exists():
            self._write_small(root / "oci-layout", encode_layout())

    def _write_small(self, path: Path, data: bytes) -> None:
        atomic_write(path, data, path.parent)
        if path.name != "index.json":
            self.added.append(path)

    def has(self, digest: Digest, size: int) -> bool:
        path = self.blob_dir / digest.hex
        with contextlib.suppress(OSError):
            return path.is_file() and not path.is_symlink() and path.stat().st_size == size
        return False

    def put(self, chunks: Iterable[memoryview | bytes]) -> tuple[Digest, int]:
        """Write a blob from *chunks*; its digest and size. The digest is computed here as it is written."""
        sink = FileSink(self.blob_dir / f"pending-{secrets.token_hex(8)}")
        hasher = hashlib.sha256()
        try:
            for chunk in chunks:
                hasher.update(chunk)
                sink.write(chunk)
            digest = Digest(hasher.hexdigest())
            final = self.blob_dir / digest.hex
            sink.file.final = final
            if self.has(digest, sink.bytes_written):
                sink.abort()
            else:
                sink.commit()
                self.added.append(final)
        except BaseException:
            sink.abort()
            raise
        return digest, sink.bytes_written

    def put_bytes(self, data: bytes) -> tuple[Digest, int]:
        return self.put([data])

    def tagged(self, ref: str) -> bytes | None:
        """The document *ref* names in the layout as it was (None: no such ref, or its blob is gone)."""
        for m in self.index.get("manifests", []):
            if ref_name(m) == ref:
                path = self.blob_dir / str(m.get("digest", "")).partition(":")[2]
                if path.is_file() and path.parent == self.blob_dir:
                    return read_small(path, MAX_INDEX)
        return None

    def commit(self, refs: dict[str, dict[str, Any]]) -> None:
        """Point each ref name at its descriptor in ``index.json`` (other refs of the layout kept)."""
        kept = [m for m in self.index.get("manifests", []) if ref_name(m) not in refs]
        for ref, desc in refs.items():
            kept.append({**desc, "annotations": {**(desc.get("annotations") or {}), ANNOTATION_REF: ref}})
        self.index["manifests"] = kept
        atomic_write(self.root / "index.json", (json.dumps(self.index, indent=1) + "\n").encode(), self.root)

    def abort(self) -> None:
        for path in reversed(self.added):
            oscalls.host.remove(path)
        if self.created_root:
            for d in (self.blob_dir, self.blob_dir.parent, self.root):
                with contextlib.suppress(OSError):
                    d.rmdir()


class ArchiveTarget:
    """A tar of an OCI layout written to *path* (``--oci-archive``)."""

    PLACEHOLDER = "blobs/sha256/" + "0" * 64

    def __init__(self, path: Path, mtime: int) -> None:
        if path.is_dir():
            raise StoreError(f"{path} is a directory; give a file name for --oci-archive")
        self.path, self.mtime = path, mtime
        self.sink = FileSink(path)
        self.pos = 0
        self.seen: set[Digest] = set()
        self.refs: dict[str, dict[str, Any]] = {}
        for d in ("blobs", "blobs/sha256"):
            self._write(tar_header(d, 0, mtime=mtime, directory=True))
        self._member("oci-layout", encode_layout())

    def _write(self, data: bytes | memoryview) -> None:
        self.sink.write(data)
        self.pos += len(data)

    def _member(self, name: str, data: bytes) -> None:
        self._write(tar_header(name, len(data), mtime=self.mtime))
        self._write(data)
        self._write(bytes(padding(len(data))))

    def has(self, digest: Digest, size: int) -> bool:
        return digest in self.seen

    def put(self, chunks: Iterable[memoryview | bytes], size: int | None, most: int = 0) -> tuple[Digest, int]:
        """A blob of exactly *size* bytes, or (a compressed layer: *size* None) of at most *most* bytes.

        The header is written first with a placeholder name and rewritten in place at the end with
        the digest (and the size): it must keep its length, so a blob that may pass ustar's 8 GiB
        size field gets a pax ``size`` record whatever its size turns out to be.
        """
        at = self.pos
        pax = size is None and most > USTAR_MAX_SIZE
        self._write(tar_header(self.PLACEHOLDER, size or 0, mtime=self.mtime, pax_size=pax))
        hasher, n = hashlib.sha256(), 0
        for chunk in chunks:
            hasher.update(chunk)
            self._write(chunk)
            n += len(chunk)
        if size is not None and n != size:
            raise StoreError(f"a layer came out at {n} bytes, not the {size} planned; the store changed meanwhile")
        if size is None and not pax and n > USTAR_MAX_SIZE:
            raise StoreError(f"a compressed layer came out at {n} bytes, more than the {most} it may take")
        size = n
        self._write(bytes(padding(size)))
        digest = Digest(hasher.hexdigest())
        header = tar_header(f"blobs/sha256/{digest.hex}", size, mtime=self.mtime, pax_size=pax)
        try:
            oscalls.host.pwrite_all(self.sink.file.fd, header, at)
            os.lseek(self.sink.file.fd, self.pos, os.SEEK_SET)  # where pwrite is emulated by seek and write
        except OSError as exc:
            raise_os_error(exc, f"writing {self.path}")
        self.seen.add(digest)
        return digest, size

    def put_bytes(self, data: bytes) -> tuple[Digest, int]:
        digest = Digest.of(data)
        if digest not in self.seen:
            self.put([data], len(data))
        return digest, len(data)

    def tagged(self, ref: str) -> bytes | None:
        return None  # a new archive: no ref names anything yet

    def commit(self, refs: dict[str, dict[str, Any]]) -> None:
        manifests = [
            {**desc, "annotations": {**(desc.get("annotations") or {}), ANNOTATION_REF: ref}}
            for ref, desc in refs.items()
        ]
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
        self._member("index.json", encode_json(index))
        self._write(END_OF_ARCHIVE)
        self.sink.commit()
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        self.sink.abort()
