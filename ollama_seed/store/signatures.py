"""The signatures a store keeps, per manifest digest, under ``.ollama-seed/signatures/``.

``.ollama-seed/signatures/sha256-<manifest hex>/<record id>.json`` holds one
:class:`~ollama_seed.core.sigrecord.StoredSignature`: an OMS signature an import verified, a cosign
signature a pull verified or a push made. ``ensure`` checks a model against them with no network;
``serve`` hands them on. They are written by an atomic rename but without fsync (as the blob stamps
of :mod:`.verified`): after a power cut a record may be missing or damaged, never half-trusted (a
damaged one is passed over, each is checked against your trust anyway), and a missing one only
means checking the model's signature again. Read without following links. Ollama never looks in
``.ollama-seed/``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from ..core.digest import Digest
from ..core.sigrecord import MAX_RECORD_BYTES, StoredSignature
from . import oscalls
from .fsutil import PRIVATE_DIR_MODE, ensure_dir, open_nofollow, open_regular, raise_os_error
from .store import ModelStore

__all__ = ["SignatureStore"]

MAX_RECORDS = 64  # per manifest: more are not kept (a registry can attach any number)


class SignatureStore:
    """The signature records of one models directory."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.layout = store.layout

    def add(self, manifest_digest: Digest, record: StoredSignature) -> bool:
        """Keep *record* for *manifest_digest*; False when it was kept already (or there are too many).

        Raises:
            StoreError, InsufficientSpace: the store cannot take it.
        """
        folder = self.layout.signatures(manifest_digest)
        path = folder / f"{record.id}.json"
        if os.path.lexists(path):
            return False
        ensure_dir(self.layout.state_dir, PRIVATE_DIR_MODE)
        ensure_dir(self.layout.signatures_dir, PRIVATE_DIR_MODE)
        ensure_dir(folder, PRIVATE_DIR_MODE)
        if len(self._names(folder)) >= MAX_RECORDS:
            return False
        tmp = folder / f".{record.id}.{secrets.token_hex(4)}.tmp"
        try:
            fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                oscalls.host.write_all(fd, record.encode())
            finally:
                os.close(fd)
            oscalls.host.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                oscalls.host.remove(tmp)
            raise_os_error(exc, f"keeping a signature in {folder}")
        return True

    def records(self, manifest_digest: Digest) -> list[StoredSignature]:
        """The readable records kept for *manifest_digest*, in name order."""
        folder = self.layout.signatures(manifest_digest)
        out = []
        for name in self._names(folder):
            raw = _read(folder / name)
            record = StoredSignature.decode(raw) if raw is not None else None
            if record is not None:
                out.append(record)
        return out

    def digests(self) -> list[Digest]:
        """Every manifest digest with a folder of records."""
        out = []
        for name in self._names(self.layout.signatures_dir):
            digest = Digest.from_filename(name)
            if digest is not None:
                out.append(digest)
        return out

    @staticmethod
    def _names(folder: Path) -> list[str]:
        try:
            st = os.lstat(folder)
        except OSError:
            return []
        if not stat.S_ISDIR(st.st_mode):
            return []
        try:
            return sorted(n for n in os.listdir(folder) if n.endswith(".json") or Digest.from_filename(n))
        except OSError:
            return []


def _read(path: Path) -> bytes | None:
    try:
        fd = open_regular(path)
    except OSError:
        return None
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size > MAX_RECORD_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_RECORD_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
