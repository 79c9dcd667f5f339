"""The staging file of a blob being downloaded and its resume state, opened or created."""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
from pathlib import Path

from ..core.layout import ModelsLayout
from ..core.manifest import Layer
from ..core.plan import BlobPlan
from . import oscalls
from .fsutil import open_nofollow, raise_os_error

__all__ = ["open_staging", "staging_paths"]


def staging_paths(lay: ModelsLayout, layer: Layer, *, unique: bool) -> tuple[Path, Path]:
    """The staging data and resume-state files of *layer*; *unique* adds this process and a nonce
    (pulls without the per-blob lock, which must not share a staging file)."""
    data, state = lay.staging_data(layer.digest), lay.staging_state(layer.digest)
    if unique:
        tag = f".{os.getpid()}-{secrets.token_hex(4)}"
        data, state = data.with_name(data.name + tag), state.with_name(state.name + tag)
    return data, state


def open_staging(layer: Layer, data: Path, state: Path, *, fresh: bool) -> tuple[int, BlobPlan, mmap.mmap | None]:
    """Open (resume) or create the staging file of *layer*: its descriptor, its plan, and the
    resume state mapped into memory (None for an empty blob).

    The data file is pre-sized and pre-allocated (``oscalls.preallocate``), so a full disk shows up before the
    first byte. A state that does not prove it describes exactly this blob means starting over.
    """
    plan = None
    if not fresh:
        with contextlib.suppress(OSError):
            st = os.lstat(data)
            if st.st_size == layer.size:
                plan = BlobPlan.from_state(state.read_bytes(), digest_hex=layer.digest.hex, size=layer.size)
    try:
        if plan is None:
            plan = BlobPlan.new(layer.size)
            oscalls.host.remove(state)
            fd = open_nofollow(data, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            try:
                oscalls.host.preallocate(fd, layer.size, data.parent)
                tmp = state.with_name(state.name + ".new")
                oscalls.host.remove(tmp)
                sfd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                try:
                    oscalls.host.write_all(sfd, plan.state_bytes(layer.digest.hex))
                finally:
                    os.close(sfd)
                oscalls.host.replace(tmp, state)
            except BaseException:
                os.close(fd)
                raise
        else:
            fd = open_nofollow(data, os.O_RDWR)
        mm = None
        if plan.pieces:
            sfd = open_nofollow(state, os.O_RDWR)
            try:
                mm = oscalls.host.map_shared(sfd)
            finally:
                os.close(sfd)
        return fd, plan, mm
    except OSError as exc:
        raise_os_error(exc, f"preparing the staging file for {layer.digest}")
        raise
