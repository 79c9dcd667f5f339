"""The staging file of a blob being downloaded and its resume state, opened or created."""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
from pathlib import Path

from ..core.layout import ModelsLayout
from ..core.manifest import Layer
from ..core.plan import BOOT_OFFSET, STATE_HEADER, SYNCED_OFFSET, BlobPlan
from . import oscalls
from .fsutil import fsync_dir, open_nofollow, raise_os_error
from .writeback import start_writeback

__all__ = ["ResumeState", "open_staging", "staging_paths", "sync_prefix"]


def staging_paths(lay: ModelsLayout, layer: Layer, *, unique: bool) -> tuple[Path, Path]:
    """The staging data and resume-state files of *layer*; *unique* adds this process and a nonce
    (pulls without the per-blob lock, which must not share a staging file)."""
    data, state = lay.staging_data(layer.digest), lay.staging_state(layer.digest)
    if unique:
        tag = f".{os.getpid()}-{secrets.token_hex(4)}"
        data, state = data.with_name(data.name + tag), state.with_name(state.name + tag)
    return data, state


class ResumeState:
    """The resume state of one staging file, mapped: counters stored in place after each write,
    the watermark after each sync of the data. Its descriptor stays open to write it back."""

    def __init__(self, mapped: mmap.mmap, fd: int) -> None:
        self.mapped, self.fd = mapped, fd

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):  # a view still exported: the GC closes it
            self.mapped.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_staging(layer: Layer, data: Path, state: Path, *, fresh: bool) -> tuple[int, BlobPlan, ResumeState | None]:
    """Open (resume) or create the staging file of *layer*: its descriptor, its plan, and the
    resume state mapped into memory (None for an empty blob).

    The data file is pre-sized and pre-allocated (``oscalls.preallocate``), so a full disk shows up before the
    first byte. A state that does not prove it describes exactly this blob means starting over; one
    written in another boot keeps only the prefix its watermark says was durable (see
    ``BlobPlan.from_state``), and is rewritten for this boot.

    Starting over writes the new state and makes it durable (file and directory) before the data
    file is truncated: a power cut can never bring an older state back beside new data.
    """
    boot = oscalls.host.boot_id()
    plan = None
    if not fresh:
        with contextlib.suppress(OSError):
            st = os.lstat(data)
            if st.st_size == layer.size:
                raw = state.read_bytes()
                plan = BlobPlan.from_state(raw, digest_hex=layer.digest.hex, size=layer.size, boot_id=boot)
    try:
        if plan is None:
            plan = BlobPlan.new(layer.size)
            _write_state(state, plan.state_bytes(layer.digest.hex, boot))
            fd = open_nofollow(data, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            try:
                oscalls.host.preallocate(fd, layer.size, data.parent)
            except BaseException:
                os.close(fd)
                raise
        else:
            fd = open_nofollow(data, os.O_RDWR)
        resume = None
        if plan.pieces:
            sfd = open_nofollow(state, os.O_RDWR)
            try:
                resume = ResumeState(oscalls.host.map_shared(sfd), sfd)
            except BaseException:
                os.close(sfd)
                raise
            if plan.clamped:  # written in another boot: this boot's counters, then this boot's id
                for i, done in enumerate(plan.done):
                    oscalls.host.poke(resume.mapped, BlobPlan.done_offset(i), done.to_bytes(8, "little"))
                oscalls.host.poke(resume.mapped, BOOT_OFFSET, boot)
        return fd, plan, resume
    except OSError as exc:
        raise_os_error(exc, f"preparing the staging file for {layer.digest}")
        raise


def _write_state(state: Path, raw: bytes) -> None:
    """Replace *state* by *raw*, durably (the file, then its directory)."""
    tmp = state.with_name(state.name + ".new")
    oscalls.host.remove(tmp)
    sfd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        oscalls.host.write_all(sfd, raw)
        oscalls.host.full_sync(sfd)
    finally:
        os.close(sfd)
    oscalls.host.replace(tmp, state)
    fsync_dir(state.parent)


def sync_prefix(fd: int, state: ResumeState | None, hashed: int) -> None:
    """Make the staging data durable (``fdatasync``), then record in its state that the first
    *hashed* bytes are (the watermark a resume after a power cut keeps). On Linux the state's page
    is only queued for writing (``sync_file_range``: no wait, no cache flush): the next sync of the
    data flushes the drive's cache with it, so the watermark is at most one step behind on disk at
    no cost; elsewhere it is written back and waited for (``msync``)."""
    oscalls.host.datasync(fd)
    if state is not None:
        oscalls.host.poke(state.mapped, SYNCED_OFFSET, hashed.to_bytes(8, "little"))
        if not start_writeback(state.fd, 0, STATE_HEADER):
            oscalls.host.flush_map(state.mapped)
