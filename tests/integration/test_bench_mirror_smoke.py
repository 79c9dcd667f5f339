"""A 1 MiB run of ``bench_mirror --site`` (plain, TLS, login, both), so the harness cannot rot. Asserts no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_site_benchmark_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "site.json"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_mirror",
            "--site",
            "--size",
            "1Mi",
            "--rounds",
            "1",
            "--clients",
            "curl",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    curl = doc["results"]["curl"]
    assert set(curl) >= {"plain", "tls", "login", "tls+login", "ratio_tls_over_plain", "ratio_login_over_plain"}
    for name in ("plain", "tls", "login", "tls+login"):
        assert curl[name]["MB_per_s"] > 0 and len(curl[name]["walls_s"]) == 1
        assert curl[name]["server_cpu_s"] >= 0
    assert curl["ratio_tls_over_plain"] > 0
