"""What ``prune`` reclaims beside ``blobs/``: abandoned staging files, and the files newer
features keep in ``.ollama-seed/``.

- ``staging/`` and ``tmp/``: a download no live lock holds, a manifest on its way that no
  process finished (``tmp/`` past the grace period only).

- ``image-layers.json``, the digests of image layers built from single blobs (``image build``):
  its keys start with the blob's digest and ``|``; an entry whose blob left the store is dropped.
  The file is rewritten atomically (a crash leaves the old one or the new one; either is only a
  shortcut, checked against the blob's digest when used).
- ``image-layers/`` and ``image-base/``, where ``image extract``/``image verify`` and ``image
  build --base`` download a registry's layers (a store of their own, removed once the image was
  read; after a failure kept so that the next run resumes): files older than the grace period
  are an abandoned resume and are removed, then the directories left empty.
- ``signatures/sha256-<manifest hex>/``, the signature records of a manifest: removed once no
  manifest in the store has that digest, the folder older than the grace period (a pull keeps a
  record before it writes the manifest), and never while a manifest is unreadable (it might be
  that one). A removal cut short leaves fewer records, which only means checking a signature
  again (records are data, never trust).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..core.digest import Digest
from ..core.layout import ModelsLayout
from . import oscalls
from .fsutil import atomic_write, remove_tree

__all__ = ["BASE_SCRATCH", "LAYER_MEMO", "LAYER_SCRATCH", "StateReport", "prune_staging", "prune_state"]

LAYER_MEMO = "image-layers.json"
LAYER_SCRATCH, BASE_SCRATCH = "image-layers", "image-base"  # image extract/verify, image build --base


@dataclass(frozen=True, slots=True)
class StateReport:
    """What :func:`prune_state` removed: image-layer entries (of the memo), scratch files and their
    bytes, and the manifest digests whose signature records went."""

    layer_entries: int = 0
    scratch_files: int = 0
    scratch_bytes: int = 0
    signatures: tuple[Digest, ...] = ()


def prune_staging(
    layout: ModelsLayout, in_use: set[str], *, now: float, grace: float, dry_run: bool = False
) -> list[str]:
    """Remove the files of ``staging/`` and ``tmp/`` no process uses; their names. *in_use*: the
    staging files (or their ``sha256-<hex>`` stems) a live lock holds; ``tmp/`` files younger than
    *grace* seconds are kept (a manifest may be on its way)."""
    removed: list[str] = []
    for d in (layout.staging_dir, layout.tmp_dir):
        if not d.is_dir():
            continue
        for entry in os.scandir(d):
            stem = entry.name.split(".", 1)[0]
            if stem in in_use or entry.name in in_use or not entry.is_file(follow_symlinks=False):
                continue
            if d == layout.tmp_dir and now - entry.stat(follow_symlinks=False).st_mtime < grace:
                continue
            if not dry_run:
                oscalls.host.remove(entry.path)
            removed.append(entry.name)
    return removed


def prune_state(
    layout: ModelsLayout,
    blobs: set[Digest],
    manifests: set[Digest] | None,
    *,
    now: float,
    grace: float,
    dry_run: bool = False,
) -> StateReport:
    """Reclaim the state that no longer serves the store. *blobs*: the blobs in ``blobs/``;
    *manifests*: the digests of every manifest (None: one is unreadable, signatures are kept);
    *dry_run*: report what would go, remove nothing."""
    files, size = _scratch(layout, now - grace, dry_run)
    gone = _signatures(layout, manifests, now - grace, dry_run) if manifests is not None else ()
    return StateReport(_layer_memo(layout, blobs, dry_run), files, size, gone)


def _layer_memo(layout: ModelsLayout, blobs: set[Digest], dry_run: bool) -> int:
    path = layout.state_dir / LAYER_MEMO
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return 0
    if not isinstance(doc, dict):
        return 0
    present = {str(d) for d in blobs}
    kept = {k: v for k, v in doc.items() if k.split("|", 1)[0] in present}
    if len(kept) == len(doc) or dry_run:
        return len(doc) - len(kept)
    with contextlib.suppress(OSError):  # a store we may not write: the entries only cost a lookup
        atomic_write(path, json.dumps(kept).encode(), layout.tmp_dir, 0o600)
        return len(doc) - len(kept)
    return 0


def _scratch(layout: ModelsLayout, before: float, dry_run: bool) -> tuple[int, int]:
    files = size = 0
    for name in (LAYER_SCRATCH, BASE_SCRATCH):
        root = layout.state_dir / name
        if not root.is_dir() or root.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            here = Path(dirpath)
            for entry in filenames + [d for d in dirnames if (here / d).is_symlink()]:
                with contextlib.suppress(OSError):
                    st = os.lstat(here / entry)
                    if st.st_mtime < before:
                        if not dry_run:
                            oscalls.host.remove(here / entry)
                        files += 1
                        size += st.st_size if stat.S_ISREG(st.st_mode) else 0
            with contextlib.suppress(OSError):
                if not dry_run and not os.listdir(here):
                    oscalls.host.rmdir(here)
    return files, size


def _signatures(layout: ModelsLayout, manifests: set[Digest], before: float, dry_run: bool) -> tuple[Digest, ...]:
    gone = []
    try:
        names = sorted(os.listdir(layout.signatures_dir))
    except OSError:
        return ()
    for name in names:
        digest = Digest.from_filename(name)
        folder = layout.signatures_dir / name
        if digest is None or digest in manifests:
            continue
        try:
            st = os.lstat(folder)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_mtime < before:
            if not dry_run:
                remove_tree(folder)
            gone.append(digest)
    return tuple(gone)
