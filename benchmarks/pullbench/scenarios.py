"""The scenarios, and running one: every tool on the same link, interleaved, ``runs`` times.

Each measurement gets a fresh shaping proxy process (fresh per-connection buckets, clean byte
counts); the proxy's CPU use during the measurement is recorded, so a saturated proxy shows up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollama_seed.core.plan import BlobPlan

from . import tools
from .cgroup import CpuQuota
from .procs import ProxyProcess, ShapingOptions
from .rig import SeededModel

CONNECTIONS = 16  # ollama-seed's default per blob, and aria2c -x16 -s16
PROXY_BUSY = 0.85  # proxy CPU / wall above this: the proxy may be what limits the run
MIB = 1 << 20


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    shaping: ShapingOptions | None  # None: straight to the registry, no proxy
    resume: bool = False
    cpu_quota: float | None = None  # every tool runs in a cgroup limited to this many CPUs (0.5 = 500m)
    durable: bool = False  # also time dd conv=fsync of the blob's size: with curl, the durable-download limit

    @property
    def capped(self) -> bool:
        return self.shaping is not None and bool(self.shaping.per_conn_mbps or self.shaping.total_mbps)

    def cap_MBps(self, connections: int) -> float | None:
        """The most the link lets *connections* connections move, in MB/s; None if uncapped."""
        s = self.shaping
        if s is None or not self.capped:
            return None
        caps = [s.per_conn_mbps * connections] if s.per_conn_mbps else []
        if s.total_mbps:
            caps.append(s.total_mbps)
        return min(caps) / 8

    def describe(self) -> dict[str, Any]:
        s = self.shaping
        return {
            "name": self.name,
            "title": self.title,
            "via_proxy": s is not None,
            "cpu_quota": self.cpu_quota,
            "link": s.describe() if s else "direct to the registry over loopback (no proxy)",
            "shaping": vars(s) if s else None,
            "resume": self.resume,
            "cap_MBps_16_connections": self.cap_MBps(CONNECTIONS),
            "cap_MBps_1_connection": self.cap_MBps(1),
        }


def _cap50(**kw: Any) -> ShapingOptions:
    return ShapingOptions(per_conn_mbps=50, **kw)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("loopback", "uncapped loopback", None, durable=True),
        Scenario(
            "quota500",
            "loopback, each tool under a 500m CPU quota (a Kubernetes init container)",
            None,
            cpu_quota=0.5,
            durable=True,
        ),
        Scenario("cap50", "50 Mbit/s per connection", _cap50()),
        Scenario("cap50-total400", "50 Mbit/s per connection, 400 Mbit/s total", _cap50(total_mbps=400)),
        Scenario("latency50", "50 ms latency (and 50 Mbit/s per connection)", _cap50(latency_ms=50)),
        Scenario(
            "drop16",
            "every connection cut after 16 MiB (and 50 Mbit/s per connection)",
            _cap50(drop_after_bytes=16 * MIB),
        ),
        Scenario("resume", "kill -9 at half, run again (50 Mbit/s per connection)", _cap50(), resume=True),
    ]
}


@dataclass
class Context:
    workdir: Path
    registry_url: str
    model: SeededModel
    verify: bool = True
    curl_max: int = 64 * MIB
    log: Callable[[str], None] = print
    results: list[dict[str, Any]] = field(default_factory=list)


def run_scenario(ctx: Context, sc: Scenario, runs: int, tool_names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {**sc.describe(), "measurements": []}
    for run in range(runs):
        downloaders = [t for t in tool_names if t != "dd"]  # dd (no network) is a reference, run last
        k = run % max(1, len(downloaders))
        order = downloaders[k:] + downloaders[:k] + (["dd"] if sc.durable and "dd" in tool_names else [])
        for tool in order:
            if sc.resume and tool == "curl" and ctx.model.blob_size > ctx.curl_max:
                continue
            m = _resume_one(ctx, sc, tool) if sc.resume else _measure_one(ctx, sc, tool)
            m["run"] = run
            out["measurements"].append(m)
            ctx.log(_line(sc, m))
    if sc.resume and "curl" in tool_names and ctx.model.blob_size > ctx.curl_max:
        out["notes"] = [
            (
                "curl skipped: one capped connection would take too long; curl -C - resumes at the byte "
                "anyway (one stream, append to the file)"
            )
        ]
    return out


def _line(sc: Scenario, m: dict[str, Any]) -> str:
    if sc.resume:
        return (
            f"  {sc.name:<15} {m['tool']:<12} killed at {m.get('killed_at_fraction', 0):.2f}, "
            f"transferred {m.get('transferred_ratio') or 0:.3f} x blob, ok={m['ok']}"
        )
    rate = f"{m['MBps']:8.1f} MB/s" if m.get("MBps") else "  failed   "
    return (
        f"  {sc.name:<15} {m['tool']:<12} {rate} {m['seconds']:7.2f} s  rss {m['peak_rss_mb']:6.1f} MB  "
        f"cpu {m['cpu_s']:6.2f} s{'  ' + '; '.join(m['notes']) if m['notes'] else ''}"
    )


def _workspace(ctx: Context, tool: str) -> tuple[Path, Path]:
    base = ctx.workdir / "out" / tool
    tools.wipe(base)
    base.mkdir(parents=True)
    return base, ctx.workdir / "home"


def _invoke(
    ctx: Context, tool: str, target: tools.Target, base: Path, home: Path, sc: Scenario, **kw: Any
) -> tools.Outcome:
    if tool == "dd":
        return tools.dd_fsync(target.blob_size, base / "blob", home, **kw)
    if tool == "ollama-seed":
        return tools.ollama_seed(target, base / "models", home, verify=ctx.verify, source=ctx.model.source, **kw)
    if tool == "aria2c":
        return tools.aria2c(target, base, home, verify=ctx.verify, **kw)
    if tool == "curl":
        return tools.curl(
            target,
            base / "blob",
            home,
            nbytes=None if sc.resume or not sc.capped else ctx.curl_max,
            verify=ctx.verify,
            source=ctx.model.source,
            **kw,
        )
    raise ValueError(f"unknown tool {tool!r}")


def _measure_one(ctx: Context, sc: Scenario, tool: str) -> dict[str, Any]:
    base, home = _workspace(ctx, tool)
    proxy = ProxyProcess(ctx.registry_url, sc.shaping).start() if sc.shaping else None
    quota = CpuQuota(sc.cpu_quota) if sc.cpu_quota else None
    kw: dict[str, Any] = {"preexec": quota.enter} if quota else {}
    try:
        target = ctx.model.target(proxy.url if proxy else ctx.registry_url)
        if proxy:
            proxy.mark()
        outcome = _invoke(ctx, tool, target, base, home, sc, **kw)
        cpu = proxy.cpu_since_mark() if proxy else 0.0
        m = outcome.as_dict()
        if quota:
            m["quota"] = {"cpus": quota.cpus, "cgroup": quota.describe(), **quota.throttled()}
        if tool == "ollama-seed" and outcome.ok:
            # The same command again, with everything present: interpreter start-up, imports, the
            # manifest request and the checks. Context for the wall time, not subtracted anywhere.
            noop = tools.ollama_seed(target, base / "models", home, verify=False, source=None, **kw)
            m["noop_seconds"] = round(noop.proc.seconds, 4) if noop.ok else None
        if proxy:
            stats = proxy.stop()
            m["proxy"] = _proxy_summary(stats, cpu, outcome.proc.seconds)
            if m["proxy"]["busy"]:
                m["notes"].append(f"proxy busy ({m['proxy']['cpu_util']:.0%} of a core): the proxy may limit this")
        return m
    finally:
        if proxy:
            proxy.stop()
        if quota:
            quota.close()
        tools.wipe(base)


def _proxy_summary(stats: dict[str, Any], cpu: float, seconds: float) -> dict[str, Any]:
    util = cpu / seconds if seconds > 0 else 0.0
    phase, blob_bytes = stats.get("blob_phase_s"), stats.get("blob_bytes") or 0
    link = round(blob_bytes / phase / 1e6, 2) if phase else None
    return {
        "bytes_down": stats.get("bytes_down"),
        "connections": stats.get("connections"),
        "link_phase_s": phase,
        "link_MBps": link,
        "requests": stats.get("requests"),
        "faults": stats.get("faults", {}),
        "cpu_s": round(cpu, 3),
        "cpu_util": round(util, 3),
        "busy": util > PROXY_BUSY,
    }


def _staged_fraction(models: Path, model: SeededModel) -> float:
    state = models / ".ollama-seed" / "staging" / (model.blob_digest.replace(":", "-") + ".state")
    try:
        plan = BlobPlan.from_state(state.read_bytes(), digest_hex=model.blob_digest[7:], size=model.blob_size)
    except OSError:
        return 0.0
    return plan.completed / model.blob_size if plan else 0.0


def _resume_one(ctx: Context, sc: Scenario, tool: str) -> dict[str, Any]:
    """Kill -9 at about half, run again on the same link; total bytes through the proxy / blob size."""
    assert sc.shaping is not None
    base, home = _workspace(ctx, tool)
    blob_path = f"/v2/{ctx.model.repo}/blobs/{ctx.model.blob_digest}"
    rate = (sc.cap_MBps(1 if tool == "curl" else CONNECTIONS) or 100.0) * 1e6
    proxies: list[ProxyProcess] = []
    try:
        first = ProxyProcess(ctx.registry_url, sc.shaping).start()
        proxies.append(first)
        port = first.url.rsplit(":", 1)[1]
        target = ctx.model.target(first.url)
        at_kill_stats: dict[str, Any] = {}
        deadline = time.monotonic() + 0.25 + ctx.model.blob_size / 2 / rate

        def half() -> bool:
            # ollama-seed: its resume state; the others have none to read: the time half the blob
            # takes at the link's cap. The proxy's count is read at that instant, before the kill:
            # what it counts afterwards, relaying into connections whose client is gone, never
            # reached the client (seen: +9 % of the blob in some runs, while the client's kernel
            # had received 51 %: tcp_info bytes_received of its sockets at the kill).
            due = (
                _staged_fraction(base / "models", ctx.model) >= 0.5
                if tool == "ollama-seed"
                else time.monotonic() >= deadline
            )
            if due:
                at_kill_stats.update(first.snapshot())
            return due

        killed = _invoke(ctx, tool, target, base, home, sc, kill_when=half)
        at_kill = _staged_fraction(base / "models", ctx.model) if tool == "ollama-seed" else None
        after = first.stop()
        s1 = at_kill_stats or after
        second = ProxyProcess(ctx.registry_url, sc.shaping, listen=f"127.0.0.1:{port}").start()
        proxies.append(second)
        second.mark()
        extra = {"resume": True} if tool != "ollama-seed" else {}
        rerun = _invoke(ctx, tool, ctx.model.target(second.url), base, home, sc, **extra)
        cpu = second.cpu_since_mark()
        s2 = second.stop()
        b1 = int(s1.get("per_path", {}).get(blob_path, 0))
        b1_after = int(after.get("per_path", {}).get(blob_path, 0))
        b2 = int(s2.get("per_path", {}).get(blob_path, 0))
        m = rerun.as_dict()
        m.update(
            {
                "first_killed": killed.proc.killed,
                "first_seconds": round(killed.proc.seconds, 3),
                "first_peak_rss_mb": round(killed.proc.peak_rss_bytes / 1e6, 1),
                "killed_at_fraction": round(at_kill if at_kill is not None else b1 / ctx.model.blob_size, 3),
                "blob_bytes_first": b1,
                "blob_bytes_first_counted_after_kill": b1_after,
                "blob_bytes_second": b2,
                "transferred_ratio": round((b1 + b2) / ctx.model.blob_size, 4),
                "proxy": _proxy_summary(s2, cpu, rerun.proc.seconds),
            }
        )
        if not killed.proc.killed:
            m["ok"] = False
            m["notes"].append("the first run ended before it could be killed")
        return m
    finally:
        for p in proxies:
            p.stop()
        tools.wipe(base)
