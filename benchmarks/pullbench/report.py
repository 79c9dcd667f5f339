"""Summaries, target checks, the Markdown table and the SVG plot of one run (pure: dicts in, text out)."""

from __future__ import annotations

import statistics
from html import escape
from typing import Any

from .machine import describe_short

TOOLS = ("ollama-seed", "aria2c", "curl", "dd")
COLORS = {"ollama-seed": "#2b6cb0", "aria2c": "#dd6b20", "curl": "#718096", "dd": "#2f855a"}
GIB = 1 << 30


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(scenario: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per tool: median / min / max MB/s over successful runs, seconds, peak RSS, CPU, failures."""
    out: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        ms = [m for m in scenario["measurements"] if m["tool"] == tool]
        if not ms:
            continue
        good = [m for m in ms if m["ok"]]
        rates = [m["MBps"] for m in good if m.get("MBps")]
        s: dict[str, Any] = {
            "runs": len(ms),
            "failed": len(ms) - len(good),
            "MBps_median": _r(_median(rates)),
            "MBps_min": _r(min(rates) if rates else None),
            "MBps_max": _r(max(rates) if rates else None),
            "seconds_median": _r(_median([m["seconds"] for m in good]), 3),
            "peak_rss_mb_max": max(m["peak_rss_mb"] for m in ms),
            "cpu_s_median": _r(_median([m["cpu_s"] for m in good]), 3),
            "user_s_median": _r(_median([m.get("user_s", 0.0) for m in good]), 3),
            "sys_s_median": _r(_median([m.get("sys_s", 0.0) for m in good]), 3),
            "cpu_s_per_GiB_median": _r(_median([m["cpu_s_per_GiB"] for m in good if m.get("cpu_s_per_GiB")]), 3),
            "noop_seconds_median": _r(_median([m["noop_seconds"] for m in good if m.get("noop_seconds")]), 3),
            "link_MBps_median": _r(
                _median([m["proxy"]["link_MBps"] for m in good if (m.get("proxy") or {}).get("link_MBps")])
            ),
            "notes": sorted({n for m in ms for n in m["notes"]}),
        }
        if scenario.get("resume"):
            ratios = [m["transferred_ratio"] for m in ms if m.get("transferred_ratio") is not None]
            s["transferred_ratio_max"] = max(ratios) if ratios else None
            s["transferred_ratio_median"] = _r(_median(ratios), 4)
            s["killed_at_fraction_median"] = _r(_median([m["killed_at_fraction"] for m in ms]), 3)
        out[tool] = s
    return out


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def limits_summary(limits: dict[str, list[float]]) -> dict[str, float | None]:
    return {k: _r(_median(v), 3) for k, v in limits.items()}


def durable_limit(summary: dict[str, dict[str, Any]]) -> tuple[float, str] | None:
    """The durable-download limit of a scenario, in MB/s, and which side sets it: the slower of
    curl to a file (the network and the page cache) and dd conv=fsync of the same bytes (the disk)."""
    curl, dd = (summary.get(t, {}).get("MBps_median") for t in ("curl", "dd"))
    if not curl or not dd:
        return None
    return (curl, "curl") if curl <= dd else (dd, "dd conv=fsync")


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the numbers that decide it (None: not measured in this run)."""
    sc = {s["name"]: s for s in result["scenarios"]}
    targets: list[dict[str, Any]] = []

    def add(name: str, passed: bool | None, detail: str) -> None:
        targets.append({"target": name, "passed": passed, "detail": detail})

    if "cap50" in sc:
        s = sc["cap50"]["summary"]
        ours, aria = s.get("ollama-seed", {}).get("MBps_median"), s.get("aria2c", {}).get("MBps_median")
        cap = sc["cap50"]["cap_MBps_16_connections"]
        link = s.get("ollama-seed", {}).get("link_MBps_median")
        aria_link = s.get("aria2c", {}).get("link_MBps_median")
        if ours is not None and cap:
            add(
                "50 Mbit/s per connection: >= 95% of the aggregate cap (wall time, start-up included)",
                ours >= 0.95 * cap,
                f"{ours:.1f} MB/s of {cap:.1f} MB/s = {ours / cap:.1%}",
            )
        if link is not None and cap:
            add(
                "50 Mbit/s per connection: >= 95% of the aggregate cap (link phase, at the proxy)",
                link >= 0.95 * cap,
                f"{link:.1f} MB/s of {cap:.1f} MB/s = {link / cap:.1%}",
            )
        if ours is not None and aria is not None:
            add(
                "50 Mbit/s per connection: no slower than aria2c (wall time)",
                ours >= aria,
                f"{ours:.1f} vs {aria:.1f} MB/s = {ours / aria:.2f}x",
            )
        if link is not None and aria_link is not None:
            add(
                "50 Mbit/s per connection: no slower than aria2c (link phase)",
                link >= aria_link,
                f"{link:.1f} vs {aria_link:.1f} MB/s = {link / aria_link:.2f}x",
            )
    if "loopback" in sc:
        s = sc["loopback"]["summary"]
        ours = s.get("ollama-seed", {}).get("MBps_median")
        lim = durable_limit(s)
        if ours is not None and lim:
            add(
                "uncapped loopback: at most 1.25x the durable-download limit, max(curl to a file, dd conv=fsync)",
                lim[0] / ours <= 1.25,
                f"{ours:.1f} MB/s vs the limit {lim[0]:.1f} MB/s ({lim[1]}): {lim[0] / ours:.2f}x the limit's time",
            )
        mine, curl_cpu = (s.get(t, {}).get("cpu_s_per_GiB_median") for t in ("ollama-seed", "curl"))
        hash_cpu = (result.get("limits_summary") or {}).get("sha256_cpu_s_per_GiB")
        if mine and curl_cpu and hash_cpu:
            ref = curl_cpu + hash_cpu
            add(
                "CPU per GiB, uncapped loopback: at most 1.5x curl + hashlib.sha256 of the same bytes",
                mine <= 1.5 * ref,
                f"{mine:.2f} CPU-s/GiB vs {curl_cpu:.2f} + {hash_cpu:.2f} = {ref:.2f}: {mine / ref:.2f}x",
            )
    if "quota500" in sc:
        s = sc["quota500"]["summary"]
        ours = s.get("ollama-seed", {}).get("MBps_median")
        for other in ("aria2c", "curl"):
            theirs = s.get(other, {}).get("MBps_median")
            if ours is not None and theirs:
                add(
                    f"500m CPU quota: no slower than {other} under the same quota",
                    ours >= theirs,
                    f"{ours:.1f} vs {theirs:.1f} MB/s = {ours / theirs:.2f}x",
                )
    if "resume" in sc:
        r = sc["resume"]["summary"].get("ollama-seed", {}).get("transferred_ratio_max")
        if r is not None:
            add("resume: bytes transferred <= 1.05 x blob size", r <= 1.05, f"worst run {r:.3f} x")
    rss = [m["peak_rss_mb"] for s in result["scenarios"] for m in s["measurements"] if m["tool"] == "ollama-seed"]
    rss += [
        m.get("first_peak_rss_mb", 0)
        for s in result["scenarios"]
        for m in s["measurements"]
        if m["tool"] == "ollama-seed"
    ]
    rss += [x["peak_rss_mb"] for x in result.get("memory") or []]
    if rss:
        add("peak RSS <= 100 MB", max(rss) <= 100, f"worst {max(rss):.1f} MB over {len(rss)} ollama-seed processes")
    mem = result.get("memory")
    if mem and len(mem) >= 2:
        small, large = mem[0], mem[-1]
        add(
            f"peak RSS for {large['label']} no more than for {small['label']} (5 MB slack)",
            large["peak_rss_mb"] <= small["peak_rss_mb"] + 5,
            f"{large['peak_rss_mb']:.1f} MB vs {small['peak_rss_mb']:.1f} MB",
        )
    add("the report states the machine", bool(result.get("machine")), describe_short(result["machine"]))
    return targets


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def markdown(result: dict[str, Any]) -> str:
    lim = result["limits_summary"]
    m = result["machine"]
    lines = [
        f"## pullbench run {result['started']}",
        "",
        (
            f"Machine: {describe_short(m)}; load average {m['loadavg_start'][0]:.2f} at start, "
            f"{result.get('loadavg_end', [0])[0]:.2f} at the end."
        ),
        (
            f"Model: {result['model']['total_size'] / 2**20:.0f} MiB in {result['model']['blobs']} blobs "
            f"({result['model']['origin']}); model blob {result['model']['blob_size'] / 2**20:.0f} MiB. "
            f"Runs per tool: {result['config']['runs']}. MB = 1e6 bytes; medians. MB/s is wall time, process start "
            "to exit; 'link phase' is what the shaping proxy saw, the same way for every tool: blob bytes sent "
            "from the first blob request to the last blob byte (start-up and the manifest request excluded)."
        ),
        "",
        (
            f"Limits of this machine: sha256 in memory {_fmt(lim.get('sha256_memory_MBps'))} MB/s "
            f"({_fmt(lim.get('sha256_cpu_s_per_GiB'), '.2f')} CPU-s per GiB), "
            f"sha256 reading a file {_fmt(lim.get('sha256_file_MBps'))} MB/s, "
            f"disk write with fsync (dd conv=fsync) {_fmt(lim.get('disk_fsync_MBps'))} MB/s. "
            "The durable-download limit of a scenario is the slower of curl to a file and dd conv=fsync of the "
            "same bytes, measured in it; 'vs limit' is our MB/s over that limit's."
        ),
        "",
        (
            "| scenario | tool | MB/s | Mbit/s | min-max | vs aria2c | vs curl | vs link cap | vs limit "
            "| link phase MB/s | peak RSS MB | CPU s (user + sys) | CPU s/GiB | notes |"
        ),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for s in result["scenarios"]:
        if s.get("resume"):
            continue
        summ = s["summary"]
        aria = summ.get("aria2c", {}).get("MBps_median")
        curl = summ.get("curl", {}).get("MBps_median")
        limit = durable_limit(summ)
        for tool, t in summ.items():
            v = t["MBps_median"]
            cap = s["cap_MBps_1_connection"] if tool == "curl" else s["cap_MBps_16_connections"]
            extra = [f"{t['failed']} failed"] if t["failed"] else []
            if t.get("noop_seconds_median"):
                extra.append(f"a no-op pull (start-up, manifest) takes {t['noop_seconds_median']:.2f} s")
            notes = "; ".join(t["notes"] + extra)
            cpu = (
                f"{_fmt(t['cpu_s_median'], '.2f')} ({_fmt(t.get('user_s_median'), '.2f')} + "
                f"{_fmt(t.get('sys_s_median'), '.2f')})"
            )
            lines.append(
                f"| {s['name']} | {tool} | {_fmt(v)} | {_fmt(v * 8 if v else None, '.0f')} | "
                f"{_fmt(t['MBps_min'], '.0f')}-{_fmt(t['MBps_max'], '.0f')} | "
                f"{_ratio(v, aria) if tool != 'aria2c' else ''} | {_ratio(v, curl) if tool != 'curl' else ''} | "
                f"{_ratio(v, cap)} | {_ratio(v, limit[0]) if limit and tool != 'dd' else ''} | "
                f"{_fmt(t.get('link_MBps_median'))} | {t['peak_rss_mb_max']:.1f} | {cpu} | "
                f"{_fmt(t.get('cpu_s_per_GiB_median'), '.2f')} | {escape(notes)} |"
            )
    resume = [s for s in result["scenarios"] if s.get("resume")]
    if resume:
        lines += [
            "",
            "Resume (" + resume[0]["link"] + "): kill -9 at about half, run again; blob bytes through "
            "the proxy over both runs / blob size.",
            "",
            "| tool | killed at | transferred / blob (median, worst) | rerun s | peak RSS MB |",
            "|---|--:|--:|--:|--:|",
        ]
        for tool, t in resume[0]["summary"].items():
            lines.append(
                f"| {tool} | {_fmt(t.get('killed_at_fraction_median'), '.0%')} | "
                f"{_fmt(t.get('transferred_ratio_median'), '.3f')}, "
                f"{_fmt(t.get('transferred_ratio_max'), '.3f')} | {_fmt(t['seconds_median'], '.2f')} | "
                f"{t['peak_rss_mb_max']:.1f} |"
            )
        for note in resume[0].get("notes", []):
            lines.append(f"\n{note}")
    if result.get("memory"):
        lines += ["", "| memory: model size | seconds | peak RSS MB | CPU s |", "|---|--:|--:|--:|"]
        lines += [
            f"| {x['label']} | {x['seconds']:.2f} | {x['peak_rss_mb']:.1f} | {x['cpu_s']:.2f} |"
            for x in result["memory"]
        ]
    lines += ["", "| target | result | numbers |", "|---|---|---|"]
    for t in result["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["passed"]]
        lines.append(f"| {t['target']} | {verdict} | {escape(t['detail'])} |")
    busy = [
        f"{s['name']}/{x['tool']}"
        for s in result["scenarios"]
        for x in s["measurements"]
        if x.get("proxy", {}).get("busy")
    ]
    if busy:
        lines += ["", f"Proxy near saturation (> 85% of a core) in: {', '.join(sorted(set(busy)))}."]
    return "\n".join(lines) + "\n"


def svg(result: dict[str, Any]) -> str:
    """Horizontal grouped bars: MB/s per tool per scenario, with the link cap as a tick."""
    rows = [s for s in result["scenarios"] if not s.get("resume")]
    bar, gap, left, width = 16, 14, 230, 520
    vmax = max(
        [t["MBps_median"] or 0 for s in rows for t in s["summary"].values()]
        + [s["cap_MBps_16_connections"] or 0 for s in rows]
        + [1.0]
    )
    height = 60 + sum(len(s["summary"]) * bar + gap for s in rows) + 40
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
            'font-family="sans-serif" font-size="12">'
        ),
        (
            f'<text x="10" y="20" font-size="14" font-weight="bold">pullbench {escape(result["started"])}: '
            "MB/s, median (higher is better)</text>"
        ),
        f'<text x="10" y="38" fill="#555">{escape(describe_short(result["machine"]))}</text>',
    ]
    y = 55
    for s in rows:
        top = y
        for tool, t in s["summary"].items():
            v = t["MBps_median"] or 0
            w = width * v / vmax
            out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{COLORS[tool]}"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 5}">{tool} {v:.1f}</text>')
            y += bar
        cap = s["cap_MBps_16_connections"]
        if cap:
            x = left + width * cap / vmax
            out.append(
                f'<line x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" y2="{y}" stroke="#c53030" stroke-dasharray="4,3"/>'
            )
        out.append(f'<text x="10" y="{(top + y) / 2 + 4:.0f}">{escape(s["name"])}</text>')
        y += gap
    lim = result["limits_summary"]
    for key, label, color in (
        ("disk_fsync_MBps", "disk+fsync", "#2f855a"),
        ("sha256_file_MBps", "sha256 file", "#6b46c1"),
    ):
        v = lim.get(key)
        if v and v <= vmax * 1.2:
            x = left + width * min(v, vmax) / vmax
            out.append(f'<line x1="{x:.1f}" y1="50" x2="{x:.1f}" y2="{y}" stroke="{color}" stroke-width="1"/>')
            out.append(f'<text x="{x + 2:.1f}" y="{y + 14}" fill="{color}">{label} {v:.0f}</text>')
            y += 14
    out.append(f'<text x="10" y="{height - 8}" fill="#555">dashed red: link cap for 16 connections</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
