"""The persistence models on hand-written logs: which states each allows, and that the replay
builds them (so the explorer's checks judge states a file system can really leave)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from .model import CrashState, Fs, Unit, replay, states, units_of
from .record import Op, Recorder

pytestmark = pytest.mark.crash


def _log(*ops: tuple[str, dict[str, object]]) -> list[Op]:
    return [Op(i, kind, **fields) for i, (kind, fields) in enumerate(ops)]  # type: ignore[arg-type]


def _install(*, fsync: bool = True, dsync: bool = True) -> list[Op]:
    """A blob written to staging, synced, renamed into blobs/, the directory synced, announced."""
    ops: list[tuple[str, dict[str, object]]] = [
        ("creat", {"path": "0:s/x", "ino": 1, "mode": 0o600}),
        ("write", {"ino": 1, "off": 0, "data": b"payload", "size": 0}),
    ]
    if fsync:
        ops.append(("fsync", {"ino": 1}))
    ops.append(("rename", {"path": "0:s/x", "dst": "0:b/x"}))
    if dsync:
        ops.append(("fsync_dir", {"path": "0:b"}))
    ops.append(("stdout", {"data": b"done"}))
    return _log(*ops)


def _start(units: list[Unit]) -> Fs:
    rec = Recorder([Path("/nonexistent-crash-root")])
    rec.initial_dirs |= {"0:s", "0:b"}
    return Fs.initial(rec, units, {}, {})


def _outcomes(ops: list[Op], model: str) -> set[tuple[bytes | None, bool]]:
    """(bytes at b/x, told done) of every state the model allows."""
    units = units_of(ops)
    start = _start(units)
    out = set()
    for st in states(units, model, max_omit=2):  # type: ignore[arg-type]
        fs, done = replay(units, start, st)
        out.add((fs.read("0:b/x"), bool(done)))
    return out


@pytest.mark.parametrize("model", ["weak", "somc"])
def test_a_synced_blob_renamed_into_place_never_shows_without_its_bytes(model: str) -> None:
    outcomes = _outcomes(_install(), model)
    assert (b"payload", True) in outcomes
    assert all(data in (None, b"payload") for data, _ in outcomes)
    assert (None, True) not in outcomes  # the directory sync made the rename durable before "done"


def test_without_the_file_sync_the_name_can_hold_zeros_or_nothing() -> None:
    outcomes = _outcomes(_install(fsync=False), "weak")
    assert (bytes(7), True) in outcomes  # the size reached the disk, the data did not
    assert (b"", True) in outcomes  # neither did


def test_without_the_directory_sync_done_can_be_lost_under_both_models() -> None:
    assert (None, True) in _outcomes(_install(dsync=False), "weak")
    assert (None, True) in _outcomes(_install(dsync=False), "somc")


def test_strictly_ordered_metadata_keeps_renames_in_order() -> None:
    """Two renames, no sync: weak may keep the second without the first, somc may not."""
    ops = _log(
        ("creat", {"path": "0:s/a", "ino": 1}),
        ("creat", {"path": "0:s/c", "ino": 2}),
        ("rename", {"path": "0:s/a", "dst": "0:b/a"}),
        ("rename", {"path": "0:s/c", "dst": "0:b/c"}),
    )
    units = units_of(ops)
    start = _start(units)

    def shapes(model: str) -> set[tuple[bool, bool]]:
        found = set()
        for st in states(units, model, max_omit=2):  # type: ignore[arg-type]
            fs, _ = replay(units, start, st)
            found.add(("0:b/a" in fs.names, "0:b/c" in fs.names))
        return found

    assert (False, True) in shapes("weak")
    assert (False, True) not in shapes("somc")
    assert (True, False) in shapes("somc")


def test_a_barrier_orders_without_making_durable() -> None:
    """macOS F_BARRIERFSYNC: the rename after it cannot land without the data before it, but a
    crash right after the barrier may still lose the data (nothing after it landed)."""
    ops = _log(
        ("creat", {"path": "0:s/x", "ino": 1}),
        ("write", {"ino": 1, "off": 0, "data": b"payload", "size": 0}),
        ("fsync", {"ino": 1, "strength": "barrier"}),
        ("rename", {"path": "0:s/x", "dst": "0:b/x"}),
    )
    units = units_of(ops)
    start = _start(units)
    seen = set()
    for st in states(units, "weak", max_omit=2):
        fs, _ = replay(units, start, st)
        seen.add((st.k, fs.read("0:b/x"), fs.read("0:s/x")))
    assert not any(data not in (None, b"payload") for _, data, _ in seen)
    assert any(k == 3 and staged == bytes(7) for k, _, staged in seen)  # unit 3 is the barrier


def test_a_none_strength_sync_orders_nothing() -> None:
    ops = [dataclasses.replace(o, strength="none") if o.kind.startswith("fsync") else o for o in _install()]
    assert (bytes(7), True) in _outcomes(ops, "weak")


def test_writes_between_crash_points_are_coalesced_and_can_be_kept_in_part() -> None:
    ops = _log(
        ("creat", {"path": "0:s/x", "ino": 1}),
        ("write", {"ino": 1, "off": 0, "data": b"abc", "size": 0}),
        ("write", {"ino": 1, "off": 3, "data": b"def", "size": 3}),
        ("creat", {"path": "0:s/y", "ino": 2}),  # a crash point before the sync
        ("fsync", {"ino": 1}),
    )
    units = units_of(ops)
    assert [u.kind for u in units] == ["link", "size", "data", "link", "sync"]
    start = _start(units)
    data = {replay(units, start, st)[0].read("0:s/x") for st in states(units, "weak", fine=True)}
    assert {b"", bytes(6), b"ab" + bytes(4), b"abcdef"} <= data  # nothing, the size only, a third kept, all
    fs, _ = replay(units, start, CrashState(3, frozenset({2})))  # crash after the second creat, data lost
    assert fs.read("0:s/x") == bytes(6)
