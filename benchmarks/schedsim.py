"""A discrete-time simulation of the claim scheduler (``core.plan.Scheduler``), with hashing.

``python -m benchmarks.schedsim [--size 512M] [--divisor 2]``: 16 connections, each capped at a
rate, each request waiting one round trip before its body flows, and a hasher that follows the
contiguous on-disk prefix at a fixed rate. It prints, per link, the share of the aggregate cap
reached when the last byte lands ("link") and when the hash is done ("wall"), and the number of
requests. It drives the real Scheduler (claims, steals, records), so a change to the claim rule
can be judged in seconds before a 10-minute benchmark run. It models neither TCP nor CPU
contention: on loopback real pulls are slower than it says.

Session 2 used it to predict that halving the requests on slow links would lift latency50 from
93.5 % to 95.3 % of the cap (measured: link phase 93.2 -> 95.1 MB/s) and cost loopback, where
the hash is the bottleneck (see docs/performance.md, "tried and not adopted").
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ollama_seed.core.plan import BlobPlan, Run, Scheduler


@dataclass(frozen=True)
class Link:
    name: str
    rate: float  # bytes/s per connection
    rtt: float  # seconds from a request to its first body byte
    hash_rate: float  # bytes/s the hasher gets


LINKS = [
    Link("cap50", 6.25e6, 0.002, 1.2e9),
    Link("latency50", 6.25e6, 0.05, 1.2e9),
    Link("loopback (2 busy cores)", 60e6, 0.01, 0.9e9),
]


def simulate(size: int, link: Link, *, divisor: float = 2.0, connections: int = 16) -> tuple[float, float, int]:
    """(wall share, link share, requests) for one blob of *size* bytes over *link*."""
    plan = BlobPlan.new(size)
    sched = Scheduler(plan, connections)
    sched.divisor = divisor
    dt = 0.002 if link.rate < 1e7 else 0.0005
    step = int(link.rate * dt)
    state: list[tuple[str, float, Run | None]] = [("idle", 0.0, None)] * connections
    requests, t, hashed, last_byte = 0, 0.0, 0.0, 0.0

    def start(i: int, now: float) -> None:
        nonlocal requests
        run = sched.claim()
        if run is None:
            state[i] = ("done", now, None)
            return
        requests += 1
        state[i] = ("wait", now + link.rtt, run)

    for i in range(connections):
        start(i, 0.0)
    while any(s[0] != "done" for s in state) or hashed < size:
        for i, (kind, until, run) in enumerate(state):
            if kind == "wait" and t >= until:
                state[i] = kind, until, run = ("flow", until, run)
            if kind == "flow" and run is not None:
                n = min(step, run.limit(plan) - run.pos)
                if n > 0:
                    sched.record(run, n)
                    last_byte = t + dt
                if n <= 0 or sched.finished(run):
                    sched.release(run)
                    start(i, t + dt)
        hashed = min(plan.frontier, hashed + link.hash_rate * dt)
        t += dt
    ideal = size / (connections * link.rate)
    return ideal / t, ideal / last_byte, requests


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.schedsim", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="512M", help="blob size, e.g. 512M, 4G (default 512M)")
    ap.add_argument("--divisor", type=float, action="append", help="claim divisor(s) to compare (default 2)")
    a = ap.parse_args(argv)
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    size = int(float(a.size[:-1]) * units[a.size[-1].upper()]) if a.size[-1].upper() in units else int(a.size)
    for link in LINKS:
        for divisor in a.divisor or [2.0]:
            wall, on_link, requests = simulate(size, link, divisor=divisor)
            print(
                f"{link.name:24s} divisor {divisor:<4g} wall {wall * 100:6.2f} %  link {on_link * 100:6.2f} %"
                f"  requests {requests}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
