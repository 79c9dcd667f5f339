"""Part planning, scheduling and resume state: pure tables."""

from __future__ import annotations

import itertools

import pytest

from ollama_seed.core.plan import MIB, BlobPlan, Scheduler, choose_piece_size

HEX = "0f" * 32


@pytest.mark.parametrize(
    ("size", "piece"),
    [
        (0, MIB),
        (1, MIB),
        (MIB, MIB),
        (512 * MIB, MIB),
        (512 * MIB + 1, 2 * MIB),
        (4 * 1024 * MIB, 8 * MIB),
        (40 * 10**9, 64 * MIB),
    ],
)
def test_piece_size(size: int, piece: int) -> None:
    assert choose_piece_size(size) == piece


@pytest.mark.parametrize(("size", "pieces", "last"), [(0, 0, 0), (1, 1, 1), (MIB, 1, MIB), (3 * MIB + 7, 4, 7)])
def test_plan_bounds(size: int, pieces: int, last: int) -> None:
    plan = BlobPlan.new(size, MIB)
    assert plan.pieces == pieces
    if pieces:
        assert plan.piece_len(pieces - 1) == last
        assert plan.bounds(pieces - 1)[1] == size
    assert plan.complete == (size == 0)


def drain(sched: Scheduler, step: int = 100_000) -> list[tuple[int, int]]:
    """Claim and fully fetch runs one at a time; the byte ranges requested."""
    ranges = []
    while (run := sched.claim()) is not None:
        end = run.limit(sched.plan)
        ranges.append((run.pos, end))
        while run.pos < run.limit(sched.plan):
            sched.record(run, min(step, run.limit(sched.plan) - run.pos))
        sched.release(run)
    return ranges


def test_runs_cover_the_blob_exactly_once() -> None:
    plan = BlobPlan.new(100 * MIB + 3, MIB)
    ranges = drain(Scheduler(plan, connections=4))
    assert ranges[0][0] == 0
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start == end
    assert ranges[-1][1] == plan.size
    assert plan.complete and plan.frontier == plan.size


def test_claims_shrink_toward_the_end() -> None:
    plan = BlobPlan.new(256 * MIB, MIB)
    sched = Scheduler(plan, connections=4)
    sizes: list[int] = []
    while sum(sizes) < 256:
        run = sched.claim()
        assert run is not None
        sizes.append(run.end - run.first)
    assert sizes[0] == 32  # 256 pieces / (2 * 4)
    assert sizes[-1] == 1
    assert sizes == sorted(sizes, reverse=True)
    assert sum(sizes) == 256
    # every piece is now in flight: the next claim steals the back half of the longest run
    stolen = sched.claim()
    assert stolen is not None and (stolen.first, stolen.end) == (17, 32)  # 31 untouched: 15 stolen


