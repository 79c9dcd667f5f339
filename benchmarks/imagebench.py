"""Model images against the tools people already trust, measured in the same run on a loopback registry.

    python -m benchmarks.imagebench [--size 512M] [--runs 3] [--memory-sizes 64M,4G]

For a synthetic model of ``--size`` (plus template, license, params and config) in a store:

* **push**: ``ollama-seed image build MODEL --push REG/a/img:v1`` (two platforms; every layer read
  from the store, the store blob hashed against its name, the layer's digest computed on the
  way, streamed to the registry) against ``skopeo copy --all --preserve-digests oci:LAYOUT:v1
  docker://REG/b/img:v1`` of the same image, written beforehand by ``image build --oci-layout``
  (skopeo reads the layout's blobs and checks their digests). Each push goes into a fresh
  Docker Distribution registry, so neither finds a blob there.
* **extract**: ``ollama-seed image extract REG/a/img:v1`` (each one-blob layer's tar header read,
  then the blob fetched by the pull engine with ranged requests at its offset, hashed and installed;
  the manifests layer read through the importer; manifest last) against ``ollama-seed pull REG/library/bench:latest`` of the same model from the same registry,
  each into a new store.
* **memory**: peak RSS (VmHWM) of build --push and of extract for each ``--memory-sizes`` model.

Order alternates between runs; an untimed extract and pull first warm the page cache. Results: ``benchmarks/results/<time>-image.{json,md}``.
Targets (issue 20): push no slower than skopeo; extract at most 1.1x pull; peak RSS under 100 MB
and flat from 64 MiB to 4 GiB.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.pullbench.procs import ProcResult, clean_env, compile_package, run_measured
from tests.support.model import make_model
from tests.support.registry import DockerRegistry
from tests.support.seed import seed_registry

RESULTS = Path(__file__).resolve().parent / "results"
SEED = [sys.executable, "-m", "ollama_seed"]


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


def _run(argv: list[str], env: dict[str, str]) -> ProcResult:
    result = run_measured(argv, env=env, timeout=1800)
    if not result.ok:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr_tail}")
    return result


def _one(argv: list[str], env: dict[str, str], work: Path) -> dict[str, Any]:
    r = _run(argv, env)
    return {"seconds": round(r.seconds, 3), "cpu": round(r.cpu_seconds, 3), "rss_mb": round(r.peak_rss_bytes / 1e6, 1)}


def measure(size: int, runs: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    store = work / "store"
    model = make_model(work / "gen", size_bytes=size, seed=11)
    model.expected_store(store, "registry.ollama.ai", "library/bench", "latest")
    layout = work / "layout"
    _run([*SEED, "image", "build", "bench:latest", "--oci-layout", f"{layout}:v1", "--models-dir", str(store),
          "--progress", "none", "--offline"], env)  # fmt: skip
    skopeo = shutil.which("skopeo") or "skopeo"
    out: dict[str, list[dict[str, Any]]] = {"push": [], "push-noverify": [], "skopeo": [], "extract": [], "pull": []}
    for i in range(runs):
        order = ["push", "skopeo", "push-noverify"] if i % 2 == 0 else ["push-noverify", "skopeo", "push"]
        for tool in order:
            with DockerRegistry.start(work / f"reg-{tool}-{i}", access_log=False, log_level="error") as reg:
                if tool.startswith("push"):
                    argv = [*SEED, "image", "build", "bench:latest", "--push", f"{reg.host}/a/img:v1", "--insecure",
                            "--models-dir", str(store), "--progress", "none", "--offline"]  # fmt: skip
                    if tool == "push-noverify":
                        argv.append("--no-verify")
                else:
                    argv = [skopeo, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                            f"oci:{layout}:v1", f"docker://{reg.host}/b/img:v1"]  # fmt: skip
                out[tool].append(_one(argv, env, work))
    with DockerRegistry.start(work / "reg-read", access_log=False, log_level="error") as reg:
        seed_registry(reg.url, "library/bench", "latest", model)
        _run([*SEED, "image", "build", "bench:latest", "--push", f"{reg.host}/a/img:v1", "--insecure",
              "--models-dir", str(store), "--progress", "none", "--offline"], env)  # fmt: skip
        for i in range(-1, runs):  # round -1 warms the registry's page cache and is not kept
            order = ["extract", "pull"] if i % 2 == 0 else ["pull", "extract"]
            for tool in order:
                dest = work / f"dest-{tool}-{i}"
                if tool == "extract":
                    argv = [*SEED, "image", "extract", f"{reg.host}/a/img:v1", "--insecure", "--models-dir", str(dest),
                            "--progress", "none"]  # fmt: skip
                else:
                    argv = [*SEED, "pull", "--insecure", "--models-dir", str(dest), "--progress", "none",
                            f"{reg.host}/library/bench:latest"]  # fmt: skip
                measured = _one(argv, env, work)
                if i >= 0:
                    out[tool].append(measured)
                shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(work / "gen", ignore_errors=True)
    med = {tool: statistics.median(m["seconds"] for m in ms) for tool, ms in out.items()}
    return {
        "size": size,
        "runs": out,
        "median_seconds": med,
        "push_over_skopeo": round(med["push"] / med["skopeo"], 3),
        "push_noverify_over_skopeo": round(med["push-noverify"] / med["skopeo"], 3),
        "extract_over_pull": round(med["extract"] / med["pull"], 3),
        "peak_rss_mb": max(m["rss_mb"] for tool in ("push", "extract", "pull") for m in out[tool]),
    }


def memory(size: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """Peak RSS of build --push and of extract for a model of *size*."""
    store = work / "store"
    model = make_model(work / "gen", size_bytes=size, seed=12)
    model.expected_store(store, "registry.ollama.ai", "library/big", "latest")
    shutil.rmtree(work / "gen", ignore_errors=True)
    with DockerRegistry.start(work / "reg", access_log=False, log_level="error") as reg:
        push = _run([*SEED, "image", "build", "big:latest", "--push", f"{reg.host}/m/img:v1", "--insecure",
                     "--models-dir", str(store), "--progress", "none", "--offline"], env)  # fmt: skip
        shutil.rmtree(store)
        extract = _run([*SEED, "image", "extract", f"{reg.host}/m/img:v1", "--insecure", "--models-dir",
                        str(work / "dest"), "--progress", "none"], env)  # fmt: skip
    return {
        "size": size,
        "push_rss_mb": round(push.peak_rss_bytes / 1e6, 1),
        "push_seconds": round(push.seconds, 2),
        "extract_rss_mb": round(extract.peak_rss_bytes / 1e6, 1),
        "extract_seconds": round(extract.seconds, 2),
    }


def report(doc: dict[str, Any]) -> str:
    m = doc["main"]
    mb = m["size"] / 1e6
    lines = [
        f"# Model images, {m['size'] >> 20} MiB model, {len(m['runs']['push'])} runs ({doc['when']})",
        "",
        "| tool | median s | MB/s | CPU s (median) | peak RSS MB |",
        "|---|--:|--:|--:|--:|",
    ]
    for tool, label in (("push", "ollama-seed image build --push"),
                        ("push-noverify", "ollama-seed image build --push --no-verify"),
                        ("skopeo", "skopeo copy --all --preserve-digests"),
                        ("extract", "ollama-seed image extract"), ("pull", "ollama-seed pull")):  # fmt: skip
        runs = m["runs"][tool]
        s = m["median_seconds"][tool]
        cpu = statistics.median(r["cpu"] for r in runs)
        lines.append(f"| {label} | {s:.2f} | {mb / s:.0f} | {cpu:.2f} | {max(r['rss_mb'] for r in runs):.0f} |")
    lines += [
        "",
        (
            f"push / skopeo: **{m['push_over_skopeo']}** (target <= 1.0; with --no-verify, the same work as skopeo: "
            f"**{m['push_noverify_over_skopeo']}**); extract / pull: **{m['extract_over_pull']}** (target <= 1.1)"
        ),
        "",
        "| model size | build --push peak RSS MB | extract peak RSS MB | build --push s | extract s |",
        "|--:|--:|--:|--:|--:|",
    ]
    for r in doc["memory"]:
        lines.append(
            f"| {r['size'] >> 20} MiB | {r['push_rss_mb']} | {r['extract_rss_mb']} | {r['push_seconds']} | "
            f"{r['extract_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.imagebench", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="512M")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--memory-sizes", default="64M,4G")
    p.add_argument("--workdir", type=Path, default=None)
    a = p.parse_args(argv)
    compile_package()
    root = Path(tempfile.mkdtemp(prefix="imagebench.", dir=a.workdir))
    try:
        env = clean_env(root / "home")
        doc: dict[str, Any] = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")}
        doc["load_before"] = os.getloadavg()
        doc["main"] = measure(_size(a.size), a.runs, root / "main", env)
        doc["memory"] = [memory(_size(s), root / f"mem-{s}", env) for s in a.memory_sizes.split(",") if s]
        doc["load_after"] = os.getloadavg()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{doc['when']}-image"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    text = report(doc)
    stem.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
