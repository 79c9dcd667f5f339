"""One blob's download in flight, and the two tasks that follow its bytes as they land.

A :class:`BlobJob` holds the staging file, the piece plan, the run scheduler, the memory-mapped
resume state and the prefix hash (:mod:`.hashing`). While :mod:`.transfer`'s workers fill the
file, :func:`follow_hash` keeps the hash close behind the contiguous prefix (and reports
progress), and :func:`write_back` makes the hashed prefix durable every :data:`SYNC_STEP` bytes,
recording it in the resume state as all a resume after a power cut may keep.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from ..core.manifest import Layer
from ..core.plan import BlobPlan, Scheduler
from ..core.progress import LayerNote
from ..store.staging import ResumeState, sync_prefix
from .hashing import PrefixHash
from .httpx_body import Watch
from .registry import RepoName

__all__ = ["HASH_LAG", "HASH_POLL", "SYNC_STEP", "BlobJob", "Within", "follow_hash", "write_back"]

HASH_LAG = 2 * 1024 * 1024  # the follower hashes once the prefix is this far ahead ...
HASH_POLL = 0.025  # ... looking every this many seconds: at most ~5 MB left to hash at 100 MB/s
SYNC_STEP = 64 * 1024 * 1024  # writeback (fdatasync) runs once this many more bytes are hashed


@dataclass(frozen=True, slots=True)
class Within:
    """The blob's bytes sit at *offset* of another registry blob *digest* of *size* bytes (an image
    layer's tar): ranged requests go there, shifted, and the file holds only the blob's bytes."""

    digest: str
    offset: int
    size: int


@dataclass(eq=False)
class BlobJob:
    """One blob's download: where its bytes go, which of them are there, and who asks for them."""

    name: RepoName
    layer: Layer
    fd: int
    plan: BlobPlan
    sched: Scheduler
    state: ResumeState | None
    blob_url: str
    direct_url: str | None = None
    shift: int = 0  # where the blob starts in what the URL serves (see Within)
    remote_size: int | None = None
    synced: int = 0
    digest: PrefixHash = field(init=False)
    watches: set[Watch] = field(default_factory=set)
    on_note: Callable[[LayerNote], None] | None = None

    def __post_init__(self) -> None:
        self.digest = PrefixHash(self.fd, self.plan.size, str(self.layer.digest))

    def reset(self) -> None:
        """Forget every byte on disk (the server ignores Range: it all comes again from 0)."""
        old, self.sched = self.sched, Scheduler(self.plan, 1, self.sched.on_record)
        self.sched.received = old.received  # what came before the restart was still downloaded
        for i in range(self.plan.pieces):
            self.plan.done[i] = 0
            if self.sched.on_record is not None:
                self.sched.on_record(i, 0)

    def close(self) -> None:
        """Release the hash, the resume state's mapping and the staging descriptor (again: no-op)."""
        self.digest.close()
        if self.state is not None:
            self.state.close()
            self.state = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


async def write_back(job: BlobJob, done: anyio.Event) -> None:
    """Write hashed data out while the download runs, so the fsync before the install has
    little left to do (it was ~0.25 s per 512 MiB at the end). Its own thread: an
    fdatasync takes ~0.2 s per 512 MiB here, and the hasher must not wait for it. The resume
    state then records the prefix as durable: all a resume after a power cut keeps."""
    while not done.is_set():
        with anyio.move_on_after(0.05):
            await done.wait()
        hashed = job.digest.hashed
        if hashed - job.synced >= SYNC_STEP and hashed < job.plan.size and not done.is_set():
            await anyio.to_thread.run_sync(sync_prefix, job.fd, job.state, hashed)
            job.synced = hashed


async def follow_hash(job: BlobJob, done: anyio.Event, on_bytes: Callable[[int], None], interval: float) -> None:
    """Hash the contiguous prefix as it grows (in a worker thread), and report the bytes on disk
    every *interval* seconds: the progress of both body paths is reported here only."""
    shown, last = -1, 0.0
    while not done.is_set():
        with anyio.move_on_after(HASH_POLL):
            await done.wait()
        now = time.monotonic()
        if now - last >= interval:
            completed = job.plan.completed
            if completed != shown:
                shown, last = completed, now
                on_bytes(completed)
        frontier = job.plan.frontier
        hashed = job.digest.hashed
        if frontier - hashed >= HASH_LAG or frontier < hashed:
            await anyio.to_thread.run_sync(job.digest.catch_up, frontier)
