"""Crash states: which subsets of a recorded workload's operations a power cut can leave on disk.

The log of :mod:`.record` becomes a list of :class:`Unit` (ALICE's micro-operations, a little
coarser): a directory entry created, removed or moved, a directory made or removed, a file's size
or mode changed, data written (the writes to one file between two crash points coalesced into
one unit), a sync, or a message to the user. A crash state is the set of units kept at a crash
point, replayed onto the files that were there before the workload (:class:`Fs`).

Two persistence models decide which sets are possible:

- ``weak`` (ALICE's default): anything not made durable may be lost, in any order. An fsync of a
  file makes its earlier data, size and (fsync, not fdatasync) mode changes durable; an fsync of
  a directory makes its earlier entry changes durable. A ``barrier`` sync (macOS
  ``F_BARRIERFSYNC``) makes them durable only before anything later; a ``none`` sync (macOS
  ``fsync`` without ``F_FULLFSYNC``) or a failed one makes nothing durable.
- ``somc`` (strictly ordered metadata, as ext4 and XFS give): metadata changes (names,
  directories, sizes, modes) persist in program order and any sync makes every earlier one
  durable; data still persists in any order unless its file was synced.

Structural dependencies hold in both: a rename needs its source to exist, and a directory is removed
only once emptied. An entry made in a directory whose own entry was lost is not reachable: the
replay drops it (a synced directory is durable, not reachable).

A state is a crash point (after a metadata change, a sync or a message: B3's bound) and at most
*max_omit* units left out with everything that depends on them; a data unit can also be kept in
part (its first third or two thirds, or its first 4 KiB block).
"""

from __future__ import annotations

import hashlib
import itertools
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from .record import Op, Recorder

__all__ = [
    "META",
    "MODELS",
    "CrashState",
    "Fs",
    "Model",
    "Unit",
    "latest_inodes",
    "parent",
    "replay",
    "states",
    "units_of",
]

UnitKind = Literal["link", "unlink", "rename", "mkdir", "rmdir", "size", "attr", "data", "sync", "dsync", "stdout"]
META = frozenset({"link", "unlink", "rename", "mkdir", "rmdir", "size", "attr"})
ENTRY = frozenset({"link", "unlink", "rename", "mkdir", "rmdir"})
Model = Literal["weak", "somc"]
MODELS: tuple[Model, ...] = ("weak", "somc")


def parent(path: str) -> str:
    """``"0:a/b"`` -> ``"0:a"``; ``"0:a"`` -> ``"0:"`` (the root)."""
    root, _, rel = path.partition(":")
    return f"{root}:{posixpath.dirname(rel)}"


@dataclass(frozen=True, slots=True)
class Unit:
    idx: int
    kind: UnitKind
    seq: int  # position in the log (the first op merged into it)
    path: str = ""
    dst: str = ""
    ino: int = -1
    size: int = 0
    mode: int = 0
    extents: tuple[tuple[int, bytes], ...] = ()
    strength: str = "full"
    note: str = ""
    actor: str = ""

    @property
    def nbytes(self) -> int:
        return sum(len(b) for _, b in self.extents)

    def dirs(self) -> tuple[str, ...]:
        """The directories whose entries this unit changes."""
        if self.kind == "rename":
            return (parent(self.path), parent(self.dst))
        if self.kind in ENTRY:
            return (parent(self.path),)
        return ()

    def describe(self) -> str:
        who = f"[{self.actor}] " if self.actor else ""
        if self.kind == "data":
            what = "counters" if self.note == "counter" else "data"
            return f"{who}{what} of inode {self.ino} ({self.nbytes} bytes in {len(self.extents)} writes)"
        if self.kind in ("size", "attr"):
            return f"{who}{self.kind} of inode {self.ino} -> {self.size if self.kind == 'size' else oct(self.mode)}"
        if self.kind in ("sync", "dsync"):
            return f"{who}{self.kind} {self.path or self.ino} ({self.strength})"
        if self.kind == "rename":
            return f"{who}rename {self.path} -> {self.dst}"
        if self.kind == "stdout":
            return f"{who}told the user: {self.note}"
        return f"{who}{self.kind} {self.path}"


