"""Tables and the plot of :mod:`benchmarks.bench_fanout`: medians per scenario, client count and server."""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["markdown", "summarize", "svg"]


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Median wall time, CPU per GB and peak RSS for each (scenario, clients, server)."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in result["results"]:
        groups.setdefault((row["scenario"], row["clients"], row["server"]), []).append(row)
    out = []
    for (scenario, clients, server), rows in groups.items():
        out.append(
            {
                "scenario": scenario,
                "clients": clients,
                "server": server,
                "rounds": len(rows),
                "wall": round(statistics.median(r["wall"] for r in rows), 3),
                "cpu_per_gb": round(statistics.median(r["cpu_per_gb"] for r in rows), 3),
                "rss_mib": round(max(r["rss"] for r in rows) / 2**20, 1),
                "wall_range": [min(r["wall"] for r in rows), max(r["wall"] for r in rows)],
            }
        )
    return out


def _find(summary: list[dict[str, Any]], scenario: str, clients: int, server: str) -> dict[str, Any] | None:
    return next((s for s in summary if (s["scenario"], s["clients"], s["server"]) == (scenario, clients, server)), None)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    size = result["size"]
    lines = [
        f"# Fan-out: ollama-seed serve vs Docker Distribution, {size / 2**20:.0f} MiB blob",
        "",
        (
            f"Machine: {result['machine']}; medians of {result['rounds']} round(s); CPU = the server "
            "process's CPU seconds per GB served (10^9 bytes); ratio = serve / Distribution."
        ),
        "",
        (
            "| scenario | clients | serve wall s | Distribution wall s | wall ratio | serve CPU-s/GB "
            "| Distribution CPU-s/GB | CPU ratio | serve RSS MiB | Distribution RSS MiB |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    keys = sorted({(s["scenario"], s["clients"]) for s in summary if s["server"] == "distribution"})
    for scenario, clients in keys:
        a, b = _find(summary, scenario, clients, "serve"), _find(summary, scenario, clients, "distribution")
        if a is None or b is None:
            continue
        lines.append(
            f"| {scenario} | {clients} | {a['wall']:.2f} | {b['wall']:.2f} | {_ratio(a['wall'], b['wall'])} "
            f"| {a['cpu_per_gb']:.2f} | {b['cpu_per_gb']:.2f} | {_ratio(a['cpu_per_gb'], b['cpu_per_gb'])} "
            f"| {a['rss_mib']:.0f} | {b['rss_mib']:.0f} |"
        )
    others = [s for s in summary if s["scenario"] in ("redirect", "site")]
    if others:
        lines += [
            "",
            "| serve only | clients | configuration | wall s | CPU-s/GB | RSS MiB |",
            "| --- | ---: | --- | ---: | ---: | ---: |",
        ]
        for s in sorted(others, key=lambda s: (s["scenario"], s["server"])):
            lines.append(
                f"| {s['scenario']} | {s['clients']} | {s['server']} | {s['wall']:.2f} | {s['cpu_per_gb']:.2f} "
                f"| {s['rss_mib']:.0f} |"
            )
    rss1 = _find(summary, "plain", 1, "serve")
    rss32 = _find(summary, "plain", 32, "serve")
    if rss1 and rss32:
        lines += ["", f"serve RSS at 32 clients / at 1 client: {rss32['rss_mib'] / rss1['rss_mib']:.2f}"]
    speed = result.get("openssl_aes_128_gcm_16k_bytes_per_s")
    if speed:
        lines += [
            "",
            (
                f"openssl speed -evp aes-128-gcm (16 KiB): {speed / 1e9:.2f} GB/s per core, "
                f"{1e9 / speed:.2f} CPU-s/GB: the physical floor of a TLS server's encryption."
            ),
        ]
    return "\n".join(lines) + "\n"


def svg(result: dict[str, Any]) -> str:
    """Two panels against the number of clients: wall seconds per GB, and server CPU seconds per GB."""
    summary = result["summary"]
    series = {}
    for scenario in ("plain", "tls"):
        for server in ("serve", "distribution"):
            pts = sorted(
                (s["clients"], s["wall"] * 1e9 / (s["clients"] * result["size"]), s["cpu_per_gb"])
                for s in summary
                if s["scenario"] == scenario and s["server"] == server
            )
            if pts:
                series[f"{server} {scenario}"] = pts
    colors = {
        "serve plain": "#1f77b4",
        "distribution plain": "#d62728",
        "serve tls": "#6baed6",
        "distribution tls": "#fc9272",
    }
    width, height, left, top, panel = 360, 260, 60, 40, 420
    clients = sorted({p[0] for pts in series.values() for p in pts}) or [1]
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + 2 * panel + 160}" height="{height + 2 * top + 20}" '
            'font-family="sans-serif" font-size="12">'
        ),
        (
            f'<text x="{left}" y="18">ollama-seed serve vs Docker Distribution, {result["size"] / 2**20:.0f} MiB blob, '
            "curl clients</text>"
        ),
    ]
    for k, (title, idx) in enumerate((("wall seconds per GB delivered", 1), ("server CPU seconds per GB", 2))):
        x0 = left + k * panel
        top_value = max((p[idx] for pts in series.values() for p in pts), default=1.0) * 1.15 or 1.0

        def x(c: int, x0: int = x0) -> float:
            return x0 + (clients.index(c) + 0.5) * width / len(clients)

        def y(v: float, top_value: float = top_value) -> float:
            return top + height - v / top_value * height

        out.append(f'<rect x="{x0}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#999"/>')
        out.append(f'<text x="{x0}" y="{top - 6}">{title}</text>')
        for i in range(5):
            v = top_value * i / 4
            out.append(f'<text x="{x0 - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        for c in clients:
            out.append(f'<text x="{x(c):.1f}" y="{top + height + 16}" text-anchor="middle">{c}</text>')
        for name, pts in series.items():
            path = " ".join(f"{x(p[0]):.1f},{y(p[idx]):.1f}" for p in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colors[name]}" stroke-width="2"/>')
            for p in pts:
                out.append(f'<circle cx="{x(p[0]):.1f}" cy="{y(p[idx]):.1f}" r="3" fill="{colors[name]}"/>')
    out.append(f'<text x="{left + panel}" y="{top + height + 34}" text-anchor="middle">clients</text>')
    for i, name in enumerate(series):
        yy = top + 14 + i * 18
        out.append(f'<rect x="{left + 2 * panel - 40}" y="{yy - 9}" width="12" height="4" fill="{colors[name]}"/>')
        out.append(f'<text x="{left + 2 * panel - 22}" y="{yy - 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
