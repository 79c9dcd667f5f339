"""Exploring a workload's crash states: record it, generate the states both persistence models
allow, replay each in memory, keep one state per distinct tree, and check them all.

Checks 1-3 and what a resume would trust (check 4) run on every distinct state, in memory. The
commands (running it again for check 4, and check 5) run on a copy written to disk, once per
group of states they cannot tell apart (the same blobs whole or not, the same manifests, ...);
the CI bound runs them on at most some groups per workload, those with damage first.

A finding seen in a state the ``somc`` model allows is **practical** (it shows on ext4 and XFS); one
seen only under ``weak`` is **portable** (the POSIX minimum, btrfs). On recorded macOS, where a
drive's cache reorders whatever was not fully synced, a finding is practical there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .checks import (
    Problem,
    again_check,
    coarse_key,
    command_checks,
    damage,
    materialize,
    resume_claims,
    static_checks,
    store_key,
)
from .model import MODELS, CrashState, Fs, Model, Unit, crash_points, latest_inodes, replay, states, units_of
from .places import place
from .workloads import Workload, record

__all__ = ["Bound", "Finding", "Report", "explore"]


@dataclass(frozen=True)
class Bound:
    """How far to explore: units lost per state, data units kept in part (``fine``: three ways,
    else one), whether to run the commands, and on how many groups of states at most."""

    max_omit: int = 1
    partials: bool = True
    fine: bool = False
    dynamic: bool = True
    max_groups: int | None = None

    @classmethod
    def ci(cls) -> Bound:
        return cls(max_omit=1, partials=False, max_groups=60)

    @classmethod
    def full(cls) -> Bound:
        return cls(max_omit=2, partials=True, fine=True)


@dataclass
class Finding:
    workload: str
    place: str
    check: str
    message: str
    example: str
    models: set[str] = field(default_factory=set)
    count: int = 0
    platform: str = "linux"

    @property
    def label(self) -> str:
        """``practical``: it shows on ext4 and XFS (the ``somc`` model allows the state), or on
        macOS, where a drive's cache reorders whatever was not fully synced; ``portable``: only
        under the weak model (the POSIX minimum, btrfs)."""
        if self.platform.startswith("macos"):
            return "practical (macOS)"
        return "practical" if "somc" in self.models else "portable"

    def line(self) -> str:
        return (
            f"[{self.workload}] {self.place}, check {self.check} ({self.label}, {self.count} state(s)): "
            f"{self.message}\n    e.g. {self.example}"
        )


@dataclass
class Report:
    workload: str
    units: int = 0
    ops: int = 0
    crash_points: int = 0
    generated: Counter[str] = field(default_factory=Counter)
    distinct: Counter[str] = field(default_factory=Counter)
    checked: int = 0
    groups: tuple[int, int] = (0, 0)
    ran: tuple[int, int] = (0, 0)
    static_seconds: float = 0.0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    error: str = ""

    @property
    def places(self) -> set[str]:
        return {f.place for f in self.findings}

    def summary(self) -> str:
        per = ", ".join(f"{m}: {self.generated[m]} states ({self.distinct[m]} distinct)" for m in MODELS)
        return (
            f"{self.workload}: {self.ops} operations, {self.units} units, {self.crash_points} crash points; {per}; "
            f"{self.checked} distinct checked in memory ({self.static_seconds:.1f} s); run again on "
            f"{self.ran[0]} of {self.groups[0]} groups, commands on {self.ran[1]} of {self.groups[1]}; "
            f"{self.seconds:.1f} s; {len(self.findings)} finding(s)"
        )


def scratch_dir() -> str | None:
    """Where states are written: a RAM file system when there is one with room (states are
    written, copied and removed by the hundred, and the code under test fsyncs), else the
    system's temporary directory."""
    shm = Path("/dev/shm")
    try:
        st = os.statvfs(shm)
    except OSError:
        return None
    return str(shm) if st.f_bavail * st.f_frsize >= 512 << 20 and os.access(shm, os.W_OK) else None


