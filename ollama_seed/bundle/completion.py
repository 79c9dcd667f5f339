"""Completing the models of an import: blobs moved into ``blobs/``, then the manifest, under which name and when.

What an import has seen and staged so far is an :class:`ImportState`; :class:`Completion` owns it.

A model completes when its manifest and every blob it names are verified. Normally its blobs
and manifest are installed at once, so a truncated bundle still yields the models it completed.
Two callers want it later:

- ``--as NAME`` (*rename*): the bundle must hold exactly one model, which only the end of a
  stream without an index proves; so nothing is installed before the end, and a bundle with a
  second model leaves the store as it was.
- ``--format dir`` exports (*manifests_last*): blobs are installed as their models complete,
  every manifest after the last blob, so a copy of the tree taken part-way (rsync) holds no
  manifest whose blobs are missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.digest import Digest
from ..core.errors import BundleError, StoreError
from ..core.manifest import Manifest
from ..core.progress import ProgressEvent, Status, no_progress
from ..core.reference import ModelName
from ..store import verified
from ..store.store import ModelStore
from .format.index import BundleIndex
from .format.oci import OciEntry
from .sources.streams import TruncatedBundle
from .staging import StagedBlob, discard, install_staged

__all__ = ["Completion", "ImportState"]


@dataclass
class ImportState:
    """What an import has seen and staged so far (one per :class:`~.importer.Importer`)."""

    kind: str = ""
    index: BundleIndex | None = None
    oci: dict[Digest, list[OciEntry]] | None = None
    oci_skip: frozenset[Digest] = frozenset()
    declared: dict[Digest, int] = field(default_factory=dict)
    blobs: dict[Digest, StagedBlob] = field(default_factory=dict)
    manifests: dict[ModelName, bytes] = field(default_factory=dict)
    pending: dict[ModelName, Manifest] = field(default_factory=dict)
    done: list[ModelName] = field(default_factory=list)
    replaced: list[ModelName] = field(default_factory=list)
    unchanged: list[ModelName] = field(default_factory=list)
    ready: list[tuple[ModelName, Manifest]] = field(default_factory=list)  # complete, install deferred to the end
    oz_name: ModelName | None = None  # an ollamazip archive: the name its metadata.json gives
    oz_manifest: bytes | None = None  # its manifest.json, held until metadata.json names it
    oz_members: set[str] = field(default_factory=set)
    held_small: int = 0
    written: int = 0
    skipped: int = 0
    bytes_written: int = 0


class Completion:
    """The completion half of one :class:`~.importer.Importer`: it installs (or, verifying, only counts)
    each model once the manifest and every blob it names are verified."""

    def __init__(
        self,
        store: ModelStore | None,
        *,
        install: bool,
        emit: Callable[[ProgressEvent], None] | None = None,
        rename: ModelName | None = None,
        manifests_last: bool = False,
        hold: bool = False,
    ) -> None:
        self.store = store
        self.hold = hold  # nothing installed before the end (an image: its layer digests are checked last)
        self.install = install and store is not None
        self.emit = emit or no_progress
        self.rename = rename.unpinned() if rename is not None else None
        self.manifests_last = manifests_last
        self.st = ImportState()

    def in_store(self, digest: Digest, size: int) -> bool:
        return self.store is not None and self.store.blob_size(digest) == size

    def damaged(self, digest: Digest) -> bool:
        """The store's copy was found damaged (``verify``, store/verified): the bundle's verified bytes
        replace it, which repairs it without a registry. Any other blob of the right size is kept."""
        return self.store is not None and verified.is_damaged(self.store.layout, digest)

    def truncated(self, message: str) -> TruncatedBundle:
        done = ", ".join(n.display for n in self.st.done) or "none"
        todo = [m.name for m in self.st.index.models] if self.st.index else list(self.st.pending)
        missing = ", ".join(n.display for n in todo if n not in self.st.done) or "none known"
        verb = "installed" if self.install else "verified"
        exc = TruncatedBundle(
            f"{message}. Models {verb}: {done}; not {verb}: {missing}. Copy the bundle again "
            "and re-run; completed models and blobs are skipped"
        )
        exc.installed = tuple(self.st.done)  # type: ignore[attr-defined]
        return exc

    def try_complete(self, name: ModelName) -> None:
        manifest = self.st.pending[name]
        for layer in manifest.blobs:
            blob = self.st.blobs.get(layer.digest)
            if blob is None and not self.in_store(layer.digest, layer.size):
                return
            if blob is not None and blob.size != layer.size:
                raise BundleError(
                    f"the manifest of {name.display} gives {layer.digest} {layer.size} bytes; "
                    f"the bundle carries {blob.size}"
                )
        del self.st.pending[name]
        if self.rename is not None or self.manifests_last or self.hold:
            if self.rename is None and self.install and not self.hold:
                self._install_blobs(manifest)
            self.st.ready.append((name, manifest))
            return
        self._complete(name, manifest)

    def _complete(self, name: ModelName, manifest: Manifest) -> None:
        final = self.rename or name
        if self.install:
            self._install_blobs(manifest)
            self._write_manifest(final, manifest)
        self.st.done.append(final)
        self.emit(Status(final.display, "success"))

    def _install_blobs(self, manifest: Manifest) -> None:
        assert self.store is not None
        for layer in manifest.blobs:
            blob = self.st.blobs.get(layer.digest)
            if blob is not None and blob.staged is not None:
                install_staged(self.store, blob, layer)

    def _write_manifest(self, name: ModelName, manifest: Manifest) -> None:
        assert self.store is not None
        target = self.store.resolve(name)
        self.emit(Status(name.display, "writing manifest"))
        try:
            existing = self.store.read_manifest(target)
        except StoreError:
            existing = None
            self.st.replaced.append(name)
        if existing is not None and existing.raw == manifest.raw:
            self.st.unchanged.append(name)
            return
        if existing is not None:
            self.st.replaced.append(name)
        self.store.write_manifest(target, manifest)

    def finish(self) -> None:
        st = self.st
        if st.oz_manifest is not None:
            raise BundleError(
                "this ollamazip archive has a manifest.json but no metadata.json naming the model; "
                "import it with --as NAME"
            )
        if st.pending:
            name, manifest = next(iter(st.pending.items()))
            absent = [
                layer.digest
                for layer in manifest.blobs
                if layer.digest not in st.blobs and not self.in_store(layer.digest, layer.size)
            ]
            raise BundleError(
                f"the manifest of {name.display} references blob {absent[0] if absent else '?'}, "
                "which is neither in the bundle nor in the store; that model was not installed"
            )
        expected: list[ModelName] = []
        if st.index is not None:
            expected = [m.name for m in st.index.models]
        elif st.oci is not None:
            expected = [e.name for entries in st.oci.values() for e in entries]
        elif st.kind == "oci":
            raise BundleError("this OCI layout has no index.json; nothing names its models")
        have = set(st.done) | {name for name, _ in st.ready}
        lacking = [n for n in expected if n not in have]
        if lacking:
            raise self.truncated(f"the bundle lacks the manifest of {lacking[0].display} that its index lists")
        if st.kind == "ollamazip" and not have:
            raise BundleError("this ollamazip archive holds no manifest.json; there is no model to install")
        if self.rename is not None and len(have) > 1:
            shown = ", ".join(sorted(n.display for n in have))
            raise BundleError(
                f"--as names one model, but this bundle holds {len(have)} ({shown}); import it "
                "without --as, then give one of them another name with 'ollama-seed cp'"
            )
        for name, manifest in st.ready:
            self._complete(name, manifest)
        st.ready.clear()
        if not st.done:
            raise BundleError("the bundle holds no model")

    def cleanup(self) -> None:
        for blob in self.st.blobs.values():
            discard(blob)
