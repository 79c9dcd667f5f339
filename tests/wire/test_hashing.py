"""wire.hashing.PrefixHash: the sha256 of a staging file's prefix, hashed inline and by catching up."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_seed.core.errors import IntegrityError
from ollama_seed.wire import hashing
from ollama_seed.wire.hashing import PrefixHash

KIB = 1024


@pytest.fixture
def small_window(monkeypatch: pytest.MonkeyPatch) -> int:
    window = 64 * KIB  # a multiple of mmap.ALLOCATIONGRANULARITY everywhere
    monkeypatch.setattr(hashing, "WINDOW", window)
    monkeypatch.setattr(hashing, "HASH_STEP", 24 * KIB)  # steps that straddle window edges
    return window


@contextlib.contextmanager
def _hashing(tmp_path: Path, data: bytes, size: int | None = None, label: str = "blob") -> Iterator[PrefixHash]:
    """A PrefixHash over a staging file holding *data* (declared *size* bytes long); unmapped and
    closed after."""
    path = tmp_path / "blob.data"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    h = PrefixHash(fd, len(data) if size is None else size, label)
    try:
        yield h
    finally:
        h.close()
        assert h._view is None and h._map is None  # nothing mapped once closed (Windows could not rename it)
        os.close(fd)


@pytest.mark.parametrize("size", [0, 1, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 300 * KIB + 7])
def test_catching_up_in_uneven_frontiers_gives_the_sha256_of_the_file(
    tmp_path: Path, small_window: int, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    with _hashing(tmp_path, data) as h:
        rng = random.Random(7)
        frontier = 0
        while frontier < size:
            frontier = min(size, frontier + rng.randint(1, 50 * KIB))
            h.catch_up(frontier)
            assert h.hashed == frontier
        h.catch_up(size)
        assert h.hexdigest() == hashlib.sha256(data).hexdigest()
        assert h.inline_bytes == 0


def test_inline_hashes_only_at_the_front_and_catch_up_fills_the_rest(tmp_path: Path, small_window: int) -> None:
    size = 200 * KIB
    data = random.Random(1).randbytes(size)
    view = memoryview(data)
    with _hashing(tmp_path, data) as h:
        h.inline(0, view[: 10 * KIB])  # at the front: hashed now
        h.inline(50 * KIB, view[50 * KIB : 60 * KIB])  # ahead of the hash: left for the catch-up
        assert (h.hashed, h.inline_bytes) == (10 * KIB, 10 * KIB)
        h.catch_up(100 * KIB)
        h.inline(100 * KIB, view[100 * KIB : 150 * KIB])  # the front again, after a catch-up
        h.inline(90 * KIB, view[90 * KIB : 100 * KIB])  # behind the hash: ignored
        assert (h.hashed, h.inline_bytes) == (150 * KIB, 60 * KIB)
        h.catch_up(size)
        assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_frontier_behind_the_hash_starts_over(tmp_path: Path, small_window: int) -> None:
    """A server that ignored Range: the data restarts from byte 0, and so does the hash."""
    data = random.Random(2).randbytes(100 * KIB)
    with _hashing(tmp_path, data) as h:
        h.catch_up(80 * KIB)
        h.catch_up(10 * KIB)
        assert h.hashed == 10 * KIB
        h.catch_up(len(data))
        assert h.hexdigest() == hashlib.sha256(data).hexdigest()


def test_only_one_window_is_mapped_at_a_time(tmp_path: Path, small_window: int) -> None:
    size = 5 * small_window + 123
    with _hashing(tmp_path, random.Random(3).randbytes(size)) as h:
        for frontier in range(small_window // 2, size, small_window // 2):
            h.catch_up(frontier)
            assert h._view is not None and len(h._view) <= small_window
            assert h._window <= h.hashed <= h._window + len(h._view)


def test_a_file_shorter_than_the_blob_is_an_integrity_error_not_a_crash(tmp_path: Path, small_window: int) -> None:
    """Mapping past the end of a file would raise SIGBUS on access: it is read instead, and found short."""
    with _hashing(tmp_path, random.Random(4).randbytes(100 * KIB), size=200 * KIB, label="sha256:abc") as h:
        with pytest.raises(IntegrityError, match=r"sha256:abc.*shorter than expected"):
            h.catch_up(200 * KIB)
        assert h.hashed == 100 * KIB