def _generate(units: list[Unit], start: Fs, bound: Bound, report: Report) -> dict[str, tuple[CrashState, set[str]]]:
    seen: dict[str, tuple[CrashState, set[str]]] = {}
    model: Model
    for model in MODELS:
        keys: set[str] = set()
        for st in states(units, model, max_omit=bound.max_omit, partials=bound.partials, fine=bound.fine):
            report.generated[model] += 1
            fs, done = replay(units, start, st)
            key = fs.key(done)
            keys.add(key)
            if key in seen:
                seen[key][1].add(model)
            else:
                seen[key] = (st, {model})
        report.distinct[model] = len(keys)
    return seen


@dataclass
class _Group:
    state: CrashState
    models: set[str] = field(default_factory=set)
    damaged: bool = False


def _chosen(groups: dict[str, _Group], cap: int | None) -> list[_Group]:
    """All groups, or at most *cap*: those whose state holds damage first, then a fixed spread."""
    order = sorted(groups.items(), key=lambda kv: (not kv[1].damaged, hashlib.sha256(kv[0].encode()).digest()))
    return [g for _, g in (order if cap is None else order[:cap])]


def explore(w: Workload, bound: Bound, work: Path | None = None) -> Report:
    """Record *w* and check all its crash states within *bound*."""
    started = time.monotonic()
    report = Report(w.name)
    own = work is None
    base = Path(tempfile.mkdtemp(prefix=f"crash-{w.name}-", dir=scratch_dir())) if work is None else work
    try:
        r = record(w, base / "record")
        units = units_of(r.rec.ops)
        report.ops, report.units = len(r.rec.ops), len(units)
        report.crash_points = len(set(crash_points(units)))
        if r.rec.bypasses:
            report.error = "calls that bypassed the platform: " + "; ".join(r.rec.bypasses[:3])
        start = Fs.initial(r.rec, units, r.contents, r.modes)
        seen = _generate(units, start, bound, report)
        found: dict[tuple[str, str, str], Finding] = {}

        def note(problems: list[Problem], st: CrashState, models: set[str]) -> None:
            for p in problems:
                where = place(w, p, st, units)
                f = found.setdefault(
                    (where, p.check, p.message),
                    Finding(w.name, where, p.check, p.message, st.describe(units), platform=w.platform),
                )
                f.models |= models
                f.count += 1

        again: dict[str, _Group] = {}
        commands: dict[str, _Group] = {}
        for st, models in seen.values():
            fs, done = replay(units, start, st)
            claims, summary = resume_claims(r, fs, latest_inodes(units, st.k, r.rec.initial))
            problems = static_checks(r, fs, done) + claims
            note(problems, st, models)
            report.checked += 1
            damaged = bool(problems) or damage(r, fs, summary)
            for groups, key in ((again, coarse_key(r, fs, summary)), (commands, store_key(r, fs))):
                g = groups.setdefault(key, _Group(st))
                g.models |= models
                g.damaged |= damaged
        report.static_seconds = time.monotonic() - started
        report.groups = (len(again), len(commands))
        if bound.dynamic:
            cap = bound.max_groups if w.ci_dynamic or bound.max_groups is None else 0
            ran = []
            for kind, groups in (("again", again), ("commands", commands)):
                chosen = _chosen(groups, cap)
                ran.append(len(chosen))
                for n, g in enumerate(chosen):
                    fs, _ = replay(units, start, g.state)
                    scratch = base / f"{kind}-{n}"
                    try:
                        roots = materialize(r, fs, scratch / "state")
                        check = again_check if kind == "again" else command_checks
                        note(check(r, roots, scratch), g.state, g.models)
                    finally:
                        shutil.rmtree(scratch, ignore_errors=True)
            report.ran = (ran[0], ran[1])
        report.findings = sorted(found.values(), key=lambda f: (f.place, f.check, f.message))
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report