def test_steal_takes_the_back_half_of_the_longest_run() -> None:
    plan = BlobPlan.new(16 * MIB, MIB)
    sched = Scheduler(plan, connections=1)
    a = sched.claim()
    assert a is not None and (a.first, a.end) == (0, 8)
    b = sched.claim()
    assert b is not None and (b.first, b.end) == (8, 12)
    sched.record(a, MIB + MIB // 2)  # a is inside piece 1
    rest = [sched.claim() for _ in range(4)]
    assert [(r.first, r.end) for r in rest if r] == [(12, 14), (14, 15), (15, 16), (5, 8)]
    assert a.end == 5  # pieces 2..4 untouched are left to a; 5..7 were stolen
    assert a.limit(plan) == 5 * MIB
    # the victim stops at its new limit and never writes into the stolen range
    sched.record(a, a.limit(plan) - a.pos)
    assert sched.finished(a)


def test_no_steal_when_little_is_left() -> None:
    plan = BlobPlan.new(2 * MIB, MIB)
    sched = Scheduler(plan, connections=1)
    run = sched.claim()
    assert run is not None and (run.first, run.end) == (0, 1)
    run2 = sched.claim()
    assert run2 is not None and (run2.first, run2.end) == (1, 2)
    assert sched.claim() is None


def test_failed_run_is_claimable_again_from_where_it_stopped() -> None:
    plan = BlobPlan.new(4 * MIB, MIB)
    sched = Scheduler(plan, connections=1)
    run = sched.claim()
    assert run is not None
    sched.record(run, MIB + 10)
    sched.release(run)
    again = sched.claim()
    assert again is not None
    assert again.pos == MIB + 10
    assert again.first == 1


def test_record_refuses_a_gap() -> None:
    plan = BlobPlan.new(4 * MIB, MIB)
    sched = Scheduler(plan, connections=1)
    run = sched.claim()
    assert run is not None
    run.pos += 5
    with pytest.raises(ValueError, match="not at piece"):
        sched.record(run, 1)


def test_frontier_stops_at_first_gap() -> None:
    plan = BlobPlan.new(4 * MIB, MIB)
    plan.done = [MIB, 100, MIB, 0]
    assert plan.frontier == MIB + 100
    assert plan.completed == 2 * MIB + 100


def test_on_record_hook_sees_every_counter() -> None:
    seen: dict[int, int] = {}
    plan = BlobPlan.new(3 * MIB, MIB)
    drain(Scheduler(plan, 2, on_record=seen.__setitem__), step=700_000)
    assert seen == {0: MIB, 1: MIB, 2: MIB}


def test_state_round_trip() -> None:
    plan = BlobPlan.new(5 * MIB + 1, MIB)
    plan.done = [MIB, 3, 0, MIB, 1, 0]
    raw = plan.state_bytes(HEX)
    back = BlobPlan.from_state(raw, digest_hex=HEX, size=plan.size)
    assert back is not None and back.done == plan.done and back.piece_size == MIB
    # the in-place counter offset matches the encoding
    off = BlobPlan.done_offset(3)
    assert int.from_bytes(raw[off : off + 8], "little") == MIB


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw[:-1],  # truncated
        lambda raw: b"XXXXXXXX" + raw[8:],  # wrong magic
        lambda raw: raw[:40] + bytes([raw[40] ^ 1]) + raw[41:],  # another digest
        lambda raw: raw[:80] + (3 * MIB + 1).to_bytes(8, "little") + raw[88:],  # a watermark past the end
        lambda raw: b"OSEEDST1" + raw[8:64] + raw[88:],  # the first format (no boot, no watermark)
        lambda raw: raw + b"\0" * 8,  # extra piece
        lambda raw: raw[:-8] + (10 * MIB).to_bytes(8, "little"),  # a counter beyond its piece
        lambda raw: b"",
    ],
)
def test_corrupt_state_is_never_trusted(mutate: object) -> None:
    plan = BlobPlan.new(3 * MIB, MIB)
    plan.done = [MIB, 5, 0]
    raw = mutate(plan.state_bytes(HEX))  # type: ignore[operator]
    assert BlobPlan.from_state(raw, digest_hex=HEX, size=plan.size) is None


def test_a_state_from_another_boot_keeps_only_its_watermark() -> None:
    """Counters are stored with no sync: after a power cut only the synced prefix is sure."""
    plan = BlobPlan.new(5 * MIB, MIB)
    plan.done = [MIB, MIB, MIB, 7, 0]
    plan.synced = MIB + 100
    raw = plan.state_bytes(HEX, b"boot-1".ljust(16, b"\0"))
    same = BlobPlan.from_state(raw, digest_hex=HEX, size=plan.size, boot_id=b"boot-1".ljust(16, b"\0"))
    assert same is not None and same.done == plan.done and not same.clamped  # a kill: every write kept
    other = BlobPlan.from_state(raw, digest_hex=HEX, size=plan.size, boot_id=b"boot-2".ljust(16, b"\0"))
    assert other is not None and other.done == [MIB, 100, 0, 0, 0] and other.clamped
    assert other.synced == MIB + 100 and other.frontier == MIB + 100
    unknown = plan.state_bytes(HEX)  # a system whose boots cannot be told apart
    told = BlobPlan.from_state(unknown, digest_hex=HEX, size=plan.size, boot_id=bytes(16))
    assert told is not None and told.completed == MIB + 100


def test_state_for_another_size_is_ignored() -> None:
    plan = BlobPlan.new(3 * MIB, MIB)
    assert BlobPlan.from_state(plan.state_bytes(HEX), digest_hex=HEX, size=3 * MIB + 1) is None


@pytest.mark.parametrize(
    ("divisor", "connections", "pieces", "first_claims"),
    [
        (2.0, 16, 512, [16, 16, 15, 15]),  # the default: remaining / (2 x 16)
        (1.0, 16, 512, [32, 30, 29, 27]),  # remaining / 16: about half the requests
        (2.0, 4, 10, [2, 1, 1, 1]),
        (1.0, 4, 10, [3, 2, 2, 1]),
    ],
)
def test_claim_size_follows_the_divisor(divisor: float, connections: int, pieces: int, first_claims: list[int]) -> None:
    sched = Scheduler(BlobPlan.new(pieces * MIB, MIB), connections)
    sched.divisor = divisor
    runs = [sched.claim() for _ in first_claims]
    assert [r.end - r.first for r in runs if r is not None] == first_claims
    assert [r.first for r in runs if r is not None] == list(itertools.accumulate([0, *first_claims[:-1]]))