def units_of(ops: list[Op]) -> list[Unit]:
    """The log as units: writes to one file coalesced between two crash points, and an extending
    write's size change split out before its data (ALICE: an append is garbage, then data)."""
    out: list[Unit] = []
    pending: dict[tuple[int, str], list[Op]] = {}

    def add(kind: UnitKind, seq: int, **kw: object) -> None:
        out.append(Unit(len(out), kind, seq, **kw))  # type: ignore[arg-type]

    def flush() -> None:
        for (ino, note), writes in pending.items():
            before = writes[0].size
            end = max(w.off + len(w.data) for w in writes)
            if end > before and note != "counter":
                add("size", writes[0].seq, ino=ino, size=end, actor=writes[0].actor)
            extents = tuple((w.off, w.data) for w in writes)
            add("data", writes[0].seq, ino=ino, extents=extents, note=note, actor=writes[0].actor)
        pending.clear()

    for op in ops:
        if op.kind == "write":
            pending.setdefault((op.ino, op.note), []).append(op)
            continue
        flush()
        if op.kind == "creat":
            add("link", op.seq, path=op.path, ino=op.ino, mode=op.mode, actor=op.actor)
        elif op.kind == "trunc":
            add("size", op.seq, ino=op.ino, size=op.size, actor=op.actor)
        elif op.kind in ("rename", "unlink", "mkdir", "rmdir"):
            add(op.kind, op.seq, path=op.path, dst=op.dst, mode=op.mode, actor=op.actor)
        elif op.kind == "attr":
            add("attr", op.seq, ino=op.ino, mode=op.mode, path=op.path, actor=op.actor)
        elif op.kind == "fsync":
            add("sync", op.seq, ino=op.ino, strength=op.strength, actor=op.actor)
        elif op.kind == "fsync_dir":
            add("dsync", op.seq, path=op.path, strength=op.strength, actor=op.actor)
        elif op.kind == "stdout":
            add("stdout", op.seq, note=op.data.decode(), actor=op.actor)
    flush()
    return out


# -- the file system a state is replayed on ------------------------------------------------------

Version = tuple[tuple[int, int], ...]  # the units applied to an inode: (unit index, bytes kept or -1)


class Contents:
    """File contents by (inode, version), built from the shortest known prefix and kept: the
    states of one workload share almost all of them, so each is computed (and hashed) once."""

    def __init__(self, units: list[Unit], initial: dict[int, bytes]) -> None:
        self.units = units
        self.initial = initial
        self._data: dict[tuple[int, Version], bytes] = {}
        self._sha: dict[tuple[int, Version], bytes] = {}

    def get(self, ino: int, version: Version) -> bytes:
        key = (ino, version)
        found = self._data.get(key)
        if found is not None:
            return found
        buf = bytearray(self.get(ino, version[:-1]) if version else self.initial.get(ino, b""))
        if version:
            idx, keep = version[-1]
            _apply_bytes(buf, self.units[idx], None if keep < 0 else keep)
        data = bytes(buf)
        self._data[key] = data
        return data

    def sha(self, ino: int, version: Version) -> bytes:
        key = (ino, version)
        if key not in self._sha:
            self._sha[key] = hashlib.sha256(self.get(ino, version)).digest()
        return self._sha[key]


def _apply_bytes(buf: bytearray, u: Unit, keep: int | None) -> None:
    if u.kind == "size":
        if u.size < len(buf):
            del buf[u.size :]
        else:
            buf.extend(bytes(u.size - len(buf)))
    elif u.kind == "data":
        budget = u.nbytes if keep is None else keep
        for off, chunk in u.extents:
            if budget <= 0:
                break
            piece = chunk[:budget]
            budget -= len(piece)
            end = min(off + len(piece), len(buf))  # data past the file's size is not seen
            if end > off:
                buf[off:end] = piece[: end - off]


