"""A few-MiB run of the pull benchmark harness, so the harness cannot rot. Asserts no timing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks.pullbench import cgroup
from benchmarks.pullbench.cli import parse_size
from tests.support.registry import registry_available

ROOT = Path(__file__).resolve().parents[2]
MEASUREMENT_KEYS = {
    "tool",
    "ok",
    "seconds",
    "bytes",
    "MBps",
    "peak_rss_mb",
    "cpu_s",
    "user_s",
    "sys_s",
    "cpu_s_per_GiB",
    "run",
    "notes",
}


def test_parse_size_uses_binary_units() -> None:
    assert parse_size("512M") == 512 << 20
    assert parse_size("4GiB") == 4 << 30
    assert parse_size("3000001") == 3000001


@pytest.mark.registry
@pytest.mark.timeout(240)
def test_harness_smoke_run_produces_a_well_formed_result(tmp_path: Path) -> None:
    missing = [t for t in ("aria2c", "curl", "dd") if shutil.which(t) is None]
    if not registry_available() or missing:
        pytest.skip(f"needs docker-registry, aria2c, curl and dd (missing: {missing or ['docker-registry']})")
    if why := cgroup.available():
        pytest.skip(f"the quota500 scenario needs a cgroup: {why}")
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.pullbench",
            "--size",
            "3M",
            "--runs",
            "1",
            "--curl-max",
            "1M",
            "--scenarios",
            "loopback,quota500,cap50,resume",
            "--workdir",
            str(tmp_path / "work"),
            "--results",
            str(results),
            "--label",
            "smoke",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]  # missed targets fail only with --check
    jsons = list(results.glob("*-smoke.json"))
    assert len(jsons) == 1, proc.stderr[-3000:]
    doc = json.loads(jsons[0].read_text())

    assert doc["schema"] == "pullbench/2"
    machine = doc["machine"]
    assert machine["cores"] >= 1 and machine["memory_gib"] > 0 and machine["disk"]["fs"] and machine["kernel"]
    assert doc["model"]["blob_size"] == 3 << 20 and doc["model"]["blobs"] >= 2
    assert set(doc["limits_summary"]) == {
        "sha256_memory_MBps",
        "sha256_cpu_s_per_GiB",
        "sha256_file_MBps",
        "disk_fsync_MBps",
    }
    assert all(v > 0 for v in doc["limits_summary"].values())
    assert [s["name"] for s in doc["scenarios"]] == ["loopback", "quota500", "cap50", "resume"]

    for sc in doc["scenarios"][:3]:
        tools = {m["tool"]: m for m in sc["measurements"]}
        expected = {"ollama-seed", "aria2c", "curl"} | ({"dd"} if sc["name"] != "cap50" else set())
        assert set(tools) == expected  # dd (the disk's durable-write time) only where it is a reference
        for m in tools.values():
            assert set(m) >= MEASUREMENT_KEYS, m
            assert m["ok"], m  # every tool fetched the right bytes (sizes and sha256 checked afterwards)
            assert m["bytes"] > 0 and m["seconds"] > 0 and m["peak_rss_mb"] > 0
            per_gib = 2**30 / m["bytes"]  # cpu_s is rounded to the ms: allow that much
            assert m["cpu_s_per_GiB"] == pytest.approx(m["cpu_s"] * per_gib, abs=0.0006 * per_gib + 0.001)
        assert set(sc["summary"]) == expected
    quota = doc["scenarios"][1]
    assert quota["cpu_quota"] == 0.5
    for m in quota["measurements"]:  # each tool ran in its own cgroup, whose counters were read
        assert m["quota"]["cpus"] == 0.5 and "nr_throttled" in m["quota"], m
    ours = next(m for m in quota["measurements"] if m["tool"] == "ollama-seed")
    # the quota was in force while it ran: the kernel counts periods only for a cgroup with a quota.
    # (Throttling itself is not asserted: on a machine loaded by other suites a process may never
    # get 50 ms of CPU in a 100 ms period.)
    assert ours["quota"]["nr_periods"] >= 1, ours
    names = {t["target"] for t in doc["targets"]}
    assert any(n.startswith("uncapped loopback: at most 1.25x the durable-download limit") for n in names)
    assert any(n.startswith("CPU per GiB") for n in names)
    assert any(n.startswith("500m CPU quota: no slower than aria2c") for n in names)
    capped = doc["scenarios"][2]
    assert capped["cap_MBps_16_connections"] == pytest.approx(100.0)
    assert all(m["proxy"]["bytes_down"] > 0 for m in capped["measurements"])
    curl = next(m for m in capped["measurements"] if m["tool"] == "curl")
    assert curl["bytes"] == 1 << 20  # --curl-max on a capped link

    resume = doc["scenarios"][3]
    for m in resume["measurements"]:
        assert m["transferred_ratio"] >= 0.99  # at least the whole blob crossed the proxy over both runs
        assert m["blob_bytes_first_counted_after_kill"] >= m["blob_bytes_first"]  # read at the kill, then at stop
    assert {t["target"].split(":")[0] for t in doc["targets"]} >= {
        "peak RSS <= 100 MB",
        "the report states the machine",
    }

    md = jsons[0].with_suffix(".md").read_text()
    assert "| scenario | tool |" in md and "Machine:" in md
    svg = ET.parse(jsons[0].with_suffix(".svg")).getroot()
    assert svg.tag.endswith("svg") and len(list(svg)) > 5


def test_scheduler_simulation_runs_and_fewer_claims_mean_fewer_requests() -> None:
    """benchmarks/schedsim drives the real Scheduler; a tiny blob keeps it from rotting."""
    from benchmarks.schedsim import Link, simulate

    link = Link("test", rate=4e6, rtt=0.01, hash_rate=1e9)
    wall2, on_link2, requests2 = simulate(32 * 2**20, link, divisor=2.0, connections=4)
    wall1, on_link1, requests1 = simulate(32 * 2**20, link, divisor=1.0, connections=4)
    assert 0.5 < wall2 <= on_link2 <= 1.0 and 0.5 < wall1 <= on_link1 <= 1.0
    assert requests1 < requests2


def test_bundle_bench_against_ollamazip_runs_on_a_small_model(tmp_path: Path) -> None:
    """The ollamazip comparison of benchmarks/bench_bundle.py, one round on 2 MB: it must not rot. No timing asserted."""
    from benchmarks.bench_bundle import bench_ollamazip, report_ollamazip

    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(2_000_000))
    result = bench_ollamazip("smoke", data, tmp_path, 1)
    rows = result["rows"]
    assert isinstance(rows, dict) and len(rows) == 4
    for m in rows.values():
        assert m["ours_s"] > 0 and m["ref_s"] > 0 and m["ratio"] > 0 and m["ours_cpu"] >= 0
    sizes = result["sizes"]
    assert isinstance(sizes, dict) and sizes["ours"] > 0 and sizes["ollamazip"] > 0
    table = report_ollamazip([result], 1)
    assert table.count("| smoke |") == 4 and "unpack --verify" in table
    assert not list(tmp_path.glob("oz-*"))  # its stores and archives are removed
