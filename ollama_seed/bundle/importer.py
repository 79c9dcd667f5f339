"""Import (and verify) a bundle: every member checked, every blob hashed, manifests installed last.

How a blob travels: its bytes are read from the stream into a fresh staging file
(``.ollama-seed/staging/sha256-<hex>.import-<pid>-<random>``, created with O_EXCL and
O_NOFOLLOW) while sha256 runs alongside; the digest must equal the member's name and the
size the index's. The file waits in staging until every blob of a manifest that needs it
is verified; then it is fsynced and moved into ``blobs/`` by :meth:`ModelStore.install_blob`,
and the manifest follows through :meth:`ModelStore.write_manifest`. Blobs already in the
store are read through and verified but not written. Staging files of models that never
completed are removed, so a bad or truncated bundle leaves the store as it was, apart from
the models it completed.

The index bounds how many bytes may come out of the stream (decompression bombs); bundles
without one (a tar of a store, an OCI layout) are bounded per member by the disk instead.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.digest import Digest
from ..core.errors import BundleError, RegistryProtocolError
from ..core.manifest import MAX_MANIFEST_BYTES, Manifest
from ..core.progress import LayerProgress, ProgressEvent, Status
from ..core.reference import ModelName
from ..store import oscalls
from ..store.fsutil import raise_os_error
from ..store.store import ModelStore
from .buffer_ring import BufferRing, Cancelled
from .completion import Completion
from .format.index import MAX_INDEX_BYTES, BundleIndex
from .format.names import INDEX_MEMBER, MemberKind
from .format.oci import parse_index, parse_layout
from .format.ollamazip import MAX_METADATA_BYTES, metadata_name
from .format.tar import padding
from .results import ImportResult
from .sinks import Writeback
from .sources.base import Member, MemberSource
from .sources.streams import CHUNK, BoundedSource, TruncatedBundle
from .staging import StagedBlob, discard, open_staging

if TYPE_CHECKING:
    from .signed import SignatureCheck

__all__ = ["ImportResult", "Importer"]

HEADER_ALLOWANCE = 8 * 1024
END_SLACK = 1024 * 1024
MAX_HELD_SMALL = 64 * 1024 * 1024
PROGRESS_STEP = 16 * CHUNK
_FAMILY = {
    MemberKind.OCI_LAYOUT: "oci",
    MemberKind.OCI_INDEX: "oci",
    MemberKind.OCI_BLOB: "oci",
    MemberKind.OZ_METADATA: "ollamazip",
    MemberKind.OZ_MANIFEST: "ollamazip",
}
_SHOWN = {"oci": "OCI layout", "ollamazip": "ollamazip", "tar": "models-directory", "ollama-seed": "ollama-seed"}


class Importer:
    """One import (``store`` given, ``install=True``) or verification (``install=False``).

    *rename* installs the bundle's only model under another name (``--as``); *manifests_last*
    writes every manifest after the last blob (see :mod:`.completion`).
    """

    def __init__(
        self,
        store: ModelStore | None,
        *,
        install: bool,
        emit: Callable[[ProgressEvent], None] | None = None,
        cancel: threading.Event | None = None,
        rename: ModelName | None = None,
        manifests_last: bool = False,
        hold: bool = False,
        signature: SignatureCheck | None = None,
    ) -> None:
        self.signature = signature  # the signature check, when trust is configured (see .signed)
        self.completion = done = Completion(
            store, install=install, emit=emit, rename=rename, manifests_last=manifests_last, hold=hold
        )
        self.store, self.install, self.rename = done.store, done.install, done.rename
        self.emit, self.st, self.cancel = done.emit, done.st, cancel
        self.members: MemberSource | None = None
        self.bounded: BoundedSource | None = None
        self.ring = BufferRing(None)

    # -- driver -----------------------------------------------------------------------
    def run(
        self,
        members: MemberSource,
        bounded: BoundedSource | None,
        *,
        label: str,
        compression: str,
        directory: bool = False,
        ended: str = "",
    ) -> ImportResult:
        """Read every member of *members*; install (or just check) what they carry.

        Raises:
            BundleError: a refused member, a digest or size mismatch, a truncated bundle.
            StoreError, InsufficientSpace: the store cannot take the data.
        """
        started = time.monotonic()
        self.members, self.bounded = members, bounded
        if self.install:
            assert self.store is not None
            self.store.prepare()
        if directory:
            self.st.kind = "oci"
        current: Member | None = None
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ollama-seed-hash") as pool:
            self.ring = BufferRing(pool)
            try:
                if self.signature is not None:
                    self.signature.begin(label)
                first = True
                while (current := members.next()) is not None:
                    self._member(current, first)
                    first = False
                    current = None
                if self.signature is not None:
                    self.signature.finish(label)
                self.completion.finish()
            except TruncatedBundle as exc:
                where = f"inside member {current.ref.path}" if current else "between members"
                why = f"; {ended}" if ended else ""
                raise self.completion.truncated(f"{label} is truncated: it ends {where} ({exc}){why}") from None
            finally:
                self.ring.wait()
                self.completion.cleanup()
        return ImportResult(
            tuple(self.st.done),
            tuple(self.st.replaced),
            tuple(self.st.unchanged),
            self.st.written,
            self.st.skipped,
            self.st.bytes_written,
            bounded.count if bounded else 0,
            self.st.kind or "empty",
            compression,
            time.monotonic() - started,
        )

    def _member(self, member: Member, first: bool) -> None:
        kind = member.ref.kind
        if kind is MemberKind.DIR:
            return
        if kind is MemberKind.INDEX:
            if not first:
                raise BundleError(f"refusing bundle member {INDEX_MEMBER!r}: the index must be the first member")
            self._on_index(member)
            return
        if first and self.bounded is not None:
            self.bounded.limit = 1 << 62  # no index: bounded per member by the disk instead
        family = _FAMILY.get(kind, "tar")
        if kind is MemberKind.BLOB and self.st.kind == "ollamazip":
            family = "ollamazip"  # its blobs are named as ours are
        self.st.kind = self.st.kind or family
        if family != {"ollama-seed": "tar"}.get(self.st.kind, self.st.kind):
            raise BundleError(
                f"refusing bundle member {member.ref.path!r}: the bundle mixes {_SHOWN[family]} "
                f"members with {_SHOWN.get(self.st.kind, self.st.kind)} ones"
            )
        if kind in (MemberKind.OZ_METADATA, MemberKind.OZ_MANIFEST):
            self._on_ollamazip(member)
        elif kind is MemberKind.MANIFEST:
            assert member.ref.name is not None
            self._on_manifest(member.ref.name, self.read_small(member, MAX_MANIFEST_BYTES), member.ref.path)
        elif kind is MemberKind.OCI_LAYOUT:
            parse_layout(self.read_small(member, 4096))
        elif kind is MemberKind.OCI_INDEX:
            self._on_oci_index(self.read_small(member, MAX_INDEX_BYTES))
        else:
            assert member.ref.digest is not None
            self._on_blob(member, member.ref.digest)

    def read_small(self, member: Member, limit: int) -> bytes:
        """All data of a small member (at most *limit* bytes).

        Raises:
            BundleError: the member is larger.
        """
        if member.size > limit:
            raise BundleError(
                f"refusing bundle member {member.ref.path!r}: {member.size} bytes, more than the {limit} allowed"
            )
        assert self.members is not None
        buf = bytearray(member.size)
        view = memoryview(buf)
        got = 0
        while got < member.size:
            n = self.members.readinto(view[got:])
            if not n:
                raise TruncatedBundle("inside a small member")
            got += n
        return bytes(buf)

    # -- members ----------------------------------------------------------------------
    def _on_index(self, member: Member) -> None:
        index = BundleIndex.decode(self.read_small(member, MAX_INDEX_BYTES))
        self.st.kind, self.st.index = "ollama-seed", index
        if self.rename is not None and len(index.models) > 1:
            shown = ", ".join(m.name.display for m in index.models[:5])
            raise BundleError(
                f"--as names one model, but this bundle holds {len(index.models)} ({shown}); import "
                "it without --as, then give one of them another name with 'ollama-seed cp'"
            )
        carried = index.blob_map
        for model in index.models:
            for digest in model.blobs:
                if digest not in carried and not (self.store and self.store.blob_size(digest) is not None):
                    where = f"in {self.store.root}" if self.store else "given (pass the models directory)"
                    raise BundleError(
                        f"model {model.name.display} needs blob {digest}, which is neither in the "
                        f"bundle nor in the store {where}; refusing the bundle"
                    )
        if self.signature is not None:
            self.signature.on_index(index)
        self.st.declared = {b.digest: b.size for b in index.blobs}
        if self.bounded is not None:
            budget = sum(size + padding(size) for size in self.st.declared.values())
            budget += sum(m.manifest_size + padding(m.manifest_size) for m in index.models)
            budget += HEADER_ALLOWANCE * (len(index.blobs) + len(index.models) + 8) + END_SLACK
            self.bounded.limit = self.bounded.count + budget
        for model in index.models:
            self.emit(Status(model.name.display, "importing" if self.install else "verifying"))

    def _on_manifest(self, name: ModelName, raw: bytes, path: str) -> None:
        previous = self.st.manifests.get(name)
        if previous is not None:
            if previous != raw:
                raise BundleError(f"refusing bundle member {path!r}: a duplicate member with other content")
            return
        self.st.manifests[name] = raw
        index, model = self.st.index, None
        if index is not None:
            model = next((m for m in index.models if m.name == name), None)
            if model is None:
                raise BundleError(f"refusing bundle member {path!r}: the index does not list this model")
            if len(raw) != model.manifest_size or hashlib.sha256(raw).hexdigest() != model.manifest_digest.hex:
                raise BundleError(
                    f"refusing bundle member {path!r}: it is not the manifest the index names ({model.manifest_digest})"
                )
        try:
            manifest = Manifest.parse(raw, source=path)
        except RegistryProtocolError as exc:
            raise BundleError(f"refusing bundle member {path!r}: {exc}") from None
        if model is not None and {b.digest for b in manifest.blobs} != set(model.blobs):
            raise BundleError(f"refusing bundle member {path!r}: its blobs differ from the ones the index lists")
        if self.signature is not None:
            self.signature.on_manifest(name, manifest.digest, (layer.digest for layer in manifest.blobs), path)
        for layer in manifest.blobs:
            known = self.st.declared.setdefault(layer.digest, layer.size)
            if known != layer.size:
                raise BundleError(
                    f"refusing bundle member {path!r}: it gives {layer.digest} {layer.size} bytes, "
                    f"but the bundle says {known}"
                )
        self.st.pending[name] = manifest
        self.completion.try_complete(name)

    def _on_ollamazip(self, member: Member) -> None:
        """``metadata.json`` names the model, ``manifest.json`` is its manifest; either may come first."""
        st, path = self.st, member.ref.path
        if path in st.oz_members:
            raise BundleError(f"refusing ollamazip member {path!r}: it appears twice")
        st.oz_members.add(path)
        if member.ref.kind is MemberKind.OZ_METADATA:
            raw = self.read_small(member, MAX_METADATA_BYTES)
            st.oz_name = metadata_name(raw, need_name=self.rename is None) or self.rename
            assert st.oz_name is not None
            self.emit(Status(st.oz_name.display, "importing" if self.install else "verifying"))
        else:
            st.oz_manifest = self.read_small(member, MAX_MANIFEST_BYTES)
            if st.oz_name is None and self.rename is not None:
                st.oz_name = self.rename
        if st.oz_name is not None and st.oz_manifest is not None:
            raw, st.oz_manifest = st.oz_manifest, None
            self._on_manifest(st.oz_name, raw, "manifest.json")

    def _on_oci_index(self, raw: bytes) -> None:
        if self.st.oci is not None:
            raise BundleError("refusing bundle member 'index.json': it appears twice")
        entries, self.st.oci_skip = parse_index(raw)
        self.st.oci = {}
        for entry in entries:
            self.st.oci.setdefault(entry.digest, []).append(entry)
            self.emit(Status(entry.name.display, "importing" if self.install else "verifying"))
        for digest in list(self.st.oci):
            blob = self.st.blobs.get(digest)
            if blob is not None and blob.small is not None:
                self._on_oci_manifest(digest, blob.small)

    def _on_oci_manifest(self, digest: Digest, raw: bytes) -> None:
        assert self.st.oci is not None
        for entry in self.st.oci[digest]:
            if entry.size != len(raw):
                raise BundleError(f"the manifest of {entry.name} is {len(raw)} bytes; index.json says {entry.size}")
            self._on_manifest(entry.name, raw, f"blobs/sha256/{digest.hex}")

    def _on_blob(self, member: Member, digest: Digest) -> None:
        path, size, st = member.ref.path, member.size, self.st
        if st.index is not None and digest not in st.declared:
            raise BundleError(f"refusing bundle member {path!r}: the index does not list this blob")
        declared = st.declared.get(digest)
        if declared is not None and declared != size:
            raise BundleError(f"refusing bundle member {path!r}: {size} bytes, but the bundle says {declared}")
        if digest in st.blobs:
            self._copy(member, digest, None, duplicate=True, cached=True)
            return
        if digest in st.oci_skip:  # an OCI twin of a manifest: checked, not kept
            self._copy(member, digest, None)
            st.blobs[digest] = StagedBlob(size, in_store=True)
            return
        is_oci_manifest = st.oci is not None and digest in st.oci
        maybe_manifest = st.kind == "oci" and st.oci is None and size <= MAX_MANIFEST_BYTES
        if is_oci_manifest or maybe_manifest:
            raw = self.read_small(member, MAX_MANIFEST_BYTES)
            if hashlib.sha256(raw).hexdigest() != digest.hex:
                raise BundleError(f"refusing bundle member {path!r}: its content does not match its name")
            if is_oci_manifest:
                st.blobs[digest] = StagedBlob(size, in_store=True)
                self._on_oci_manifest(digest, raw)
                return
            st.held_small += size
            if st.held_small > MAX_HELD_SMALL:
                raise BundleError("this OCI layout puts index.json after too many blobs to import it as a stream")
            blob = StagedBlob(size, small=raw)
            st.blobs[digest] = blob
            if self.install and not self.completion.in_store(digest, size):
                self._stage_bytes(digest, blob, raw)
            else:
                blob.in_store = self.completion.in_store(digest, size)
            self._after_blob(digest)
            return
        if self.signature is not None and st.kind != "oci":
            self.signature.on_blob(digest, path)
        blob = StagedBlob(size)
        if self.completion.in_store(digest, size) and not (self.install and self.completion.damaged(digest)):
            if self.install and getattr(self.members, "cheap_skip", False):
                assert self.members is not None
                self.members.skip()  # another models directory: a blob we already hold is not even read
            else:
                self._copy(member, digest, None, cached=True)
            blob.in_store = True
            st.skipped += 1
        elif self.install:
            self._stage(member, digest, blob)
        else:
            self._copy(member, digest, None)
        st.blobs[digest] = blob
        self._after_blob(digest)

    def _after_blob(self, digest: Digest) -> None:
        for name, manifest in list(self.st.pending.items()):
            if any(layer.digest == digest for layer in manifest.blobs):
                self.completion.try_complete(name)

    # -- staging ----------------------------------------------------------------------
    def _stage(self, member: Member, digest: Digest, blob: StagedBlob) -> None:
        assert self.store is not None
        try:
            fd = open_staging(self.store, digest, blob)
            self._copy(member, digest, fd)
        except BaseException:
            discard(blob)
            raise
        self.st.written += 1
        self.st.bytes_written += blob.size

    def _stage_bytes(self, digest: Digest, blob: StagedBlob, raw: bytes) -> None:
        assert self.store is not None
        try:
            fd = open_staging(self.store, digest, blob)
            oscalls.host.write_all(fd, raw)
        except OSError as exc:
            discard(blob)
            raise_os_error(exc, f"staging {digest}")
        except BaseException:
            discard(blob)
            raise
        self.st.written += 1
        self.st.bytes_written += blob.size

    def _copy(
        self, member: Member, digest: Digest, fd: int | None, *, duplicate: bool = False, cached: bool = False
    ) -> None:
        """Read the member's data, hash it alongside, write it to *fd* if given; check the digest.
        *cached*: the store holds the blob already (what the progress lines say)."""
        assert self.members is not None
        hasher = hashlib.sha256()
        left, done, reported = member.size, 0, 0
        model = self._model_of(digest)
        writeback = Writeback(fd) if fd is not None else None
        try:
            while left:
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled
                slot, view = self.ring.take()
                n = self.members.readinto(view[:left] if left < len(view) else view)
                if not n:
                    raise TruncatedBundle("inside a blob")
                chunk = view[:n]
                self.ring.update(slot, hasher, chunk)
                if fd is not None and writeback is not None:
                    oscalls.host.write_all(fd, chunk)
                    writeback.wrote(n)
                left -= n
                done += n
                if done - reported >= PROGRESS_STEP:
                    reported = done
                    self.emit(LayerProgress(model, str(digest), "", member.size, done, cached=cached))
        except OSError as exc:
            raise_os_error(exc, f"staging {digest}")
        self.ring.wait()
        if hasher.hexdigest() != digest.hex:
            what = (
                "a duplicate member with other content"
                if duplicate
                else f"its content hashes to sha256:{hasher.hexdigest()}, not to its name"
            )
            raise BundleError(f"refusing bundle member {member.ref.path!r}: {what}")
        self.emit(LayerProgress(model, str(digest), "", member.size, member.size, cached=cached, done=True))

    def _model_of(self, digest: Digest) -> str:
        if self.st.index is not None:
            for model in self.st.index.models:
                if digest in model.blobs:
                    return model.name.display
        for name, manifest in self.st.pending.items():
            if any(layer.digest == digest for layer in manifest.blobs):
                return (self.rename or name).display
        return self.st.oz_name.display if self.st.oz_name is not None else "bundle"
