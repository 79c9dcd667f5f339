"""``bundle ls``: the models and blobs a source carries, read as cheaply as its kind allows.

An ollama-seed bundle is listed from its index (the first member); a models directory from
its manifests and file sizes (nothing hashed); a tar without an index, an ollamazip archive
or an OCI layout is read through as a verification would read it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..core.manifest import Manifest
from ..core.progress import ProgressEvent
from .format.index import MAX_INDEX_BYTES, BundleIndex
from .format.names import MemberKind
from .importer import Importer
from .results import BundleInfo, BundleModel
from .sources.base import Member, MemberSource
from .sources.detect import BundleSource, OpenedBundle
from .sources.models_dir import ModelsDirMembers

__all__ = ["BundleInfo", "BundleModel", "inspect_source"]


class _Replay:
    """A member source with its first member already read."""

    def __init__(self, inner: MemberSource, first: Member | None) -> None:
        self.inner, self.first, self.started = inner, first, False

    def next(self) -> Member | None:
        if not self.started:
            self.started = True
            if self.first is not None:
                return self.first
        return self.inner.next()

    def readinto(self, view: memoryview) -> int:
        return self.inner.readinto(view)

    def skip(self) -> None:
        self.inner.skip()


def inspect_source(source: BundleSource, cancel: threading.Event, emit: Callable[[ProgressEvent], None]) -> BundleInfo:
    """The :class:`BundleInfo` of *source*.

    Raises:
        BundleError: not a bundle, or a damaged one.
    """
    opened = OpenedBundle(source)
    try:
        if opened.models_dir is not None:
            return _info_from_dir(opened.models_dir)
        importer = Importer(None, install=False, cancel=cancel)
        first = None if opened.directory else opened.members.next()
        if first is not None and first.ref.kind is MemberKind.INDEX:
            importer.members = opened.members
            index = BundleIndex.decode(importer.read_small(first, MAX_INDEX_BYTES))
            return _info_from_index(index, opened.compression)
        importer.run(
            _Replay(opened.members, first),
            opened.bounded,
            label=opened.label,
            compression=opened.compression,
            directory=opened.directory,
        )
    finally:
        opened.close()
    st = importer.st
    models = []
    manifest_bytes = 0
    for name in st.done:
        raw = st.manifests[name]
        manifest = Manifest.parse(raw)
        manifest_bytes += len(raw)
        models.append(BundleModel(name, manifest.digest, len(raw) + manifest.total_size, len(manifest.blobs)))
    blobs = tuple((d, b.size) for d, b in st.blobs.items() if d not in (st.oci or {}) and d not in st.oci_skip)
    return BundleInfo(
        st.kind, None, "", "", opened.compression, tuple(models), blobs, sum(size for _, size in blobs) + manifest_bytes
    )


def _info_from_index(index: BundleIndex, compression: str) -> BundleInfo:
    sizes = index.blob_map
    models = tuple(
        BundleModel(
            m.name, m.manifest_digest, m.manifest_size + sum(sizes[d].size for d in m.blobs if d in sizes), len(m.blobs)
        )
        for m in index.models
    )
    return BundleInfo(
        "ollama-seed",
        index.version,
        index.created_by,
        index.created,
        compression,
        models,
        tuple((b.digest, b.size) for b in index.blobs),
        index.size,
        _signers(index.signatures),
    )


def _info_from_dir(source: ModelsDirMembers) -> BundleInfo:
    models = tuple(BundleModel(name, m.digest, len(m.raw) + m.total_size, len(m.blobs)) for name, m in source.models)
    blobs = tuple(source.sizes.items())
    return BundleInfo(
        "models-dir",
        None,
        "",
        "",
        "none",
        models,
        blobs,
        sum(source.sizes.values()) + sum(len(m.raw) for _, m in source.models),
        _signers(_beside(source)),
    )


def _signers(signatures: tuple[bytes, ...]) -> tuple[str, ...]:
    if not signatures:
        return ()
    from .signed import claimed_signers  # only a signed bundle loads the signature code

    return claimed_signers(signatures)


def _beside(source: ModelsDirMembers) -> tuple[bytes, ...]:
    """The detached signature a ``--format dir`` export writes beside the models, if there is one."""
    path = source.root / "model.sig"
    try:
        return (path.read_bytes(),) if path.is_file() and path.stat().st_size < 16 * 1024 * 1024 else ()
    except OSError:
        return ()
