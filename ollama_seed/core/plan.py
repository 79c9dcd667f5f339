"""Part planning and resume state for one blob. Pure: no I/O, table-tested.

A blob is cut into fixed-size *pieces* (1 MiB to 64 MiB, about 512 per blob). Each piece
records how many bytes from its start are on disk, so a resumed pull fetches only the byte
ranges still missing, to the byte.

Workers do not fetch single pieces; they *claim runs* of consecutive untouched pieces,
one HTTP range request per run (guided self-scheduling): a claim takes about
``remaining / (2 * connections)`` pieces, so early requests are long and few, and the
last ones are short, which keeps every connection busy to the end. A worker that finds
nothing left to claim *steals* the back half of the longest run still in flight, so one
slow connection cannot hold the pull at 99%.

Claims always start at the lowest untouched piece, so the contiguous on-disk prefix (the
:attr:`BlobPlan.frontier`) advances steadily; the hasher follows it, and verification
needs no second read of the blob once the download ends.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MIB", "BlobPlan", "Run", "Scheduler", "choose_piece_size"]

MIB = 1024 * 1024
MIN_PIECE = 1 * MIB
MAX_PIECE = 64 * MIB
TARGET_PIECES = 512
STATE_MAGIC = b"OSEEDST2"  # version 1 had no boot id nor watermark: such a state starts the blob over
BOOT_OFFSET = 8 + 24 + 32
SYNCED_OFFSET = BOOT_OFFSET + 16
STATE_HEADER = SYNCED_OFFSET + 8
NO_BOOT = bytes(16)  # the boot cannot be told: counters are trusted only up to the watermark


def choose_piece_size(size: int) -> int:
    """Piece size for a blob of *size* bytes: about 512 pieces, whole MiB, 1 MiB to 64 MiB."""
    per = math.ceil(size / TARGET_PIECES) if size > 0 else 0
    per = math.ceil(per / MIB) * MIB
    return min(MAX_PIECE, max(MIN_PIECE, per))


@dataclass(slots=True)
class BlobPlan:
    """How much of each piece of one blob is on disk."""

    size: int
    piece_size: int
    done: list[int] = field(default_factory=list)
    synced: int = 0  # the prefix made durable (fdatasync returned) before the state said so
    clamped: bool = False  # from_state cut the counters back to *synced* (another boot wrote them)

    @classmethod
    def new(cls, size: int, piece_size: int | None = None) -> BlobPlan:
        ps = piece_size or choose_piece_size(size)
        return cls(size, ps, [0] * math.ceil(size / ps) if size > 0 else [])

    @property
    def pieces(self) -> int:
        return len(self.done)

    def bounds(self, i: int) -> tuple[int, int]:
        """Start (inclusive) and end (exclusive) byte offsets of piece *i*."""
        start = i * self.piece_size
        return start, min(start + self.piece_size, self.size)

    def piece_len(self, i: int) -> int:
        start, end = self.bounds(i)
        return end - start

    def is_done(self, i: int) -> bool:
        return self.done[i] == self.piece_len(i)

    @property
    def completed(self) -> int:
        return sum(self.done)

    @property
    def complete(self) -> bool:
        return self.completed == self.size

    @property
    def frontier(self) -> int:
        """Length of the contiguous prefix of the blob that is on disk."""
        pos, ps = 0, self.piece_size
        for d in self.done:  # every piece but the last is piece_size long (asked ~40 times a second)
            pos += d
            if d != ps:
                break
        return min(pos, self.size)

    # -- resume state codec ------------------------------------------------------------
    # The state file is binary and fixed-size so the transfer code can map it into memory
    # and update a piece's counter in place after every write: a process killed at any
    # instant leaves a state that is at most one write behind the data file.
    #   magic(8) | size u64 | piece_size u64 | pieces u64 | digest 32 bytes
    #   | boot id 16 bytes | synced u64 | done u64 * pieces
    # A kill keeps every write (the kernel holds them), a power cut only what was synced: the
    # counters are stored with no sync, so they may reach the disk before the data they count.
    # *boot id* says which boot wrote them; *synced* is the prefix of the blob whose data was
    # made durable (fdatasync returned) before it was stored. In another boot only *synced* counts.
    def state_bytes(self, digest_hex: str, boot_id: bytes = NO_BOOT) -> bytes:
        head = STATE_MAGIC + struct.pack("<QQQ", self.size, self.piece_size, self.pieces)
        tail = boot_id.ljust(16, b"\0")[:16] + struct.pack("<Q", self.synced)
        return head + bytes.fromhex(digest_hex) + tail + struct.pack(f"<{self.pieces}Q", *self.done)

    @staticmethod
    def done_offset(i: int) -> int:
        """Byte offset of piece *i*'s counter in the state file."""
        return STATE_HEADER + 8 * i

    @classmethod
    def from_state(cls, raw: bytes, *, digest_hex: str, size: int, boot_id: bytes | None = None) -> BlobPlan | None:
        """Decode a state file; None unless it is intact and describes exactly this blob.

        A resume state is never trusted beyond what it can prove: any doubt means
        starting the blob over. Given *boot_id* (this boot's), a state another boot wrote
        (or whose boot cannot be told) keeps exactly what its watermark says was made
        durable: the counters become the synced prefix (``clamped``).
        """
        if len(raw) < STATE_HEADER or raw[:8] != STATE_MAGIC:
            return None
        got_size, ps, pieces = struct.unpack_from("<QQQ", raw, 8)
        if got_size != size or raw[32:BOOT_OFFSET] != bytes.fromhex(digest_hex) or ps == 0:
            return None
        # check the counts against the file's length before allocating anything they imply
        if pieces != (math.ceil(size / ps) if size > 0 else 0) or len(raw) != STATE_HEADER + 8 * pieces:
            return None
        (synced,) = struct.unpack_from("<Q", raw, SYNCED_OFFSET)
        if synced > size:
            return None
        plan = cls.new(size, ps)
        done = list(struct.unpack_from(f"<{pieces}Q", raw, STATE_HEADER))
        if any(d > plan.piece_len(i) for i, d in enumerate(done)):
            return None
        plan.done, plan.synced = done, synced
        boot = raw[BOOT_OFFSET:SYNCED_OFFSET]
        if boot_id is not None and (boot != boot_id or boot == NO_BOOT):
            plan.clamp(synced)
        return plan

    def clamp(self, durable: int) -> None:
        """Count exactly the first *durable* bytes of the blob as on disk: what a power cut kept.
        The counters themselves are not trusted either way (stored with no sync, they may be ahead
        of the data or, on another page of the state, behind the watermark)."""
        for i, d in enumerate(self.done):
            start = i * self.piece_size
            keep = min(self.piece_len(i), max(0, durable - start))
            if keep != d:
                self.done[i] = keep
                self.clamped = True


