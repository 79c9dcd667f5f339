"""wire.ramp and store.cpulimit: which connections a blob keeps, and how many CPUs a container may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollama_seed.core.plan import BlobPlan, Scheduler
from ollama_seed.store.cpulimit import _quota_cpus, parse_cfs, parse_cpu_max
from ollama_seed.wire.ramp import BASE, FAST_CONNECTION, Ramp


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("50000 100000", 0.5),
        ("200000 100000\n", 2.0),
        ("max 100000", None),
        ("", None),
        ("5 0", None),
        ("garbage", None),
    ],
)
def test_cpu_max(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [
        ("50000", "100000", 0.5),
        ("-1", "100000", None),
        ("150000\n", "100000\n", 1.5),
        ("", "", None),
        ("1000", "0", None),
    ],
)
def test_cfs_quota(quota: str, period: str, cpus: float | None) -> None:
    assert parse_cfs(quota, period) == cpus


def test_the_tightest_quota_on_the_cgroup_path_wins_v1(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu,cpuacct"
    (cpu / "kubepods" / "pod1" / "ctr").mkdir(parents=True)
    for d, quota in (
        (cpu, "-1"),
        (cpu / "kubepods", "-1"),
        (cpu / "kubepods" / "pod1", "100000"),
        (cpu / "kubepods" / "pod1" / "ctr", "50000"),
    ):
        (d / "cpu.cfs_quota_us").write_text(quota)
        (d / "cpu.cfs_period_us").write_text("100000")
    proc = "12:memory:/kubepods/pod1/ctr\n4:cpu,cpuacct:/kubepods/pod1/ctr\n0::/\n"
    assert _quota_cpus(proc, tmp_path) == 0.5


def test_a_namespaced_v2_cgroup_reads_the_mount_itself(tmp_path: Path) -> None:
    """Inside a container with its own cgroup namespace, /proc/self/cgroup says "0::/"."""
    (tmp_path / "cpu.max").write_text("25000 100000\n")
    assert _quota_cpus("0::/\n", tmp_path) == 0.25
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _quota_cpus("0::/\n", tmp_path) is None
    assert _quota_cpus("0::/gone/elsewhere\n", tmp_path) is None  # a path outside the namespace: the mount's


class _Clocks:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def advance(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu


@pytest.mark.parametrize(
    ("rate", "wall", "cpu", "cpus", "keep"),
    [
        (6.25e6, 0.2, 0.06, 2.0, True),  # 50 Mbit/s per connection: every connection is needed
        (FAST_CONNECTION * 3, 0.02, 0.02, 2.0, False),  # loopback, LAN: a few connections do as well
        (20e6, 0.3, 0.15, 0.5, False),  # a 500m quota, fully used: more connections cannot help
        (20e6, 0.3, 0.05, 0.5, True),  # a quota with room, and a slow connection
        (None, 0.3, 0.01, 2.0, True),  # nothing measured (the piece needed retries): keep it
    ],
)
def test_a_probe_stays_only_where_the_link_needs_it(
    rate: float | None, wall: float, cpu: float, cpus: float, keep: bool
) -> None:
    clocks = _Clocks()
    ramp = Ramp(16, cpus=cpus, clock=lambda: clocks.wall, cpu_clock=lambda: clocks.cpu)
    assert (ramp.base, ramp.probes) == (BASE, 16 - BASE)
    clocks.advance(wall, cpu)
    kept, why = ramp.keep(rate)
    assert kept is keep, why
    assert ramp.left == (0 if keep else 1)


def test_few_connections_are_all_base() -> None:
    ramp = Ramp(3, cpus=2.0)
    assert (ramp.base, ramp.probes) == (3, 0)


def test_a_limited_claim_takes_at_most_that_many_pieces_and_retire_resizes_claims() -> None:
    plan = BlobPlan.new(512 << 20, 1 << 20)
    sched = Scheduler(plan, 16)
    probe = sched.claim(1)
    assert probe is not None and probe.end - probe.first == 1
    whole = sched.claim()
    assert whole is not None and whole.end - whole.first == 16  # 511 free / (2 x 16), rounded up
    for _ in range(12):
        sched.retire()
    assert sched.connections == 4
    later = sched.claim()
    assert later is not None and later.end - later.first == 62  # 495 free / (2 x 4)
    for _ in range(20):
        sched.retire()
    assert sched.connections == 1  # never below one


def test_a_limited_steal_takes_at_most_that_many_pieces() -> None:
    plan = BlobPlan.new(64 << 20, 1 << 20)
    sched = Scheduler(plan, 1)
    first, second = sched.claim(), sched.claim()  # claims halve what is left: 32 pieces, then 16, ...
    assert first is not None and second is not None and (first.first, first.end) == (0, 32)
    while sched.claim() is not None and any(not c for c in sched._claimed):
        pass
    assert all(sched._claimed)  # nothing free: the next claim steals
    longest = max(sched.active, key=lambda r: r.end - r.first)
    end = longest.end
    stolen = sched.claim(1)
    assert stolen is not None and (stolen.first, stolen.end) == (end - 1, end) and longest.end == end - 1
