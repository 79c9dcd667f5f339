"""How much does ``ensure`` of a complete multi-GB model cost, next to ``import ollama_seed``?

It builds a models directory holding one model whose weights layer is a sparse file of
``--size-gib`` GiB (zeros; the manifest names its real size and its real sha256, computed
once), then times, in fresh interpreters, alternating:

- ``python -c "import ollama_seed"``
- ``python -c "import ollama_seed; ollama_seed.ensure('bench/big:q4')"``
- ``python -m ollama_seed ensure bench/big:q4 --progress none`` (the CLI, for information)

and ``ensure()`` in-process. The target: the ``ensure`` run costs at most 1.5 times the bare
import (medians). Exit status 1 if it does not.

With ``--trust``, the model is also signed (an OMS signature by a new key, kept in the store as
``verify --signature`` keeps one) and two more variants run, checking that signature with no
network: ``ensure(..., trust=Trust.load([KEY]))`` and ``ollama-seed ensure --trust KEY``
(needs the ``signing`` extra).

    python benchmarks/bench_ensure.py [--size-gib 8] [--runs 15] [--trust] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "bench/big:q4"
TARGET = 1.5


def _zeros_digest(size: int) -> str:
    h = hashlib.sha256()
    block = bytes(1 << 24)
    left = size
    while left:
        n = min(left, len(block))
        h.update(block[:n] if n < len(block) else block)
        left -= n
    return h.hexdigest()


def _blob(root: Path, data: bytes, media_type: str) -> dict[str, object]:
    hexd = hashlib.sha256(data).hexdigest()
    (root / "blobs" / f"sha256-{hexd}").write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{hexd}", "size": len(data)}


def build_store(root: Path, size: int) -> None:
    """A complete model: a sparse ``size``-byte weights blob plus small layers, and its manifest."""
    (root / "blobs").mkdir(parents=True)
    hexd = _zeros_digest(size)
    with open(root / "blobs" / f"sha256-{hexd}", "wb") as f:
        f.truncate(size)  # sparse: no disk space, the right st_size
    layers = [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{hexd}", "size": size},
        _blob(root, b"{{ .Prompt }}", "application/vnd.ollama.image.template"),
        _blob(root, b"benchmark model, zeros only\n", "application/vnd.ollama.image.license"),
        _blob(root, b'{"temperature":0.7}', "application/vnd.ollama.image.params"),
    ]
    config = _blob(
        root,
        json.dumps(
            {
                "model_format": "gguf",
                "model_family": "llama",
                "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
            }
        ).encode(),
        "application/vnd.docker.container.image.v1+json",
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": config,
            "layers": layers,
        },
        separators=(",", ":"),
    ).encode()
    path = root / "manifests" / "registry.ollama.ai" / "bench" / "big" / "q4"
    path.parent.mkdir(parents=True)
    path.write_bytes(manifest)


def sign_and_keep(root: Path, work: Path) -> Path:
    """Sign the model with a new key and keep the signature in the store (no blob hashed); the public key."""
    sys.path.insert(0, str(ROOT))
    import ollama_seed

    key = ollama_seed.SigningKey.generate("p256")
    key.save(work / "bench.key", work / "bench.pub", None)
    signature = ollama_seed.sign_models(NAME, key, models_dir=root)
    trust = ollama_seed.Trust.load([work / "bench.pub"])
    ollama_seed.verify_models(signature, trust, [NAME], models_dir=root, content=False, keep=True)
    return work / "bench.pub"


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=8.0, help="size of the weights blob (default 8)")
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per variant (default 15)")
    parser.add_argument("--trust", action="store_true", help="also ensure with a trust, the model signed")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    size = int(args.size_gib * (1 << 30))
    with tempfile.TemporaryDirectory(prefix="bench-ensure-") as tmp:
        root = Path(tmp) / "models"
        t0 = time.perf_counter()
        build_store(root, size)
        build_s = time.perf_counter() - t0
        env = {**os.environ, "OLLAMA_MODELS": str(root), "PYTHONPATH": str(ROOT)}
        env.pop("OLLAMA_SEED_OFFLINE", None)
        py = sys.executable
        variants = {
            "import": [py, "-c", "import ollama_seed"],
            "ensure": [
                py,
                "-c",
                f"import ollama_seed; r = ollama_seed.ensure({NAME!r}); assert r[0].status == 'present', r",
            ],
            "cli": [py, "-m", "ollama_seed", "ensure", NAME, "--progress", "none"],
        }
        if args.trust:
            pub = sign_and_keep(root, Path(tmp))
            variants["ensure-trust"] = [
                py,
                "-c",
                (
                    f"import ollama_seed; r = ollama_seed.ensure({NAME!r}, trust=ollama_seed.Trust.load([{str(pub)!r}])); "
                    "assert r[0].status == 'present' and r[0].signer, r"
                ),
            ]
            variants["cli-trust"] = [py, "-m", "ollama_seed", "ensure", NAME, "--progress", "none", "--trust", str(pub)]
        times: dict[str, list[float]] = {k: [] for k in variants}
        for argv in variants.values():  # warm the page cache and .pyc files
            _time(argv, env)
        for _ in range(args.runs):
            for key, argv in variants.items():
                times[key].append(_time(argv, env))

        os.environ["OLLAMA_MODELS"] = str(root)
        sys.path.insert(0, str(ROOT))
        import ollama_seed

        ollama_seed.ensure(NAME)
        n = 200
        t0 = time.perf_counter()
        for _ in range(n):
            ollama_seed.ensure(NAME)
        in_process = (time.perf_counter() - t0) / n

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["ensure"] / med["import"]
    result = {
        "blob_gib": args.size_gib,
        "runs": args.runs,
        "build_seconds": round(build_s, 2),
        "median_seconds": {k: round(v, 4) for k, v in med.items()},
        "min_seconds": {k: round(min(v), 4) for k, v in times.items()},
        "ensure_over_import": round(ratio, 3),
        "cli_over_import": round(med["cli"] / med["import"], 3),
        **({"ensure_trust_over_import": round(med["ensure-trust"] / med["import"], 3)} if args.trust else {}),
        "in_process_ensure_ms": round(in_process * 1e3, 3),
        "target": TARGET,
        "ok": ratio <= TARGET,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"complete model with a {args.size_gib:g} GiB weights blob (sparse), {args.runs} runs each")
        for key in variants:
            print(f"  {key:<12} median {med[key] * 1e3:7.1f} ms   min {min(times[key]) * 1e3:7.1f} ms")
        print(f"  ensure / import = {ratio:.3f} (target <= {TARGET}); cli / import = {result['cli_over_import']}")
        print(f"  ensure() in-process: {in_process * 1e3:.3f} ms per call")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
