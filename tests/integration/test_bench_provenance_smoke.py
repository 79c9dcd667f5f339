"""benchmarks/bench_provenance.py on a tiny model, one round, no registry: it must not rot. No timing asserted."""

from __future__ import annotations

import os
from pathlib import Path

from ollama_seed.wire.keys import SigningKey
from ollama_seed.wire.trust import Trust


def test_provenance_bench_runs_on_a_small_model(tmp_path: Path) -> None:
    from benchmarks.bench_provenance import bench, render

    data = tmp_path / "weights.bin"
    data.write_bytes(os.urandom(300_000))
    key = SigningKey.generate("p256")
    key.save(tmp_path / "k.key", tmp_path / "k.pub", None)
    result = bench("smoke", data, tmp_path, 1, key, Trust.load([tmp_path / "k.pub"]), None)
    for op in ("export", "import"):
        row = result[op]
        assert isinstance(row, dict)
        assert row["plain_mb_s"] > 0 and row["signed_mb_s"] > 0 and row["ratio"] > 0
        assert row["step_ms"] > 0  # the signing or verifying step was seen inside the operation
    assert "push" not in result
    table = render([result])
    assert table.count("| smoke |") == 2
    assert not list(tmp_path.glob("store-*")) and not list(tmp_path.glob("*.bundle"))