@dataclass(slots=True, eq=False)
class Run:
    """A claim on pieces ``[first, end)``; *end* shrinks if another worker steals the tail."""

    first: int
    end: int
    pos: int  # absolute offset of the next byte this run writes

    def limit(self, plan: BlobPlan) -> int:
        """Absolute offset where this run stops."""
        return plan.bounds(self.end - 1)[1]


class Scheduler:
    """Hands out runs of pieces to workers and records the bytes they write.

    Thread-safe: runs may be read by worker threads (see ``wire/direct``) while the event loop
    claims, steals and releases; every change to the runs and the plan happens under
    :attr:`lock`.
    """

    def __init__(self, plan: BlobPlan, connections: int, on_record: Callable[[int, int], None] | None = None) -> None:
        self.plan = plan
        self.on_record = on_record
        self.connections = max(1, connections)
        # claims take remaining / (divisor x connections) pieces; 2 keeps the hashed prefix close
        # behind the download (benchmarks/schedsim compares other values)
        self.divisor = 2.0
        self.active: list[Run] = []
        self._claimed = [False] * plan.pieces
        self.lock = threading.Lock()
        self.received = 0  # bytes recorded: what arrived from the network into this plan

    def _untouched(self, i: int) -> bool:
        return not self._claimed[i] and self.plan.done[i] == 0

    def claim(self, limit: int | None = None) -> Run | None:
        """The next run to fetch (at most *limit* pieces), or None when every byte is on disk or in flight."""
        with self.lock:
            return self._claim(limit)

    def retire(self) -> None:
        """One connection fewer will claim from now on (later claims are sized for the rest)."""
        with self.lock:
            self.connections = max(1, self.connections - 1)

    def unfinished_lengths(self) -> list[int]:
        """Per piece: its length, 0 when it is done (one pass, no call per piece: claims run often)."""
        plan = self.plan
        lengths = [plan.piece_size] * plan.pieces
        if lengths:
            lengths[-1] = plan.size - (plan.pieces - 1) * plan.piece_size
        return [0 if d == n else n for d, n in zip(plan.done, lengths, strict=True)]

    def _claim(self, limit: int | None = None) -> Run | None:
        plan = self.plan
        claimed = self._claimed
        free = [i for i, n in enumerate(self.unfinished_lengths()) if n and not claimed[i]]
        if not free:
            return self._steal(limit)
        first = free[0]
        want = max(1, math.ceil(len(free) / (self.divisor * self.connections)))
        if limit is not None:
            want = max(1, min(want, limit))
        end = first + 1
        while end < plan.pieces and end - first < want and self._untouched(end):
            end += 1
        for i in range(first, end):
            self._claimed[i] = True
        run = Run(first, end, plan.bounds(first)[0] + plan.done[first])
        self.active.append(run)
        return run

    def _steal(self, limit: int | None = None) -> Run | None:
        plan = self.plan
        best: Run | None = None
        best_free = 0
        for run in self.active:
            current = min(run.pos // plan.piece_size, run.end - 1) if plan.piece_size else run.first
            untouched = run.end - (current + 1)
            if untouched > best_free:
                best, best_free = run, untouched
        if best is None or best_free < 2:
            return None
        new_first = best.end - best_free // 2
        if limit is not None:
            new_first = max(new_first, best.end - max(1, limit))
        run = Run(new_first, best.end, plan.bounds(new_first)[0])
        best.end = new_first
        self.active.append(run)
        return run

    def record(self, run: Run, nbytes: int) -> None:
        """*nbytes* were written at ``run.pos``; they never reach past ``run.limit``."""
        with self.lock:
            self._record(run, nbytes)

    def record_upto(self, run: Run, nbytes: int) -> int:
        """Record the first of *nbytes* written at ``run.pos`` that are still within the run
        (a steal may have shortened it since they were read); returns how many."""
        with self.lock:
            take = min(nbytes, run.limit(self.plan) - run.pos)
            if take > 0:
                self._record(run, take)
            return max(take, 0)

    def _record(self, run: Run, nbytes: int) -> None:
        plan = self.plan
        pos, left = run.pos, nbytes
        while left > 0:
            i = pos // plan.piece_size
            start, end = plan.bounds(i)
            take = min(left, end - pos)
            if pos != start + plan.done[i]:
                raise ValueError(f"write at {pos} is not at piece {i}'s end {start + plan.done[i]}")
            plan.done[i] += take
            self.received += take
            if self.on_record is not None:
                self.on_record(i, plan.done[i])
            pos += take
            left -= take
        run.pos = pos

    def release(self, run: Run) -> None:
        """The run ended (finished, stolen down, or failed): its unfinished pieces become claimable."""
        with self.lock:
            if run in self.active:
                self.active.remove(run)
            for i in range(run.first, run.end):
                self._claimed[i] = False

    def finished(self, run: Run) -> bool:
        return run.pos >= run.limit(self.plan)
