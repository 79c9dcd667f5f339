"""What a source that ``import``, ``bundle verify`` and ``bundle ls`` are given is, opened as a member stream.

:class:`OpenedBundle` turns the source a user names into a member stream for the importer:
a directory with ``oci-layout`` is an OCI image layout, a directory with ``manifests/`` is
another Ollama models directory, anything else a tar stream (plain, zstd or gzip; a file,
split parts, stdin or a file object).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from ...core.errors import BundleError
from ...core.progress import ProgressEvent
from ...core.reference import ModelName
from ..format.index import MAX_INDEX_BYTES
from ..format.tar import MAX_PAX
from .base import MemberSource
from .models_dir import ModelsDirMembers, is_models_dir
from .oci_dir import DirMembers, is_layout_dir
from .streams import BoundedSource, OpenedSource, open_source
from .tar import TarMembers

__all__ = ["INITIAL_LIMIT", "BundleSource", "OpenedBundle"]

INITIAL_LIMIT = MAX_INDEX_BYTES + 4 * MAX_PAX + 64 * 1024  # bytes read before the index (if any) sets the bound

BundleSource = str | os.PathLike[str] | IO[bytes]
Emit = Callable[[ProgressEvent], None]


class OpenedBundle:
    """A source opened for reading; *kind* is ``stream``, ``oci-dir`` or ``models-dir``.

    *names* selects models of a models directory (all when empty); other sources refuse it.
    """

    def __init__(self, source: BundleSource, names: Sequence[ModelName] = ()) -> None:
        self.stream: OpenedSource | None = None
        self.bounded: BoundedSource | None = None
        self.models_dir: ModelsDirMembers | None = None
        self.oci_dir: DirMembers | None = None
        self.members: MemberSource
        if isinstance(source, (str, os.PathLike)) and source != "-" and Path(source).is_dir():
            path = Path(source)
            self.label, self.compression = str(path), "none"
            if is_layout_dir(path) and not names:
                self.oci_dir = DirMembers(path)
                self.members, self.kind = self.oci_dir, "oci-dir"
            elif is_models_dir(path):
                self.models_dir = ModelsDirMembers(path, names)
                self.members, self.kind = self.models_dir, "models-dir"
            else:
                raise BundleError(
                    f"{path} is a directory but neither an Ollama models directory (no manifests/) "
                    "nor an OCI image layout (no oci-layout file)"
                )
            return
        if names:
            raise ValueError(
                "only a models directory as the source takes model names; a bundle is imported whole "
                "(use --as NAME to rename the model of a single-model bundle)"
            )
        self.stream = open_source(source)
        self.bounded = BoundedSource(self.stream.tar, INITIAL_LIMIT)
        self.members = TarMembers(self.bounded)
        self.label, self.compression, self.kind = self.stream.label, self.stream.compression, "stream"

    @property
    def directory(self) -> bool:
        return self.stream is None

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        elif self.oci_dir is not None:
            self.oci_dir.close()
        elif self.models_dir is not None:
            self.models_dir.close()
