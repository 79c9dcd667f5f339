"""``python -m benchmarks.pullbench``: run the scenarios, print the table, write JSON + Markdown + SVG."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import SCHEMA, cgroup, limits, report, tools
from .machine import describe_machine, describe_short
from .procs import REPO, compile_package
from .rig import registry, seed_model
from .scenarios import SCENARIOS, Context, run_scenario

MIB = 1 << 20
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|k|kib|m|mib|g|gib)?", re.IGNORECASE)
_MULT = {"b": 1, "k": 1 << 10, "kib": 1 << 10, "m": MIB, "mib": MIB, "g": 1 << 30, "gib": 1 << 30}
DEFAULT_SCENARIOS = ["loopback", "quota500", "cap50", "cap50-total400", "latency50", "drop16", "resume"]


def parse_size(text: str) -> int:
    """``512M`` / ``512MiB`` (binary units; a bare number is bytes)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 512M, 4G, 3000000)")
    return int(float(m.group(1)) * _MULT[(m.group(2) or "b").lower()])


def _label(n: int) -> str:
    return f"{n / (1 << 30):g}GiB" if n >= 1 << 30 else f"{n / MIB:g}MiB"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pullbench", description=__doc__)
    ap.add_argument("--size", type=parse_size, default=512 * MIB, help="model layer size (default 512M)")
    ap.add_argument("--model-file", type=Path, help="push this file (e.g. a real GGUF) as the model layer instead")
    ap.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all)",
    )
    ap.add_argument("--tools", default=",".join(report.TOOLS), help="comma-separated (default: all)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions per tool and scenario (default 3)")
    ap.add_argument(
        "--curl-max",
        type=parse_size,
        default=64 * MIB,
        help="on capped links curl fetches only this prefix of the blob (default 64M)",
    )
    ap.add_argument(
        "--memory-sizes",
        default="",
        help="also pull models of these sizes over loopback and compare peak RSS, e.g. 256M,4G",
    )
    ap.add_argument("--no-verify", action="store_true", help="skip hashing the downloaded files afterwards")
    ap.add_argument("--workdir", type=Path, help="scratch directory (default: a new one in $TMPDIR)")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--label", default="", help="added to the result file names")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    names = [s for s in a.scenarios.split(",") if s]
    unknown = [s for s in names if s not in SCENARIOS]
    tool_names = [t for t in a.tools.split(",") if t]
    if unknown or any(t not in report.TOOLS for t in tool_names) or a.runs < 1:
        print(f"unknown scenario or tool, or --runs < 1: {unknown or tool_names}", file=sys.stderr)
        return 2
    for exe in ("aria2c", "curl", "dd"):
        if (exe != "aria2c" or "aria2c" in tool_names) and shutil.which(exe) is None:
            print(f"{exe} is not installed (apt-get install aria2 curl)", file=sys.stderr)
            return 2
    if any(SCENARIOS[n].cpu_quota for n in names) and (why := cgroup.available()):
        print(f"a CPU-quota scenario needs a cgroup: {why}; leave it out with --scenarios", file=sys.stderr)
        return 2
    work = a.workdir or Path(tempfile.mkdtemp(prefix="pullbench."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = run(a, work, names, tool_names)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    paths = write(result, a.results, a.label)
    print(report.markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths))
    missed = [t["target"] for t in result["targets"] if t["passed"] is False]
    if missed:
        print(f"{len(missed)} target(s) not met on this run", file=sys.stderr)
    return 1 if a.check and missed else 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(a: argparse.Namespace, work: Path, names: list[str], tool_names: list[str]) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.timezone.utc)
    compile_package()
    machine = describe_machine(work)
    log(f"machine: {describe_short(machine)}")
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "argv": sys.argv[1:],
        "machine": machine,
        "config": {
            "size": a.size,
            "runs": a.runs,
            "scenarios": names,
            "tools": tool_names,
            "curl_max": a.curl_max,
            "verify": not a.no_verify,
            "workdir": str(work),
        },
    }
    t0 = time.monotonic()
    with registry(work) as reg:
        log(f"registry {reg.url}; seeding {_label(a.size) if not a.model_file else a.model_file} ...")
        model = seed_model(reg, work, a.size, model_file=a.model_file)
        result["model"] = model.as_dict()
        log(f"seeded in {model.seed_seconds:.1f} s: {model.blob_digest[:19]}, {model.total_size} bytes")
        lim: dict[str, list[float]] = {
            "sha256_memory_MBps": [],
            "sha256_cpu_s_per_GiB": [],
            "sha256_file_MBps": [],
            "disk_fsync_MBps": [],
        }
        probe = min(model.blob_size, 1 << 30)
        for _ in range(a.runs):
            lim["sha256_memory_MBps"].append(round(limits.sha256_memory(max(probe, 64 * MIB)), 1))
            lim["sha256_cpu_s_per_GiB"].append(round(limits.sha256_cpu_per_gib(max(probe, 64 * MIB)), 4))
            lim["sha256_file_MBps"].append(round(limits.sha256_file(model.source)[0], 1))
            lim["disk_fsync_MBps"].append(round(limits.disk_fsync(work, max(probe, 64 * MIB)), 1))
        result["limits"] = lim
        result["limits_summary"] = report.limits_summary(lim)
        log(f"limits: {result['limits_summary']}")
        ctx = Context(work, reg.url, model, verify=not a.no_verify, curl_max=a.curl_max, log=log)
        result["scenarios"] = []
        for name in names:
            sc = run_scenario(ctx, SCENARIOS[name], a.runs, tool_names)
            sc["summary"] = report.summarize(sc)
            result["scenarios"].append(sc)
        sizes = [parse_size(s) for s in a.memory_sizes.split(",") if s]
        if sizes:
            result["memory"] = memory(work, reg, sizes, verify=not a.no_verify)
    result["loadavg_end"] = list(os.getloadavg())
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["targets"] = report.check_targets(result)
    return result


def memory(work: Path, reg: Any, sizes: list[int], *, verify: bool) -> list[dict[str, Any]]:
    """Pull a model of each size over loopback once; peak RSS should not grow with the size."""
    out = []
    for size in sizes:
        label = _label(size)
        log(f"memory: seeding {label} ...")
        model = seed_model(reg, work, size, repo=f"library/mem-{label.lower()}", seed=size % 1000)
        base = work / "out" / "memory"
        tools.wipe(base)
        o = tools.ollama_seed(model.target(reg.url), base / "models", work / "home", verify=verify, source=model.source)
        tools.wipe(base)
        d = o.as_dict()
        out.append(
            {
                "label": label,
                "size": model.total_size,
                "ok": o.ok,
                "seconds": d["seconds"],
                "peak_rss_mb": d["peak_rss_mb"],
                "cpu_s": d["cpu_s"],
                "MBps": d["MBps"],
            }
        )
        log(f"  memory {label}: {d['seconds']:.2f} s, rss {d['peak_rss_mb']:.1f} MB, ok={o.ok}")
    return out


def write(result: dict[str, Any], directory: Path, label: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = result["started"].replace(":", "").replace("-", "")
    stem = f"{stamp}-{_label(result['config']['size'])}{'-' + label if label else ''}"
    paths = [directory / f"{stem}.json", directory / f"{stem}.md", directory / f"{stem}.svg"]
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(report.markdown(result))
    paths[2].write_text(report.svg(result))
    return paths