@dataclass
class Fs:
    """Directories, names, modes and each inode's version: enough of a file system to replay
    units on. Contents come from a shared :class:`Contents`."""

    dirs: set[str]
    names: dict[str, int]
    versions: dict[int, Version]
    modes: dict[int, int]
    contents: Contents

    @classmethod
    def initial(cls, rec: Recorder, units: list[Unit], contents: dict[int, bytes], modes: dict[int, int]) -> Fs:
        return cls(
            set(rec.initial_dirs) | {f"{i}:" for i in range(len(rec.roots))},
            dict(rec.initial),
            dict.fromkeys(contents, ()),
            dict(modes),
            Contents(units, contents),
        )

    def copy(self) -> Fs:
        return Fs(set(self.dirs), dict(self.names), dict(self.versions), dict(self.modes), self.contents)

    def apply(self, u: Unit, keep: int | None = None) -> None:
        """Replay *u*; a data unit only up to *keep* bytes when given."""
        if u.kind == "link":
            if parent(u.path) in self.dirs:
                self.names[u.path] = u.ino
                self.versions.setdefault(u.ino, ())
                self.modes.setdefault(u.ino, u.mode)
        elif u.kind == "unlink":
            self.names.pop(u.path, None)
        elif u.kind == "rename":
            if u.path in self.names:
                ino = self.names.pop(u.path)
                if parent(u.dst) in self.dirs:  # else it went into a directory that is not reachable
                    self.names[u.dst] = ino
        elif u.kind == "mkdir":
            if parent(u.path) in self.dirs:
                self.dirs.add(u.path)
        elif u.kind == "rmdir":
            prefix = u.path.rstrip("/") + "/"
            if not any(p.startswith(prefix) for p in (*self.names, *self.dirs)):
                self.dirs.discard(u.path)
        elif u.kind in ("size", "data"):
            self.versions[u.ino] = (*self.versions.get(u.ino, ()), (u.idx, -1 if keep is None else keep))
        elif u.kind == "attr":
            self.modes[u.ino] = u.mode

    def read(self, path: str) -> bytes | None:
        ino = self.names.get(path)
        return None if ino is None else self.contents.get(ino, self.versions.get(ino, ()))

    def sha(self, path: str) -> bytes:
        ino = self.names[path]
        return self.contents.sha(ino, self.versions.get(ino, ()))

    def files(self) -> dict[str, bytes]:
        return {p: self.contents.get(i, self.versions.get(i, ())) for p, i in self.names.items()}

    def key(self, done: frozenset[str]) -> str:
        h = hashlib.sha256()
        for p in sorted(self.names):
            ino = self.names[p]
            h.update(f"{p}\0{ino}\0{self.versions.get(ino, ())}\0{self.modes.get(ino, 0):o}\0".encode())
        for d in sorted(self.dirs):
            h.update(b"D" + d.encode() + b"\0")
        for m in sorted(done):
            h.update(b"S" + m.encode() + b"\0")
        return h.hexdigest()


# -- dependencies and durability -----------------------------------------------------------------


