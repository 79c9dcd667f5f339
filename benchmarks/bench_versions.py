"""This checkout of ollama-seed against another commit, on the same machine, in the same run.

Made for issue 22 (crash consistency: more syncs, a durable resume watermark): "no slowdown
beyond noise", 3 % at most, for pulls (a 4 GiB model uncapped, and under a 500m CPU quota),
bundle imports, ``create``, and the start-up of a no-op ``ensure``.

The other commit gets a git worktree and a virtual environment of its own (its pinned
requirements/dev.txt, the package installed editable), made once under ``--work`` and reused.
Each scenario alternates the two (A B B A, ...) for ``--runs`` rounds, so load from other
processes hits both alike; the report gives the medians, the ratio of the medians and the
median of the per-round ratios (this checkout / the other). Every run starts from a fresh
models directory; the commands are the CLI's, as users run them:

- ``pull``: ``ollama-seed pull --insecure`` of a synthetic model (``--size``, one weights blob
  plus small layers) from Debian's docker-registry on 127.0.0.1 (the page cache holds the
  registry's copy: both read it alike);
- ``pull-500m``: the same in a cgroup limited to half a CPU (Kubernetes ``limits.cpu: 500m``);
- ``import``: ``ollama-seed import`` of an uncompressed bundle of a ``--bundle-size`` model;
- ``create``: ``ollama-seed create --offline`` from a Modelfile naming a ``--bundle-size`` GGUF;
- ``ensure``: ``python -c "import ollama_seed; ollama_seed.ensure(...)"`` of a complete model
  (``--ensure-runs`` fresh interpreters each).

    python benchmarks/bench_versions.py --base c0943f2 [--size 4G] [--bundle-size 1G] [--runs 3]
        [--scenarios pull,pull-500m,import,create,ensure] [--work /var/tmp/ollama-seed-versions]

Needs docker-registry (scripts/install-test-deps.sh) and, for ``pull-500m``, root and a cgroup
CPU controller. Results go to ``benchmarks/results/<time>-versions.{json,md}``; exit status 1
when a median ratio is over ``--limit`` (1.03). Run it on an otherwise idle machine: other work
shifts single runs by more than the 3 % it tests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.pullbench import cgroup  # noqa: E402
from benchmarks.pullbench.rig import registry, seed_model  # noqa: E402
from benchmarks.pullbench.tools import wipe  # noqa: E402

SCENARIOS = ("pull", "pull-500m", "import", "create", "ensure")
NAME = "library/model:latest"


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


@dataclass
class Version:
    """One checkout to measure: its interpreter (a venv where it is installed) and its commit."""

    label: str
    python: str
    commit: str

    def env(self, home: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OLLAMA_", "PYTHONPATH")) and "proxy" not in k.lower()
        }
        home.mkdir(parents=True, exist_ok=True)
        env.update(HOME=str(home), NO_PROXY="127.0.0.1,localhost")
        return env

    def run(
        self, args: list[str], home: Path, *, preexec: Callable[[], None] | None = None
    ) -> tuple[float, float, float]:
        """Wall, CPU and user CPU seconds of ``python -m ollama_seed ARGS`` (or ``python ARGS`` for ``-c``)."""
        argv = [self.python, *(args if args[0] == "-c" else ["-m", "ollama_seed", *args])]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv, env=self.env(home), cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{self.label}: {' '.join(argv[-4:])} failed: {err[-1500:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_utime


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def prepare_base(commit: str, work: Path) -> Version:
    """A worktree of *commit* and a venv with it installed (made once, reused while the commit holds)."""
    tree, venv = work / "base", work / "venv-base"
    full = _git("rev-parse", commit)
    if tree.exists() and _git("rev-parse", "HEAD", cwd=tree) != full:
        _git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(venv, ignore_errors=True)
    if not tree.exists():
        work.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--detach", str(tree), full)
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "--require-hashes", "-r", str(tree / "requirements" / "dev.txt")], check=True)
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(tree)], check=True)
    subprocess.run([str(python), "-m", "compileall", "-q", str(tree / "ollama_seed")], check=True)
    return Version("base", str(python), full[:12])


def this_checkout() -> Version:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "ollama_seed")], check=True)
    found = subprocess.run(
        [sys.executable, "-c", "import ollama_seed, pathlib; print(pathlib.Path(ollama_seed.__file__).parent.parent)"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd="/",
    ).stdout.strip()
    if Path(found).resolve() != ROOT:
        raise SystemExit(f"{sys.executable} imports ollama_seed from {found}, not this checkout {ROOT}")
    return Version("this", sys.executable, _git("rev-parse", "HEAD")[:12])


@dataclass
class Series:
    scenario: str
    a: list[float] = field(default_factory=list)  # base, wall seconds
    b: list[float] = field(default_factory=list)  # this checkout
    cpu_a: list[float] = field(default_factory=list)
    cpu_b: list[float] = field(default_factory=list)
    user_a: list[float] = field(
        default_factory=list
    )  # user CPU: the kernel's share (page cache, writeback) varies most
    user_b: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.b) / statistics.median(self.a)

    @property
    def paired(self) -> float:
        return statistics.median(b / a for a, b in zip(self.a, self.b, strict=False))

    def as_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "base_s": self.a,
            "this_s": self.b,
            "base_cpu_s": self.cpu_a,
            "this_cpu_s": self.cpu_b,
            "base_user_s": self.user_a,
            "this_user_s": self.user_b,
            "median_base_s": statistics.median(self.a),
            "median_this_s": statistics.median(self.b),
            "ratio_of_medians": round(self.ratio, 4),
            "median_paired_ratio": round(self.paired, 4),
        }


def alternate(
    series: Series, rounds: int, base: Version, this: Version, one: Callable[[Version], tuple[float, float, float]]
) -> None:
    """A B B A A B ...: each round both once, the order flipped every round."""
    for i in range(rounds):
        for v in (base, this) if i % 2 == 0 else (this, base):
            wall, cpu, user = one(v)
            (series.a if v is base else series.b).append(wall)
            (series.cpu_a if v is base else series.cpu_b).append(cpu)
            (series.user_a if v is base else series.user_b).append(user)
            print(f"  {series.scenario:<10} {v.label:<5} {wall:8.3f} s wall {cpu:8.3f} s CPU", flush=True)


def write_gguf(path: Path, size: int) -> None:
    """A GGUF (llama.cpp's own writer) whose one tensor makes it about *size* bytes."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_file_type(1)
    w.add_context_length(128)
    w.add_embedding_length(8)
    rows = max(1, size // (4 * 4096))
    w.add_tensor("token_embd.weight", np.random.default_rng(0).random((rows, 4096), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the commit to compare with (e.g. the one a change started from)")
    p.add_argument("--size", default="4G", help="the pulled model's weights (default 4G)")
    p.add_argument("--bundle-size", default="1G", help="the imported and created models' weights (default 1G)")
    p.add_argument("--runs", type=int, default=3, help="rounds per scenario, each running both (default 3)")
    p.add_argument("--ensure-runs", type=int, default=15)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--work", type=Path, default=Path("/var/tmp/ollama-seed-versions"))
    p.add_argument("--limit", type=float, default=1.03)
    args = p.parse_args(argv)
    wanted = [s for s in args.scenarios.split(",") if s]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    base, this = prepare_base(args.base, args.work), this_checkout()
    scratch: Path = args.work / "run"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        return _measure(args, wanted, base, this, scratch)
    finally:  # the registry's copy and the stores are several times --size: never left behind
        shutil.rmtree(scratch, ignore_errors=True)


def _measure(args: argparse.Namespace, wanted: list[str], base: Version, this: Version, scratch: Path) -> int:
    home = scratch / "home"
    out: list[Series] = []
    started = time.time()
    print(f"base {base.commit} ({base.python}) against this checkout {this.commit}", flush=True)

    def fresh(v: Version) -> Path:
        """One models directory for both, emptied and the removal synced before each run: where a
        run's 4 GiB land on the disk, and the freeing of the last run's, must not follow the version."""
        models = scratch / "models"
        wipe(models)
        os.sync()
        return models

    if {"pull", "pull-500m"} & set(wanted):
        with registry(scratch) as reg:
            seeded = seed_model(reg, scratch, _size(args.size), repo=NAME.split(":")[0])
            target = f"{reg.url.split('://', 1)[1]}/{NAME}"
            for scenario in ("pull", "pull-500m"):
                if scenario not in wanted:
                    continue
                if scenario == "pull-500m" and cgroup.available() is not None:
                    print(f"  pull-500m: skipped ({cgroup.available()})", flush=True)
                    continue
                series = Series(scenario)

                def pull(v: Version, scenario: str = scenario) -> tuple[float, float, float]:
                    cmd = ["pull", "--insecure", "--progress", "none", "--models-dir", str(fresh(v)), target]
                    if scenario == "pull":
                        return v.run(cmd, home)
                    with cgroup.cpu_quota(0.5) as quota:
                        return v.run(cmd, home, preexec=quota.enter)

                alternate(series, args.runs, base, this, pull)
                out.append(series)
                print(f"{scenario}: {seeded.total_size} bytes, ratio {series.ratio:.4f}", flush=True)
    if "import" in wanted or "create" in wanted:
        small = _size(args.bundle_size)
        src = scratch / "source"
        gguf_path = scratch / "work" / "model.gguf"
        gguf_path.parent.mkdir(parents=True, exist_ok=True)
        write_gguf(gguf_path, small)
        (gguf_path.parent / "Modelfile").write_text("FROM ./model.gguf\nPARAMETER temperature 0.5\n")
        if "import" in wanted:
            this.run(
                [
                    "create",
                    "--offline",
                    "--progress",
                    "none",
                    "--models-dir",
                    str(src),
                    "bench/m:1",
                    "-f",
                    str(gguf_path.parent / "Modelfile"),
                ],
                home,
            )
            bundle = scratch / "m.ollama"
            this.run(["export", "--models-dir", str(src), "--compress", "none", "-o", str(bundle), "bench/m:1"], home)
            series = Series("import")
            alternate(
                series,
                args.runs,
                base,
                this,
                lambda v: v.run(["import", "--models-dir", str(fresh(v)), str(bundle)], home),
            )
            out.append(series)
        if "create" in wanted:
            series = Series("create")
            mf = str(gguf_path.parent / "Modelfile")
            alternate(
                series,
                args.runs,
                base,
                this,
                lambda v: v.run(
                    ["create", "--offline", "--progress", "none", "--models-dir", str(fresh(v)), "bench/m:1", "-f", mf],
                    home,
                ),
            )
            out.append(series)
    if "ensure" in wanted:
        from benchmarks.bench_ensure import NAME as ENSURE_NAME
        from benchmarks.bench_ensure import build_store

        store = scratch / "ensure-store"
        build_store(store, 8 << 30)
        code = f"import ollama_seed; ollama_seed.ensure({ENSURE_NAME!r}, models_dir={str(store)!r})"
        series = Series("ensure")
        alternate(series, args.ensure_runs, base, this, lambda v: v.run(["-c", code], home))
        out.append(series)
    return report(out, base, this, args, started)


def report(out: list[Series], base: Version, this: Version, args: argparse.Namespace, started: float) -> int:
    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    doc = {
        "base": base.commit,
        "this": this.commit,
        "runs": args.runs,
        "size": args.size,
        "bundle_size": args.bundle_size,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_at_end": load},
        "series": [s.as_dict() for s in out],
    }
    (results / f"{stamp}-versions.json").write_text(json.dumps(doc, indent=1))
    lines = [
        f"# ollama-seed {this.commit} against {base.commit} ({stamp})",
        "",
        (
            f"{os.cpu_count()} CPUs, load average at the end {load[0]:.1f}; medians of {args.runs} rounds "
            f"(ensure: {args.ensure_runs}), A B B A order; ratio = this / base (lower is faster)."
        ),
        "",
        (
            "| scenario | base (s) | this (s) | ratio of medians | median paired ratio | CPU base / this (s) "
            "| user CPU base / this (s) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for s in out:
        lines.append(
            f"| {s.scenario} | {statistics.median(s.a):.3f} | {statistics.median(s.b):.3f} | {s.ratio:.4f} | "
            f"{s.paired:.4f} | {statistics.median(s.cpu_a):.2f} / {statistics.median(s.cpu_b):.2f} | "
            f"{statistics.median(s.user_a):.3f} / {statistics.median(s.user_b):.3f} |"
        )
    text = "\n".join(lines) + "\n"
    (results / f"{stamp}-versions.md").write_text(text)
    print(text)
    over = [s.scenario for s in out if s.ratio > args.limit]
    if over:
        print(f"over {args.limit}: {', '.join(over)}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