@dataclass
class Graph:
    """Who depends on whom, and what each sync makes durable, for one model."""

    units: list[Unit]
    model: Model
    deps: list[set[int]] = field(default_factory=list)
    covers: list[set[int]] = field(default_factory=list)
    rdeps: list[set[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        made_name: dict[str, int] = {}
        emptied: dict[str, list[int]] = {}
        last_meta = -1
        for u in self.units:
            d: set[int] = set()
            cov: set[int] = set()
            if u.kind == "rename" and u.path in made_name:
                d.add(made_name[u.path])
            if u.kind == "rmdir":
                d.update(emptied.get(u.path, []))
            if self.model == "somc" and u.kind in META and last_meta >= 0:
                d.add(last_meta)
            if u.kind in ("sync", "dsync") and u.strength not in ("none", "failed"):
                for v in self.units[: u.idx]:
                    if (self.model == "somc" and v.kind in META) or self._syncs(u, v):
                        cov.add(v.idx)
            self.deps.append(d)
            self.covers.append(cov)
            if u.kind == "link":
                made_name[u.path] = u.idx
            if u.kind == "rename":
                made_name[u.dst] = u.idx
                emptied.setdefault(parent(u.path), []).append(u.idx)
            if u.kind in ("unlink", "rmdir"):
                emptied.setdefault(parent(u.path), []).append(u.idx)
            if u.kind in META:
                last_meta = u.idx
        self.rdeps = [set() for _ in self.units]
        for i, d in enumerate(self.deps):
            for j in d:
                self.rdeps[j].add(i)

    @staticmethod
    def _syncs(u: Unit, v: Unit) -> bool:
        """Whether sync *u* makes the earlier unit *v* durable: a file's data and size (and, by
        fsync rather than fdatasync, its mode), a directory's entries."""
        if u.kind == "sync":
            return v.ino == u.ino and (v.kind in ("data", "size") or (v.kind == "attr" and u.strength != "data"))
        return u.path in v.dirs()

    def closure_down(self, start: Iterable[int]) -> set[int]:
        """*start* and everything it depends on (what must persist for it to)."""
        seen, todo = set(), list(start)
        while todo:
            i = todo.pop()
            if i not in seen:
                seen.add(i)
                todo.extend(self.deps[i])
        return seen

    def closure_up(self, start: Iterable[int], limit: int) -> set[int]:
        """*start* and everything up to unit *limit* that depends on it (lost with it)."""
        seen, todo = set(), list(start)
        while todo:
            i = todo.pop()
            if i not in seen and i <= limit:
                seen.add(i)
                todo.extend(self.rdeps[i])
        return seen

    def forced(self, k: int, omitted: set[int]) -> set[int]:
        """What the syncs up to unit *k* made durable, given what is left out (a barrier binds
        only if something after it persisted)."""
        out: set[int] = set()
        for u in self.units[: k + 1]:
            if u.kind not in ("sync", "dsync") or u.strength in ("none", "failed"):
                continue
            if u.strength == "barrier" and not any(
                v.idx not in omitted and v.kind not in ("sync", "dsync", "stdout")
                for v in self.units[u.idx + 1 : k + 1]
            ):
                continue
            out |= self.covers[u.idx]
        return self.closure_down(out)


# -- the states ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashState:
    """Units ``0..k`` less *omitted*, with *partial* data units kept only in part (bytes kept)."""

    k: int
    omitted: frozenset[int]
    partial: tuple[tuple[int, int], ...] = ()

    def describe(self, units: list[Unit]) -> str:
        at = units[self.k].describe() if self.k < len(units) else "the end"
        parts = [f"crash after #{self.k} ({at})"]
        roots = sorted(self.omitted)
        if roots:
            parts.append("lost: " + "; ".join(f"#{i} {units[i].describe()}" for i in roots[:4]))
            if len(roots) > 4:
                parts[-1] += f"; and {len(roots) - 4} more"
        for i, n in self.partial:
            parts.append(f"#{i} kept in part ({n} of {units[i].nbytes} bytes)")
        return ", ".join(parts)


def crash_points(units: list[Unit]) -> list[int]:
    return [u.idx for u in units if u.kind != "data"] + ([len(units) - 1] if units else [])


def states(
    units: list[Unit], model: Model, *, max_omit: int = 1, partials: bool = True, fine: bool = False
) -> Iterator[CrashState]:
    """Every crash state of *units* under *model* within the bound (duplicates possible: the
    caller deduplicates by the replayed tree)."""
    g = Graph(units, model)
    for k in sorted(set(crash_points(units))):
        forced = g.forced(k, set())
        yield CrashState(k, frozenset())
        candidates = [
            u.idx for u in units[: k + 1] if u.idx not in forced and u.kind not in ("sync", "dsync", "stdout")
        ]
        for n in range(1, max_omit + 1):
            for roots in itertools.combinations(candidates, n):
                lost = g.closure_up(roots, k)
                if lost & g.forced(k, lost):
                    continue
                yield CrashState(k, frozenset(lost))
        if not partials:
            continue
        for i in candidates:
            u = units[i]
            if u.kind != "data" or u.nbytes < 2:
                continue
            keeps = {u.nbytes // 2} if not fine else {u.nbytes // 3, 2 * u.nbytes // 3, min(4096, u.nbytes - 1)}
            lost = g.closure_up([i], k) - {i}
            if lost & g.forced(k, lost):
                continue
            for keep in sorted(x for x in keeps if 0 < x < u.nbytes):
                yield CrashState(k, frozenset(lost), ((i, keep),))


def replay(units: list[Unit], start: Fs, state: CrashState) -> tuple[Fs, frozenset[str]]:
    """The files *state* leaves, and the messages the user saw before the crash."""
    fs = start.copy()
    part = dict(state.partial)
    done: set[str] = set()
    for u in units[: state.k + 1]:
        if u.kind == "stdout":
            done.add(u.note)
            continue
        if u.idx in state.omitted:
            continue
        fs.apply(u, keep=part.get(u.idx))
    return fs, frozenset(done)


def latest_inodes(units: list[Unit], k: int, initial: dict[str, int]) -> dict[str, int]:
    """The inode each path was last given by units ``0..k`` (had nothing been lost)."""
    out = dict(initial)
    for u in units[: k + 1]:
        if u.kind == "link":
            out[u.path] = u.ino
        elif u.kind == "rename" and u.path in out:
            out[u.dst] = out.pop(u.path)
        elif u.kind == "unlink":
            out.pop(u.path, None)
    return out
